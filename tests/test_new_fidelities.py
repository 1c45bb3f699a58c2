"""A model grown or cut to another list of fidelities: kept fidelities compute what they did, a new one
computes exactly what its source fidelity did, and training from it refits only the new composition rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_model
from test_train import FIDS, make_frames, tiny_config

from mf_calc.model.graph import collate
from mf_calc.train import FrameDataset, Trainer, build_model


def _predict(model, atoms, fidelity):
    out = model(collate([model.graph(atoms, fidelity)], dtype=model.dtype), create_graph=False)
    return {k: v.detach().numpy() for k, v in out.items()}


def _same(a: dict, b: dict) -> None:
    for key in ("energy_per_atom", "forces", "stress", "magmoms"):
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-10, err_msg=key)


@pytest.mark.parametrize("modules", ["EMRC", "EM", "RC", ""])
def test_new_fidelities_copy_their_source_and_kept_ones_are_unchanged(modules, lmfp_delithiated):
    model = tiny_model(modules=modules, fidelities=("low", "high"))
    grown = model.with_fidelities(("dft_low", "low", "high", "dft_high"), {"dft_low": "high", "dft_high": "low"})
    assert grown.fidelities.names == ("dft_low", "low", "high", "dft_high") and grown.config.modules == modules
    assert grown.metadata["fidelities_from"] == {"dft_low": "high", "low": "low", "high": "high", "dft_high": "low"}
    assert model.fidelities.names == ("low", "high")  # the original is not changed
    ref = {f: _predict(model, lmfp_delithiated, f) for f in ("low", "high")}
    for fidelity, source in grown.metadata["fidelities_from"].items():
        _same(_predict(grown, lmfp_delithiated, fidelity), ref[source])
    if modules:  # the two sources really differ, so a wrong row would be caught
        assert np.abs(ref["low"]["forces"] - ref["high"]["forces"]).max() > 1e-3


def test_dropping_and_reordering_fidelities(lmfp_delithiated):
    model = tiny_model(fidelities=("a", "b", "c"))
    cut = model.with_fidelities(("c", "a"))
    assert cut.fidelities.names == ("c", "a") and cut.composition.weight.shape[0] == 2
    for fidelity in ("a", "c"):
        _same(_predict(cut, lmfp_delithiated, fidelity), _predict(model, lmfp_delithiated, fidelity))


@pytest.mark.parametrize("names, start, message", [
    (("low", "high", "new"), {}, r"new fidelities \['new'\] need a start"),
    (("low", "high", "new"), {"new": "mid"}, "must be fidelities of the model"),
    (("low", "high"), {"high": "low"}, "already has"),
    (("low", "high"), {"new": "low"}, "not in the new list"),
    (("low", "low"), {}, "duplicate fidelity"),
    ((), {}, "at least one fidelity"),
])
def test_bad_fidelity_lists_are_refused(names, start, message):
    with pytest.raises(ValueError, match=message):
        tiny_model().with_fidelities(names, start)


def test_training_from_a_folder_with_new_fidelities_refits_only_their_composition(tmp_path):
    """init = a trained folder + new_fidelities: the kept fidelities' composition rows are the folder's, the new
    fidelity's row is fitted to what the trained network does not predict of its frames (their energies sit on
    another scale than its source's): a level of theory that is the source's plus 1 eV/atom is then exact."""
    first = build_model(tiny_config(), FIDS)
    first.save(tmp_path / "stage1")
    frames = make_frames(2, 2)
    own = first.predict([f.atoms for f in frames[:2]], "lo", task="e")
    for frame, p in zip(frames[:2], own):  # the lo frames become a new level of theory, 1 eV/atom higher
        frame.fidelity, frame.energy = "dft", float(p["energy"]) + len(frame.atoms)
    cfg = tiny_config(init=str(tmp_path / "stage1"), model={}, epochs=1, lr=1e-9, new_fidelities={"dft": "lo"})
    model = build_model(cfg, ("dft", "lo", "hi"))
    assert model.metadata["fidelities_from"]["dft"] == "lo"
    Trainer(model, cfg).fit(FrameDataset(frames))
    weights, old = model.composition.weight, first.composition.weight
    assert torch.allclose(weights[1:], old, atol=1e-6)  # lo and hi: not refitted
    shift = (weights[0] - old[0])[[3 - 1, 15 - 1, 26 - 1]]  # Li, P, Fe rows of the refitted dft copy
    assert shift.abs().max() > 0.1
    refitted = model.predict([f.atoms for f in frames[:2]], "dft", task="e")
    np.testing.assert_allclose([p["energy"] for p in refitted], [f.energy for f in frames[:2]], atol=2e-3)


def test_new_fidelities_need_a_trained_model_folder():
    with pytest.raises(ValueError, match="needs init = a trained model folder"):
        tiny_config(init="chgnet-0.3.0", model={}, new_fidelities={"dft": "pbe_u"})

"""Each fidelity switch adds exactly its fidelity dependence; the composition fit is least squares."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_model
from test_model_physics import predict

from mf_calc import MFCHGNet
from mf_calc.model.composition import element_counts
from mf_calc.model.fidelity import Fidelities, parse_modules


def _differs(a, b, tol=1e-6):
    return np.abs(np.asarray(a) - np.asarray(b)).max() > tol


@pytest.mark.parametrize("modules", ["", "E", "M", "R", "C", "EMRC", "MRC", "ERC", "EMC", "EMR"])
def test_module_switches(modules, lfp):
    model = tiny_model(modules)
    lo, hi = predict(model, lfp, 0), predict(model, lfp, 1)
    # structure of the parameters
    assert (model.fidelity_embedding is not None) == ("E" in modules)
    assert all((layer.fidelity_gate is not None) == ("M" in modules)
               for layer in [*model.atom_conv_layers, *model.bond_conv_layers, *model.angle_layers])
    assert len(model.readouts) == (2 if "R" in modules else 1)
    assert model.composition.weight.shape[0] == (2 if "C" in modules else 1)
    assert [model.switches.on(x) for x in "EMRC"] == [x in modules for x in "EMRC"]
    assert [model.switches.copies(x) for x in "RC"] == [len(model.readouts), model.composition.weight.shape[0]]
    # behaviour: magmoms are read before the readout, so only E and M can move them
    assert _differs(lo["magmoms"], hi["magmoms"]) == bool(set(modules) & set("EM"))
    # forces depend on the fidelity through E, M or R, never through C alone
    assert _differs(lo["forces"], hi["forces"]) == bool(set(modules) & set("EMR"))
    assert _differs(lo["energy"], hi["energy"]) == bool(modules)
    if modules == "C":
        w = model.composition.weight.numpy()
        counts = element_counts([lfp.numbers])[0]
        assert hi["energy"][0] - lo["energy"][0] == pytest.approx(counts @ (w[1] - w[0]), abs=1e-8)


def test_embedding_is_fidelity_independent_without_E(lfp):
    model = tiny_model("MRC")
    assert model.fidelity_embedding is None
    feats = model.atom_embedding(torch.as_tensor(lfp.numbers) - 1)
    assert feats.shape == (len(lfp), 16)


def test_plain_chgnet_has_no_fidelity_parameters():
    model = MFCHGNet(fidelities=("only",), modules="")
    assert not [n for n, _ in model.named_parameters() if "fidelity" in n]


def test_fidelity_names_and_errors():
    fids = Fidelities(["pbe_u", "r2scan"])
    assert fids.index(None) == 1 and fids.index("pbe_u") == 0 and fids.index(1) == 1
    with pytest.raises(ValueError, match=r"unknown fidelity 'scan'.*pbe_u.*r2scan"):
        fids.index("scan")
    with pytest.raises(ValueError, match="out of range"):
        fids.index(2)
    assert fids.index("0") == 0 and Fidelities(["1", "0"]).index("0") == 1  # text from a command line; names first
    with pytest.raises(ValueError, match="out of range"):
        fids.index("-1")
    with pytest.raises(ValueError, match="duplicate"):
        Fidelities(["a", "a"])
    with pytest.raises(ValueError, match="unknown fidelity module"):
        parse_modules("EX")
    assert parse_modules("rce") == "ERC"
    with pytest.raises(ValueError, match="unknown fidelity module"):
        MFCHGNet(fidelities=("a", "b")).switches.on("X")


def test_composition_fit_recovers_reference_energies():
    rng = np.random.default_rng(0)
    true = {3: -1.9, 25: -8.6, 26: -8.3, 15: -5.4, 8: -4.9}
    numbers_list = [rng.choice(list(true), size=rng.integers(10, 40)) for _ in range(30)]
    energies = [sum(true[z] for z in nums) for nums in numbers_list]
    model = tiny_model()
    before = model.composition.weight.clone()
    w = model.fit_composition(numbers_list, energies, fidelity="high")
    for z, ref in true.items():
        assert w[z - 1] == pytest.approx(ref, abs=1e-9)
    absent = [z - 1 for z in range(1, 95) if z not in true]
    assert torch.equal(model.composition.weight[1, absent], before[1, absent])  # absent elements kept
    assert torch.equal(model.composition.weight[0], before[0])  # other fidelity untouched


def test_composition_fit_rank_deficient_phosphates():
    """In LMFP, P and O always come 1:4 and Mn+Fe = P: the fit reproduces the energies anyway."""
    from mf_calc import lmfp

    compositions = [(1, 0), (0.5, 0.5), (0, 1), (0.25, 0.75), (1, 0.25)]
    structures = [lmfp(x_li=x, y_mn=y, supercell=(1, 1, 1), seed=s) for s, (x, y) in enumerate(compositions)]
    rng = np.random.default_rng(1)
    true = rng.normal(-6, 2, size=95)
    energies = [true[a.numbers].sum() for a in structures]
    model = tiny_model()
    w = model.fit_composition(structures, energies, fidelity=0)
    pred = element_counts([a.numbers for a in structures]) @ w
    np.testing.assert_allclose(pred, energies, atol=1e-8)
    with pytest.raises(ValueError, match="NaN"):
        model.fit_composition(structures[:2], [1.0, float("nan")], fidelity=0)


def test_residual_composition_fit_corrects_a_trained_model_where_the_totals_fit_counts_its_network_twice():
    """Energies = the model's own + per-element offsets (another code's reference): the residual fit makes the
    model predict them; a fit of the totals counts the network's own energy (its per-element part) twice."""
    from mf_calc import lmfp

    compositions = [(1, 0), (0.5, 0.5), (0, 1), (0.25, 0.75), (1, 0.25), (0.75, 0.5)]
    structures = [lmfp(x_li=x, y_mn=y, supercell=(1, 1, 1), seed=s) for s, (x, y) in enumerate(compositions)]
    model = tiny_model()
    offsets = np.zeros(94)
    offsets[[3 - 1, 25 - 1, 26 - 1, 15 - 1, 8 - 1]] = [0.7, -1.1, 0.4, 2.0, -0.3]  # eV/atom
    counts = element_counts([a.numbers for a in structures])
    energies = np.array([p["energy"] for p in model.predict(structures, "high", task="e")]) + counts @ offsets
    other = model.composition.weight[0].clone()
    model.fit_composition(structures, energies, "high", residual=True)
    refitted = np.array([p["energy"] for p in model.predict(structures, "high", task="e")])
    np.testing.assert_allclose(refitted, energies, atol=1e-8)
    assert torch.equal(model.composition.weight[0], other)  # the other fidelity keeps its row
    network = refitted - counts @ model.composition.weight[1].numpy()  # the network's own energy, eV
    model.fit_composition(structures, energies, "high")
    totals = np.array([p["energy"] for p in model.predict(structures, "high", task="e")])
    assert np.abs(totals - energies).max() > 0.1 and np.abs(network).max() > 0.1
    np.testing.assert_allclose(totals - energies, counts @ np.linalg.lstsq(counts, network, rcond=None)[0],
                               atol=1e-8)  # the network energy's per-element part, counted twice
    with pytest.raises(ValueError, match=r"residual=True\) needs ase.Atoms"):
        model.fit_composition([a.numbers for a in structures], energies, "high", residual=True)
    with pytest.raises(ValueError, match="5 predicted energies for 6 structures"):
        model.composition.fit([a.numbers for a in structures], energies, predicted=energies[:5])

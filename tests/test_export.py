"""A fidelity folded into a plain model (single-fidelity MFCHGNet or chgnet CHGNet) computes the same function."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from chgnet.model import CHGNet
from conftest import tiny_model
from pymatgen.io.ase import AseAtomsAdaptor

from mf_calc import load_model
from mf_calc.model.export import save_chgnet
from mf_calc.model.graph import collate

GPA = 1.0 / units.GPa  # eV/Å³ -> GPa


def _predict(model, atoms, fidelity=None):
    out = model(collate([model.graph(atoms, fidelity)], dtype=model.dtype), create_graph=False)
    return {k: v.detach().numpy() for k, v in out.items()}


@pytest.mark.parametrize("modules", ["EMRC", "EM", "RC"])
def test_selected_fidelity_equals_the_mf_model(modules, lmfp_delithiated):
    model = tiny_model(modules=modules, fidelities=("low", "mid", "high"))
    for fid in model.fidelities:
        plain = model.select_fidelity(fid)
        assert plain.fidelities.names == (fid,) and plain.config.modules == ""
        ref, got = _predict(model, lmfp_delithiated, fid), _predict(plain, lmfp_delithiated)
        assert abs(got["energy_per_atom"][0] - ref["energy_per_atom"][0]) < 1e-8
        np.testing.assert_allclose(got["forces"], ref["forces"], atol=1e-6)
        np.testing.assert_allclose(got["stress"], ref["stress"], atol=1e-8)
        np.testing.assert_allclose(got["magmoms"], ref["magmoms"], atol=1e-8)
    # the fidelities really differ, so the test above could fail
    lo, hi = _predict(model, lmfp_delithiated, "low"), _predict(model, lmfp_delithiated, "high")
    assert np.abs(lo["forces"] - hi["forces"]).max() > 1e-3


def _chgnet_float64(chgnet: CHGNet, atoms):
    """chgnet's prediction in float64 (its composition term stays float32, as in chgnet) and the geometry it used."""
    chgnet = chgnet.double()
    chgnet.composition_model.float()
    graph = chgnet.graph_converter(AseAtomsAdaptor.get_structure(atoms))
    graph.atom_frac_coord = graph.atom_frac_coord.detach().double().requires_grad_(True)
    graph.lattice = graph.lattice.detach().double().requires_grad_(True)
    graph.neighbor_image = graph.neighbor_image.double()
    pred = chgnet.predict_graph(graph, task="efsm")
    comp = float(chgnet.composition_model([graph])[0])
    same = atoms.copy()
    same.cell = graph.lattice.detach().numpy()
    same.positions = (graph.atom_frac_coord @ graph.lattice).detach().numpy()
    return pred, comp, same


def test_chgnet_export_equals_the_mf_model(tmp_path, lmfp_delithiated):
    model = tiny_model(modules="EMRC", fidelities=("low", "high"))  # float64
    for fid in model.fidelities:
        chgnet = model.to_chgnet(fid)
        f = model.fidelities.index(fid)
        assert torch.equal(chgnet.composition_model.fc.weight[0].double(), model.composition.weight[f])
        pred, comp, atoms = _chgnet_float64(chgnet, lmfp_delithiated)
        ours = _predict(model, atoms, fid)
        own_comp = float(model.composition.weight[f][torch.as_tensor(atoms.numbers) - 1].sum()) / len(atoms)
        # the network energy to round-off; chgnet evaluates its composition term in float32
        assert abs((pred["e"] - comp) - (ours["energy_per_atom"][0] - own_comp)) < 1e-8
        assert abs(pred["e"] - ours["energy_per_atom"][0]) < 1e-5
        np.testing.assert_allclose(pred["f"], ours["forces"], atol=1e-6)
        np.testing.assert_allclose(pred["s"], ours["stress"][0] * GPA, atol=1e-6)
        np.testing.assert_allclose(pred["m"], ours["magmoms"], atol=1e-8)
        # the file holds the same weights (float32, as chgnet loads every model) and loads with chgnet alone
        loaded = CHGNet.from_file(str(save_chgnet(model, fid, tmp_path / f"{fid}.pt")))
        expected = chgnet.float().state_dict()
        assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())


def test_every_fidelity_of_the_shipped_model_exports(lmfp_delithiated):
    model = load_model()
    for fid in model.fidelities:
        chgnet = model.to_chgnet(fid)
        pred = chgnet.predict_structure(AseAtomsAdaptor.get_structure(lmfp_delithiated), task="ef")
        ours = _predict(model, lmfp_delithiated, fid)
        assert abs(pred["e"] - ours["energy_per_atom"][0]) < 2e-4  # float32 path, as in the reduction test
        assert np.abs(pred["f"] - ours["forces"]).max() < 5e-3


def test_unknown_fidelity_is_refused():
    with pytest.raises(ValueError, match="unknown fidelity"):
        tiny_model().select_fidelity("nope")


def test_cli_export_writes_both_forms(tmp_path, capsys, lmfp_delithiated):
    from mf_calc import MFCHGNet
    from mf_calc.cli import main

    assert main(["export", "lmfp-mf", "--fidelity", "pbe_u", "--out", str(tmp_path / "exp")]) == 0
    assert "fidelity 'pbe_u'" in capsys.readouterr().out
    plain = MFCHGNet.load(tmp_path / "exp" / "model")
    assert plain.fidelities.names == ("pbe_u",)
    ours = _predict(load_model(), lmfp_delithiated, "pbe_u")
    np.testing.assert_allclose(_predict(plain, lmfp_delithiated)["forces"], ours["forces"], atol=1e-3)  # float32
    assert CHGNet.from_file(str(tmp_path / "exp" / "chgnet.pt")) is not None
    assert main(["export", "lmfp-mf", "--fidelity", "0", "--out", str(tmp_path / "one.pt")]) == 0
    assert (tmp_path / "one.pt").is_file()
    assert main(["export", "lmfp-mf", "--fidelity", "dft", "--out", str(tmp_path / "x.pt")]) == 2
    assert "unknown fidelity 'dft'" in capsys.readouterr().err


def test_the_chgnet_table_maps_both_ways():
    """Config fields and weight names go to chgnet and back unchanged (one table serves both directions)."""
    from dataclasses import asdict

    from mf_calc.model import chgnet_map

    model = tiny_model()
    fields = chgnet_map.config_fields(chgnet_map.chgnet_args(model.config))
    assert fields == {k: v for k, v in asdict(model.config).items() if k in chgnet_map.CONFIG_FIELDS}
    plain = model.select_fidelity(0)
    for key in plain.state_dict():
        assert chgnet_map.mf_state_key(chgnet_map.chgnet_state_key(key), 0) == key
    assert chgnet_map.mf_state_key("mlp.layers.0.weight", 2) == "readouts.2.layers.0.weight"
    with pytest.raises(ValueError, match="update_angle=False"):
        chgnet_map.config_fields(chgnet_map.chgnet_args(model.config) | {"update_angle": False})

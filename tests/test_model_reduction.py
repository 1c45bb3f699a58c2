"""The warm start reproduces pretrained CHGNet exactly, for every fidelity."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from ase import units
from chgnet.model import CHGNet
from pymatgen.io.ase import AseAtomsAdaptor

from mf_calc import MFCHGNet
from mf_calc.model.graph import collate

GPA = 1.0 / units.GPa  # eV/Å³ -> GPa


def _chgnet(name):
    with contextlib.redirect_stdout(io.StringIO()):
        return CHGNet.load(model_name=name, use_device="cpu", verbose=False)


def _ours(model, atoms, fidelity, dtype):
    out = model(collate([model.graph(atoms, fidelity)], dtype=dtype), create_graph=False)
    return {k: v.detach().numpy() for k, v in out.items()}


@pytest.mark.parametrize("name", ["0.3.0", "r2scan"])
def test_exact_reduction_float64(name, lmfp_delithiated):
    """Same inputs in float64: every fidelity equals chgnet to round-off."""
    ref = _chgnet(name).double()
    ref.composition_model.float()  # chgnet's AtomRef casts its input to float32
    graph = ref.graph_converter(AseAtomsAdaptor.get_structure(lmfp_delithiated))
    graph.atom_frac_coord = graph.atom_frac_coord.detach().double().requires_grad_(True)
    graph.lattice = graph.lattice.detach().double().requires_grad_(True)
    graph.neighbor_image = graph.neighbor_image.double()
    r = ref.predict_graph(graph, task="efsm")
    atoms = lmfp_delithiated.copy()  # exactly chgnet's (float32-rounded) geometry
    atoms.cell = graph.lattice.detach().numpy()
    atoms.positions = (graph.atom_frac_coord @ graph.lattice).detach().numpy()
    model = MFCHGNet.from_chgnet(name, fidelities=("pbe_u", "r2scan"), modules="EMRC").double().eval()
    for fid in model.fidelities:
        p = _ours(model, atoms, fid, torch.float64)
        assert abs(p["energy_per_atom"][0] - r["e"]) < 1e-6  # chgnet's composition term is float32
        np.testing.assert_allclose(p["forces"], r["f"], atol=1e-8)
        np.testing.assert_allclose(p["stress"][0] * GPA, r["s"], atol=1e-7)
        np.testing.assert_allclose(p["magmoms"], r["m"], atol=1e-8)


def test_reduction_float32_default_path(warm_model, lmfp_delithiated):
    """The everyday float32 path vs chgnet.predict_structure on a delithiated Mn/Fe cell.

    The residual is float32 input rounding amplified by acos() of nearly collinear bonds
    (trans O-M-O), present in chgnet itself; measured ~5e-5 eV/atom, 8e-4 eV/Å.
    """
    r = _chgnet("0.3.0").predict_structure(AseAtomsAdaptor.get_structure(lmfp_delithiated), task="efsm")
    for fid in warm_model.fidelities:
        p = _ours(warm_model, lmfp_delithiated, fid, torch.float32)
        assert abs(p["energy_per_atom"][0] - r["e"]) < 2e-4
        assert np.abs(p["forces"] - r["f"]).max() < 5e-3
        assert np.abs(p["stress"][0] * GPA - r["s"]).max() < 1e-2
        assert np.abs(p["magmoms"] - r["m"]).max() < 1e-3


def test_fidelity_parameters_start_neutral(warm_model):
    for name, p in warm_model.named_parameters():
        if "fidelity" in name:
            assert torch.count_nonzero(p) == 0, name
    w = warm_model.composition.weight
    assert torch.equal(w[0], w[1])
    r0, r1 = (dict(r.named_parameters()) for r in warm_model.readouts)
    assert all(torch.equal(r0[k], r1[k]) for k in r0)


def test_unknown_pretrained_name():
    with pytest.raises(ValueError, match="unknown pretrained"):
        MFCHGNet.from_chgnet("9.9.9")

"""The calculator's fast path (neighbour reuse, one backward pass) equals a fresh full evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from conftest import tiny_model

from mf_calc import MFCalculator


def _fresh(model, atoms, fidelity):
    return model.predict([atoms], fidelity=fidelity)[0]


def _compare(calc, model, atoms):
    ref = _fresh(model, atoms, calc.fidelity)
    n = len(atoms)
    assert abs(atoms.get_potential_energy() - float(ref["energy"])) / n < 1e-5
    np.testing.assert_allclose(atoms.get_forces(), ref["forces"], atol=1e-4)
    s = ref["stress"]
    np.testing.assert_allclose(atoms.get_stress(), [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]], atol=1e-6)
    np.testing.assert_allclose(atoms.get_magnetic_moments(), ref["magmoms"], atol=1e-5)


@pytest.mark.parametrize("skin", [0.3, 0.02])
def test_md_trajectory_matches_fresh_evaluation(lfp, skin):
    model = tiny_model().float()
    atoms = lfp.copy()
    calc = MFCalculator(model, fidelity="low", skin=skin)
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=1500, rng=np.random.default_rng(0))
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=1500, friction=0.02, rng=np.random.default_rng(1))
    for _ in range(8):
        dyn.run(3)
        _compare(calc, model, atoms)
    assert calc.neighbors.n_reuses > 0
    if skin < 0.05:  # a thin skin must force rebuilds along the way
        assert calc.neighbors.n_builds > 1


def test_cell_changes_like_npt(lfp):
    """Affine cell changes (as a barostat makes) are tracked; large ones trigger a rebuild."""
    model = tiny_model().float()
    atoms = lfp.copy()
    calc = MFCalculator(model, fidelity="high", skin=0.5)
    atoms.calc = calc
    rng = np.random.default_rng(2)
    for _ in range(10):
        deform = np.eye(3) + np.diag(rng.normal(0, 0.004, 3))  # a, b, c change independently
        atoms.set_cell(atoms.cell.array @ deform, scale_atoms=True)
        _compare(calc, model, atoms)
    atoms.set_cell(atoms.cell.array * 1.08, scale_atoms=True)
    _compare(calc, model, atoms)
    assert calc.neighbors.n_reuses > 0 and calc.neighbors.n_builds > 1


def test_wrapped_atom_reuses_the_search_and_new_composition_rebuilds(lfp):
    model = tiny_model().float()
    atoms = lfp.copy()
    calc = MFCalculator(model, skin=0.5)
    atoms.calc = calc
    atoms.get_forces()
    atoms.positions[0] += atoms.cell[1]  # same physical structure, atom moved by a lattice vector (wrapping)
    atoms.positions[3] -= atoms.cell[0] + atoms.cell[2]
    _compare(calc, model, atoms)
    assert calc.neighbors.n_builds == 1 and calc.neighbors.n_reuses >= 1
    del atoms[0]
    _compare(calc, model, atoms)
    assert calc.neighbors.n_builds == 2


def test_batched_predict_equals_single(lfp, lmfp_delithiated):
    model = tiny_model().float()
    structures = [lfp, lmfp_delithiated, lfp.copy()]
    batched = model.predict(structures, fidelity="high", batch_size=2)
    for atoms, got in zip(structures, batched):
        single = _fresh(model, atoms, "high")
        assert got["energy"] == pytest.approx(single["energy"], abs=1e-4)
        np.testing.assert_allclose(got["forces"], single["forces"], atol=1e-5)


def test_compiled_model_matches_fresh_evaluation_without_compiling_again(lfp):
    """``compile=True`` (torch.compile, dynamic shapes) gives the eager predictions along an MD run whose graph
    changes size, and compiles once per task, not once per graph size."""
    import torch
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = tiny_model().float()
    atoms = lfp.copy()
    calc = MFCalculator(model, fidelity="low", skin=0.0, compile=True)  # a fresh search each step
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=1500, rng=np.random.default_rng(0))
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=1500, friction=0.02, rng=np.random.default_rng(1))
    edges, graphs = set(), []
    for _ in range(5):
        dyn.run(2)
        _compare(calc, model, atoms)
        edges.add(len(calc._batch(atoms).edges))
        graphs.append(counters["stats"]["unique_graphs"])
    assert len(edges) > 1  # the graph did change size
    assert graphs[0] > 0 and graphs[-1] == graphs[1]  # the first steps compile (energy+forces, +stress); no more

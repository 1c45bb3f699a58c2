"""Forces and stress are exact derivatives; predictions are invariant; batching changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_model

from mf_calc.model.graph import collate


def predict(model, atoms, fidelity=1):
    out = model(collate([model.graph(atoms, fidelity)], dtype=model.dtype), create_graph=False)
    return {k: v.detach().numpy() for k, v in out.items()}


def energy(model, atoms, fidelity=1):
    return predict(model, atoms, fidelity)["energy"][0]


@pytest.mark.parametrize("fidelity", [0, 1])
def test_forces_match_finite_differences(lfp, fidelity):
    model = tiny_model()
    forces = predict(model, lfp, fidelity)["forces"]
    h = 1e-5
    for atom, axis in [(0, 0), (5, 1), (13, 2), (27, 0)]:
        plus, minus = lfp.copy(), lfp.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        fd = -(energy(model, plus, fidelity) - energy(model, minus, fidelity)) / (2 * h)
        assert forces[atom, axis] == pytest.approx(fd, abs=1e-6, rel=1e-5)


def test_stress_matches_finite_differences(lfp):
    """stress_ij = (1/V) dE/d(eps_ij) for the deformation cell -> cell (I + eps)."""
    model = tiny_model()
    stress = predict(model, lfp)["stress"][0]
    h, volume = 1e-6, lfp.get_volume()
    for i, j in [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (2, 0)]:
        energies = []
        for sign in (1, -1):
            deform = np.eye(3)
            deform[i, j] += sign * h
            strained = lfp.copy()
            strained.set_cell(lfp.cell.array @ deform, scale_atoms=False)
            strained.positions = lfp.positions @ deform
            energies.append(energy(model, strained))
        fd = (energies[0] - energies[1]) / (2 * h) / volume
        assert stress[i, j] == pytest.approx(fd, abs=1e-7, rel=1e-5)


def _random_rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_translation_rotation_permutation_invariance(lfp):
    model = tiny_model()
    ref = predict(model, lfp)

    moved = lfp.copy()
    moved.positions += np.array([1.3, -0.7, 2.9])
    moved.wrap()
    p = predict(model, moved)
    assert p["energy"][0] == pytest.approx(ref["energy"][0], abs=1e-9)
    np.testing.assert_allclose(p["forces"], ref["forces"], atol=1e-9)

    rot = _random_rotation(7)
    rotated = lfp.copy()
    rotated.set_cell(lfp.cell.array @ rot.T, scale_atoms=False)
    rotated.positions = lfp.positions @ rot.T
    p = predict(model, rotated)
    assert p["energy"][0] == pytest.approx(ref["energy"][0], abs=1e-9)
    np.testing.assert_allclose(p["forces"], ref["forces"] @ rot.T, atol=1e-9)
    np.testing.assert_allclose(p["stress"][0], rot @ ref["stress"][0] @ rot.T, atol=1e-10)
    np.testing.assert_allclose(p["magmoms"], ref["magmoms"], atol=1e-9)

    perm = np.random.default_rng(1).permutation(len(lfp))
    p = predict(model, lfp[perm])
    assert p["energy"][0] == pytest.approx(ref["energy"][0], abs=1e-9)
    np.testing.assert_allclose(p["forces"], ref["forces"][perm], atol=1e-9)
    np.testing.assert_allclose(p["magmoms"], ref["magmoms"][perm], atol=1e-9)


def test_alone_equals_inside_mixed_fidelity_batch(lfp, lmfp_delithiated):
    model = tiny_model()
    other = lfp.copy()
    other.rattle(0.05, seed=9)
    graphs = [model.graph(other, 0), model.graph(lmfp_delithiated, 1), model.graph(lfp, 0), model.graph(lfp, 1)]
    batch = collate(graphs, dtype=torch.float64)
    assert batch.uniform_fidelity is None
    out = model(batch, create_graph=False)
    n = batch.n_atoms.tolist()
    starts = np.r_[0, np.cumsum(n)]
    for k, (atoms, fid) in enumerate([(other, 0), (lmfp_delithiated, 1), (lfp, 0), (lfp, 1)]):
        alone = predict(model, atoms, fid)
        assert out["energy"][k].item() == pytest.approx(alone["energy"][0], abs=1e-9)
        np.testing.assert_allclose(out["forces"][starts[k]:starts[k + 1]].detach().numpy(), alone["forces"], atol=1e-9)
        np.testing.assert_allclose(out["stress"][k].detach().numpy(), alone["stress"][0], atol=1e-10)
        np.testing.assert_allclose(out["magmoms"][starts[k]:starts[k + 1]].detach().numpy(), alone["magmoms"], atol=1e-9)
    # the two fidelities of the same structure really differ in this model
    assert abs(out["energy"][2].item() - out["energy"][3].item()) > 1e-3

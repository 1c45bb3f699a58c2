"""The graph pipeline (mf_calc.model.device_graph) against a brute-force reference written here (every atom pair
and every periodic image in range, every pair of short bonds at a centre): same directed edges with their images,
same angle triplets, on random periodic cells (skewed, small with many images), a molecule, several systems in
one batch, and after steps that reuse the neighbour search."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from conftest import tiny_model

from mf_calc import lmfp
from mf_calc.model.device_graph import DeviceGraphBuilder
from mf_calc.model.graph import collate

CUTOFF, BOND_CUTOFF = 5.0, 3.0


def _edge_keys(edges, images):
    return np.c_[np.asarray(edges), np.round(np.asarray(images)).astype(int)]


def _graph_sets(edges, images, angles):
    keys = _edge_keys(edges, images)
    edge_set = sorted(map(tuple, keys.tolist()))
    angle_set = sorted((int(c),) + tuple(keys[a]) + tuple(keys[b]) for c, a, b in np.asarray(angles))
    return edge_set, angle_set


def _reference(atoms, offset=0):
    """Brute force: directed edges (i, j, image) with |r_j + image·cell - r_i| < CUTOFF, i != j or image != 0,
    and angle triplets (centre, bond a, bond b) over every ordered pair of bonds shorter than BOND_CUTOFF."""
    cell, pos = atoms.cell.array, atoms.positions
    reach = [0, 0, 0]
    if atoms.pbc.any():
        widths = atoms.cell.volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
        reach = [int(np.ceil(CUTOFF / w)) + 1 if periodic else 0 for w, periodic in zip(widths, atoms.pbc)]
    images = np.array([(a, b, c) for a in range(-reach[0], reach[0] + 1) for b in range(-reach[1], reach[1] + 1)
                       for c in range(-reach[2], reach[2] + 1)])
    edges, lengths = [], []
    for i in range(len(atoms)):
        for j in range(len(atoms)):
            d = np.linalg.norm(pos[j] + images @ cell - pos[i], axis=1)
            for image, dist in zip(images, d):
                if dist < CUTOFF and (i != j or image.any()):
                    edges.append((i + offset, j + offset, *image.tolist()))
                    lengths.append(dist)
    short = [k for k, dist in enumerate(lengths) if dist < BOND_CUTOFF]
    angles = [(edges[a][0],) + edges[a] + edges[b] for a in short for b in short if a != b and edges[a][0] == edges[b][0]]
    return edges, angles


def _device_batch(systems, builder=None):
    builder = builder or DeviceGraphBuilder(CUTOFF, BOND_CUTOFF, skin=0.5)
    numbers = torch.from_numpy(np.concatenate([a.numbers for a in systems]))
    positions = torch.from_numpy(np.concatenate([a.positions for a in systems]))
    cells = torch.from_numpy(np.stack([a.cell.array for a in systems]))
    return builder.batch(numbers, positions, cells, [len(a) for a in systems], systems[0].pbc, 0,
                         dtype=torch.float64)


def _assert_same_graph(systems, batch):
    expected_edges, expected_angles, offset = [], [], 0
    for atoms in systems:
        edges, angles = _reference(atoms, offset)
        expected_edges += edges
        expected_angles += angles
        offset += len(atoms)
    got_edges, got_angles = _graph_sets(batch.edges.numpy(), batch.images.numpy(), batch.angles.numpy())
    assert got_edges == sorted(expected_edges)
    assert got_angles == sorted(expected_angles)
    # undirected map: each directed bond and its reverse share one undirected bond
    dir2und, und2dir = batch.dir2und.numpy(), batch.und2dir.numpy()
    assert np.array_equal(dir2und[und2dir], np.arange(len(und2dir)))
    assert np.bincount(dir2und).tolist() == [2] * len(und2dir)


def _random_cell(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 12))
    cell = np.diag(rng.uniform(3.0, 7.0, 3)) + rng.uniform(-1.5, 1.5, (3, 3)) * (1 - np.eye(3))  # skewed
    atoms = Atoms(numbers=rng.choice([3, 8, 15, 25, 26], n), cell=cell, pbc=True)
    frac = rng.random((n, 3))
    atoms.set_scaled_positions(frac)
    while True:  # keep atoms at least 1 Å apart, as real input is
        d = atoms.get_all_distances(mic=True) + 10 * np.eye(n)
        if d.min() > 1.0:
            return atoms
        i = np.unravel_index(d.argmin(), d.shape)[0]
        atoms.positions[i] = rng.random(3) @ cell


@pytest.mark.parametrize("seed", range(6))
def test_random_skewed_periodic_cells(seed):
    atoms = _random_cell(seed)
    _assert_same_graph([atoms], _device_batch([atoms]))


def test_small_cell_with_many_images_and_a_molecule():
    small = bulk("Li", "bcc", a=3.4)  # one atom: every neighbour is a periodic image of itself
    _assert_same_graph([small], _device_batch([small]))
    water = molecule("H2O")
    water.center(vacuum=5.0)
    water.pbc = False
    _assert_same_graph([water], _device_batch([water]))


@pytest.mark.parametrize("pbc", [(True, True, False), (False, True, False)])
def test_partly_periodic_cells(pbc):
    """A slab and a wire: images only along the periodic directions, atoms near the open faces included."""
    atoms = _random_cell(20)
    atoms.pbc = pbc
    atoms.positions[0] = atoms.cell.array.sum(0) * 0.999  # beside a corner: its open-side images must not count
    _assert_same_graph([atoms], _device_batch([atoms]))


def test_several_systems_in_one_batch():
    systems = [_random_cell(10), lmfp(x_li=0.5, y_mn=0.5, supercell=(1, 1, 1), seed=3), _random_cell(11)]
    batch = _device_batch(systems)
    _assert_same_graph(systems, batch)
    assert batch.atom_owner.tolist() == sum(([k] * len(a) for k, a in enumerate(systems)), [])


def test_reused_search_gives_the_fresh_graph_and_energy_along_a_random_walk():
    model = tiny_model()
    atoms = lmfp(x_li=0.5, y_mn=0.5, supercell=(1, 1, 1), seed=4)
    builder = DeviceGraphBuilder(model.config.cutoff, model.config.bond_cutoff, skin=0.6)
    rng = np.random.default_rng(0)
    for _ in range(12):
        atoms.positions += rng.normal(0, 0.06, atoms.positions.shape)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.normal(0, 0.004, (3, 3))), scale_atoms=True)
        wrapped = atoms.copy()
        wrapped.wrap()  # as TorchSim hands positions over: wrapped into the cell
        batch = _device_batch([wrapped], builder)
        fresh = collate([model.graph(atoms, "high")], dtype=torch.float64)
        batch.uniform_fidelity, batch.fidelity = 1, torch.tensor([1])
        got, ref = model(batch, task="efs"), model(fresh, task="efs")
        assert float(got["energy"].detach()[0]) == pytest.approx(float(ref["energy"].detach()[0]), abs=1e-9)
        np.testing.assert_allclose(got["forces"].detach().numpy(), ref["forces"].detach().numpy(), atol=1e-9)
        np.testing.assert_allclose(got["stress"].detach().numpy(), ref["stress"].detach().numpy(), atol=1e-11)
    assert builder.n_reuses > 0 and builder.n_builds > 1


def test_bad_input_is_named():
    builder = DeviceGraphBuilder(CUTOFF, BOND_CUTOFF)
    atoms = bulk("Fe", "bcc", a=2.87, cubic=True)
    atoms.positions[1] = atoms.positions[0] + 0.01
    with pytest.raises(ValueError, match="closer than 0.1 Å"):
        _device_batch([atoms], builder)
    lonely = Atoms("Li2", positions=[[0, 0, 0], [20, 0, 0]], cell=[40, 40, 40], pbc=False)
    with pytest.raises(ValueError, match=r"isolated atom\(s\) \[0, 1\]"):
        _device_batch([lonely])
    nan = bulk("Li", "bcc", a=3.4)
    nan.positions[0, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        _device_batch([nan])


def test_a_refused_system_leaves_the_builder_as_it_was():
    """An unknown element or a flat periodic cell is refused before the builder forgets its searches: the next
    step of the earlier system (a fresh search, atoms moved past the skin) still gets the exact graph."""
    atoms = lmfp(x_li=0.5, y_mn=0.5, supercell=(1, 1, 1), seed=6)
    builder = DeviceGraphBuilder(CUTOFF, BOND_CUTOFF, skin=0.5)
    _device_batch([atoms], builder)
    alien = bulk("Li", "bcc", a=3.4) * (2, 1, 1)
    alien.numbers[0] = 95
    with pytest.raises(ValueError, match=r"atomic number \[95\]"):
        _device_batch([alien], builder)
    flat = atoms.copy()
    flat.cell[2] = 0.0
    with pytest.raises(ValueError, match="zero-volume cell"):
        _device_batch([flat], builder)
    atoms.positions += np.random.default_rng(2).normal(0, 0.3, atoms.positions.shape)
    _assert_same_graph([atoms], _device_batch([atoms], builder))
    assert builder.n_builds == 2


def test_a_barostat_rescaling_reuses_the_search_and_gives_the_fresh_graph():
    """Positions scaled with the cell (as NPT integrators move them) cost no new search for a small strain, yet
    the graph stays exact; a strain beyond the skin's bound searches again."""
    atoms = lmfp(x_li=0.5, y_mn=0.5, supercell=(1, 1, 1), seed=5)
    builder = DeviceGraphBuilder(CUTOFF, BOND_CUTOFF, skin=0.5)
    _device_batch([atoms], builder)
    rng = np.random.default_rng(1)
    for _ in range(5):  # 1 % strains: the affine displacement (up to ~0.1 Å) alone would pass a Cartesian bound
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.normal(0, 0.01 / 3, (3, 3))), scale_atoms=True)
        atoms.positions += rng.normal(0, 0.01, atoms.positions.shape)
        _assert_same_graph([atoms], _device_batch([atoms], builder))
    assert builder.n_builds == 1 and builder.n_reuses == 5
    atoms.set_cell(atoms.cell.array * 1.08, scale_atoms=True)  # (cutoff + skin)·8 % > skin: search again
    _assert_same_graph([atoms], _device_batch([atoms], builder))
    assert builder.n_builds == 2

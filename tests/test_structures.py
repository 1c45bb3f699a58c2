"""Tests for the olivine LMFP structure builder (pure ASE, no model)."""

import json

import numpy as np
import pytest

from mf_calc.structures import (
    LFP_A,
    LFP_B,
    LFP_C,
    LMP_A,
    LMP_B,
    LMP_C,
    lmfp,
    olivine_cell,
)


def _counts(atoms):
    syms = atoms.get_chemical_symbols()
    return {s: syms.count(s) for s in ("Li", "Mn", "Fe", "P", "O")}


def _min_dist(atoms, s1, s2):
    d = atoms.get_all_distances(mic=True)
    syms = np.array(atoms.get_chemical_symbols())
    block = d[np.ix_(syms == s1, syms == s2)]
    if s1 == s2:
        block = block[block > 1e-8]
    return block.min()


def test_lfp_unit_cell():
    atoms = lmfp(supercell=(1, 1, 1))
    assert len(atoms) == 28
    formula = atoms.symbols.formula.count()
    assert "".join(f"{el}{n}" for el, n in formula.items()) == "Li4Fe4P4O16"
    assert atoms.pbc.all()
    np.testing.assert_allclose(atoms.cell.cellpar(), [LFP_A, LFP_B, LFP_C, 90, 90, 90], atol=1e-10)
    # elements grouped in order Li, Fe, P, O
    assert atoms.get_chemical_symbols() == ["Li"] * 4 + ["Fe"] * 4 + ["P"] * 4 + ["O"] * 16
    ref = olivine_cell()
    np.testing.assert_allclose(atoms.positions, ref.positions)
    assert list(atoms.numbers) == list(ref.numbers)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_space_group_pnma():
    pytest.importorskip("spglib")
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    struct = AseAtomsAdaptor.get_structure(lmfp(supercell=(1, 1, 1)))
    sga = SpacegroupAnalyzer(struct, symprec=1e-3)
    assert sga.get_space_group_number() == 62


def test_li_channels_along_b():
    atoms = lmfp(supercell=(1, 1, 1))
    li = atoms[[s == "Li" for s in atoms.get_chemical_symbols()]]
    # Li 4a: nearest Li-Li neighbours are b/2 apart, displaced purely along b
    d = li.get_all_distances(mic=True, vector=True)[0, 1:]
    norms = np.linalg.norm(d, axis=1)
    nn = d[np.argmin(norms)]
    assert norms.min() == pytest.approx(LFP_B / 2)
    np.testing.assert_allclose(np.abs(nn), [0, LFP_B / 2, 0], atol=1e-8)


def test_interatomic_distances():
    atoms = lmfp(supercell=(1, 1, 2))
    d = atoms.get_all_distances(mic=True)
    assert d[~np.eye(len(atoms), dtype=bool)].min() > 1.4
    assert 1.5 <= _min_dist(atoms, "P", "O") <= 1.6
    assert _min_dist(atoms, "Fe", "O") >= 1.9
    assert 1.9 <= _min_dist(atoms, "Li", "O") <= 2.3
    # every P is tetrahedrally coordinated by 4 O within 1.7 A
    syms = np.array(atoms.get_chemical_symbols())
    po = d[np.ix_(syms == "P", syms == "O")]
    assert ((po < 1.7).sum(axis=1) == 4).all()
    # every Fe is octahedrally coordinated by 6 O within 2.4 A
    feo = d[np.ix_(syms == "Fe", syms == "O")]
    assert ((feo < 2.4).sum(axis=1) == 6).all()


def test_partial_composition():
    atoms = lmfp(x_li=0.5, y_mn=0.25, supercell=(1, 1, 2))
    assert len(atoms) == 52
    assert _counts(atoms) == {"Li": 4, "Mn": 2, "Fe": 6, "P": 8, "O": 32}
    # Mn sits on former Fe sites, and remaining Li on Li sites
    full = lmfp(supercell=(1, 1, 2))
    frac = atoms.get_scaled_positions()
    ffrac = full.get_scaled_positions()
    fsyms = np.array(full.get_chemical_symbols())
    for sym, host in (("Mn", "Fe"), ("Fe", "Fe"), ("Li", "Li"), ("P", "P"), ("O", "O")):
        sel = np.array(atoms.get_chemical_symbols()) == sym
        for p in frac[sel]:
            diff = ffrac[fsyms == host] - p
            diff -= np.round(diff)
            assert np.abs(diff).max(axis=1).min() < 1e-8
    # grouped ordering Li, TM, P, O
    rank = [{"Li": 0, "Mn": 1, "Fe": 1, "P": 2, "O": 3}[s] for s in atoms.get_chemical_symbols()]
    assert rank == sorted(rank)


def test_extremes():
    assert _counts(lmfp(x_li=0.0, supercell=(1, 1, 1)))["Li"] == 0
    mp = lmfp(y_mn=1.0, supercell=(1, 1, 1))
    assert _counts(mp) == {"Li": 4, "Mn": 4, "Fe": 0, "P": 4, "O": 16}


def test_info_json_friendly():
    atoms = lmfp(x_li=0.75, y_mn=0.5, supercell=(1, 1, 2), seed=3)
    info = {k: atoms.info[k] for k in ("x_li", "y_mn", "supercell", "seed")}
    assert info == {"x_li": 0.75, "y_mn": 0.5, "supercell": [1, 1, 2], "seed": 3}
    json.dumps(info)
    assert lmfp(seed=None).info["seed"] is None


def test_seed_reproducibility():
    a1 = lmfp(x_li=0.5, y_mn=0.25, seed=7)
    a2 = lmfp(x_li=0.5, y_mn=0.25, seed=7)
    np.testing.assert_array_equal(a1.numbers, a2.numbers)
    np.testing.assert_array_equal(a1.positions, a2.positions)


def test_different_seeds_differ():
    def mn_sites(seed):
        at = lmfp(y_mn=0.25, supercell=(1, 1, 2), seed=seed)
        pos = at.positions[at.numbers == 25]
        return tuple(map(tuple, np.round(pos, 6)))

    placements = {mn_sites(s) for s in range(6)}
    assert len(placements) > 1
    # 2 of 8 TM sites: 28 possible orderings; seeds 0 and 1 happen to differ
    assert mn_sites(0) != mn_sites(1)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(y_mn=0.3, supercell=(1, 1, 2)), "y_mn"),
        (dict(x_li=0.1, supercell=(1, 1, 1)), "x_li"),
    ],
)
def test_unrepresentable_fraction(kwargs, name):
    with pytest.raises(ValueError, match=name) as exc:
        lmfp(**kwargs)
    assert "not representable" in str(exc.value)


def test_unrepresentable_message_suggests_nearest():
    with pytest.raises(ValueError) as exc:
        lmfp(y_mn=0.3, supercell=(1, 1, 2))
    msg = str(exc.value)
    assert "8 transition-metal sites" in msg
    assert "0.25" in msg and "0.375" in msg


@pytest.mark.parametrize("kwargs", [dict(x_li=1.5), dict(x_li=-0.25), dict(y_mn=1.25), dict(y_mn=-0.5)])
def test_out_of_range_fraction(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        lmfp(**kwargs)


@pytest.mark.parametrize("supercell", [2, (1, 1), (1, 1, 0), (1, -1, 2), (1, 1, 2.0), (1, 1, 1, 1), "112"])
def test_bad_supercell(supercell):
    with pytest.raises(ValueError, match="supercell"):
        lmfp(supercell=supercell)


def test_bad_lattice():
    with pytest.raises(ValueError, match="lattice"):
        lmfp(lattice="foo")


def test_vegard():
    end = lmfp(y_mn=1.0, supercell=(1, 1, 1)).cell.cellpar()[:3]
    np.testing.assert_allclose(end, [LMP_A, LMP_B, LMP_C], atol=1e-10)
    mid = lmfp(y_mn=0.5, supercell=(1, 1, 1)).cell.cellpar()[:3]
    np.testing.assert_allclose(mid, 0.5 * (np.array([LFP_A, LFP_B, LFP_C]) + [LMP_A, LMP_B, LMP_C]))
    assert LFP_A < mid[0] < LMP_A
    # lattice="lfp" ignores composition
    lfp = lmfp(y_mn=1.0, supercell=(1, 1, 1), lattice="lfp").cell.cellpar()[:3]
    np.testing.assert_allclose(lfp, [LFP_A, LFP_B, LFP_C], atol=1e-10)
    # supercell scales the cell; delithiation does not change it
    sc = lmfp(x_li=0.5, y_mn=0.5, supercell=(1, 1, 2)).cell.cellpar()[:3]
    np.testing.assert_allclose(sc, mid * [1, 1, 2])

"""Readers of user DFT data -> labelled frames (mf_calc.data).

Fixtures in tests/data (hand-made, numbers chosen by hand):
  frames.extxyz  3 frames: pbe_u (all labels), pbe (no magmoms, has
                 initial_magmoms), r2scan (no stress)
  vasprun.xml    2 ionic steps of Li-Fe-O (3 atoms), stress in kBar
  OUTCAR         the same 2 ionic steps (+ magnetization (x) blocks)
"""

import bz2
import gzip
import re
import shutil
from pathlib import Path

import ase.db
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from mf_calc.data import DataError, Frame, read_ase_db, read_extxyz, read_frames, read_outcar, read_vasprun

DATA = Path(__file__).parent / "data"
XYZ, VASPRUN, OUTCAR = DATA / "frames.extxyz", DATA / "vasprun.xml", DATA / "OUTCAR"

KBAR = 0.1 / 160.21766208  # eV/Å^3 per kBar, written out instead of ase.units
# Numbers written into vasprun.xml / OUTCAR (VASP conventions).
VASP_E0 = [-20.45, -20.56]  # energy(sigma->0), eV
VASP_FORCES = np.array([[0.1, -0.2, 0.3], [-0.05, 0.15, -0.25], [-0.05, 0.05, -0.05]])
VASP_STRESS_KBAR = np.array([[10.0, 1.0, 2.0], [1.0, -20.0, 3.0], [2.0, 3.0, 30.0]])
# ASE: sign flipped (VASP positive = compressive), Voigt xx yy zz yz xz xy.
ASE_STRESS_0 = -KBAR * np.array([10.0, -20.0, 30.0, 3.0, 2.0, 1.0])


def _xyz_frame(species="Li O", energy="-3.5", forces="forces:R:3", row_forces=("0.1 0.2 0.3",) * 2,
               info="fidelity=pbe"):
    lines = [f'2\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3:{forces} '
             f'energy={energy} {info} pbc="T T T"']
    lines += [f"{s} {i} {i} {i} {f}" for i, (s, f) in enumerate(zip(species.split(), row_forces))]
    return "\n".join(lines) + "\n"


def _write(path, text):
    path.write_text(text)
    return path


# --- extxyz --------------------------------------------------------------------------------------

def test_extxyz_exact_labels_and_missing_ones_are_none():
    frames = read_extxyz(XYZ)
    assert [f.fidelity for f in frames] == ["pbe_u", "pbe", "r2scan"]
    assert [f.source for f in frames] == [f"{XYZ}:{i}" for i in range(3)]
    f0, f1, f2 = frames
    assert f0.energy == -20.45 and f1.energy == -18.25 and f2.energy == -35.125
    np.testing.assert_array_equal(f0.forces, VASP_FORCES)
    np.testing.assert_array_equal(f0.stress, [-0.01, 0.02, -0.03, 0.003, 0.002, 0.001])
    np.testing.assert_array_equal(f0.magmoms, [0.01, 3.8, 0.05])
    np.testing.assert_array_equal(f1.stress, [0.004, 0.005, 0.006, 0, 0, 0])
    assert f1.magmoms is None  # initial_magmoms in the file are inputs, never labels
    assert f2.stress is None
    np.testing.assert_array_equal(f2.magmoms, [0.0, -4.1, 0.1])
    assert all(f.atoms.calc is None for f in frames)
    assert f2.atoms.get_chemical_symbols() == ["Li", "Fe", "O"]
    np.testing.assert_allclose(f2.atoms.cell.lengths(), [4.1] * 3)


def test_extxyz_index_keeps_file_position_in_source():
    (frame,) = read_extxyz(XYZ, index="2")
    assert frame.source == f"{XYZ}:2" and frame.fidelity == "r2scan"
    assert [f.source for f in read_extxyz(XYZ, index="-2:")] == [f"{XYZ}:1", f"{XYZ}:2"]


def test_fidelity_argument_overrides_info_key():
    assert {f.fidelity for f in read_extxyz(XYZ, fidelity="hse")} == {"hse"}
    assert {f.fidelity for f in read_frames(XYZ, fidelity="hse")} == {"hse"}


def test_custom_fidelity_key(tmp_path):
    path = _write(tmp_path / "k.xyz", _xyz_frame(info="level=scan"))
    assert read_extxyz(path, fidelity_key="level")[0].fidelity == "scan"


def test_missing_fidelity_is_an_error(tmp_path):
    path = _write(tmp_path / "nofid.xyz", _xyz_frame(info=""))
    with pytest.raises(DataError, match=r"nofid\.xyz:0: no fidelity"):
        read_extxyz(path)
    with pytest.raises(DataError, match="fidelity"):
        read_frames(VASPRUN)  # VASP output has no fidelity of its own


@pytest.mark.parametrize("kwargs, problem", [
    (dict(energy="nan"), "non-finite energy"),
    (dict(energy="inf"), "non-finite energy"),
    (dict(row_forces=("0.1 nan 0.3", "0 0 0")), "non-finite forces"),
    (dict(forces="forces:R:2", row_forces=("1 2", "3 4")), r"forces has shape \(2, 2\)"),
    (dict(species="Li X"), r"unknown element.*\[0\]"),
    (dict(species="Li Am"), r"unknown element.*\[95\]"),
])
def test_bad_frame_names_file_and_frame(tmp_path, kwargs, problem):
    path = _write(tmp_path / "bad.xyz", _xyz_frame() + _xyz_frame(**kwargs))
    with pytest.raises(DataError, match=rf"bad\.xyz:1: {problem}"):
        read_extxyz(path)


# --- Frame ----------------------------------------------------------------------------------------

def _frame(**kw):
    args = dict(atoms=Atoms("LiO", positions=[[0, 0, 0], [1, 1, 1]], cell=[3, 3, 3], pbc=True),
                fidelity="pbe", energy=-1.0, forces=None, stress=None, magmoms=None, source="f:7")
    return Frame(**{**args, **kw})


def test_frame_converts_3x3_stress_to_voigt_and_drops_calculator():
    atoms = Atoms("LiO", positions=[[0, 0, 0], [1, 1, 1]], cell=[3, 3, 3], pbc=True)
    atoms.calc = SinglePointCalculator(atoms, energy=1.0)
    frame = _frame(atoms=atoms, stress=[[1, 6, 5], [6, 2, 4], [5, 4, 3]]).validate()
    np.testing.assert_array_equal(frame.stress, [1, 2, 3, 4, 5, 6])
    assert frame.atoms.calc is None and atoms.calc is not None


@pytest.mark.parametrize("kw, problem", [
    (dict(atoms=Atoms(cell=[3, 3, 3], pbc=True)), "empty structure"),
    (dict(stress=np.zeros(5)), r"stress has shape \(5,\)"),
    (dict(magmoms=np.zeros((2, 3))), r"magmoms has shape \(2, 3\)"),
    (dict(forces=np.zeros((3, 3))), r"forces has shape \(3, 3\), expected \(2, 3\)"),
    (dict(magmoms=[0.0, np.inf]), "non-finite magmoms"),
    (dict(energy="abc"), "non-numeric"),
    (dict(fidelity=""), "fidelity"),
])
def test_frame_validate_rejects(kw, problem):
    with pytest.raises(DataError, match=f"^f:7: {problem}"):
        _frame(**kw).validate()


# --- ASE database --------------------------------------------------------------------------------

def test_ase_db_round_trip_with_missing_labels(tmp_path):
    path = tmp_path / "train.db"
    db = ase.db.connect(path)
    full = Atoms("LiFeO", positions=[[0, 0, 0], [1, 1, 1], [2, 1, 0]], cell=[4, 4, 4], pbc=True)
    forces, stress = np.arange(9.0).reshape(3, 3) / 10, np.array([1, 2, 3, 4, 5, 6]) * 1e-3
    full.calc = SinglePointCalculator(full, energy=-12.5, forces=forces, stress=stress,
                                      magmoms=[0.0, 3.7, 0.1])
    id_full = db.write(full, fidelity="pbe_u")
    bare = full.copy()
    bare.set_initial_magnetic_moments([0, 5, 0])
    bare.calc = SinglePointCalculator(bare, energy=-11.0)
    id_bare = db.write(bare, fidelity="r2scan")

    f_full, f_bare = read_ase_db(path)
    assert (f_full.fidelity, f_full.energy, f_full.source) == ("pbe_u", -12.5, f"{path}:{id_full}")
    np.testing.assert_array_equal(f_full.forces, forces)
    np.testing.assert_allclose(f_full.stress, stress)
    np.testing.assert_array_equal(f_full.magmoms, [0.0, 3.7, 0.1])
    assert (f_bare.fidelity, f_bare.energy) == ("r2scan", -11.0)
    assert f_bare.forces is None and f_bare.stress is None and f_bare.magmoms is None
    assert f_bare.source == f"{path}:{id_bare}"

    assert [f.energy for f in read_ase_db(path, selection="fidelity=r2scan")] == [-11.0]
    assert {f.fidelity for f in read_frames(path, fidelity="hse")} == {"hse"}
    db.write(full)  # no fidelity key-value pair
    with pytest.raises(DataError, match=r"train\.db:3: no fidelity"):
        read_ase_db(path)


# --- VASP -----------------------------------------------------------------------------------------

def test_vasprun_every_ionic_step_in_ase_units():
    frames = read_vasprun(VASPRUN, "pbe_u")
    assert [f.source for f in frames] == [f"{VASPRUN}:0", f"{VASPRUN}:1"]
    assert [f.energy for f in frames] == pytest.approx(VASP_E0, abs=1e-12)
    np.testing.assert_allclose(frames[0].forces, VASP_FORCES)
    np.testing.assert_allclose(frames[1].forces, VASP_FORCES / 2)
    np.testing.assert_allclose(frames[0].stress, ASE_STRESS_0, rtol=1e-6)
    np.testing.assert_allclose(frames[1].stress, ASE_STRESS_0 / 2, rtol=1e-6)
    # Documented convention: VASP +10 kBar xx (compressive) -> ASE -1 GPa = -0.0062415 eV/Å^3.
    assert frames[0].stress[0] == pytest.approx(-0.0062415, abs=1e-7)
    assert all(f.magmoms is None and f.fidelity == "pbe_u" for f in frames)
    np.testing.assert_allclose(frames[1].atoms.get_scaled_positions()[2], [0.26, 0.25, 0.75])
    np.testing.assert_allclose(frames[1].atoms.cell[0], [4.01, 0.02, 0.0])


def test_outcar_every_ionic_step_matches_vasprun():
    frames = read_outcar(OUTCAR, "pbe_u")
    assert [f.source for f in frames] == [f"{OUTCAR}:0", f"{OUTCAR}:1"]
    assert [f.energy for f in frames] == pytest.approx(VASP_E0, abs=1e-12)
    np.testing.assert_allclose(frames[0].stress, ASE_STRESS_0, rtol=1e-6)
    np.testing.assert_allclose(frames[0].magmoms, [0.01, 3.80, 0.05])
    np.testing.assert_allclose(frames[1].magmoms, [0.02, 3.75, 0.04])
    for a, b in zip(frames, read_vasprun(VASPRUN, "pbe_u")):
        np.testing.assert_allclose(a.forces, b.forces)
        np.testing.assert_allclose(a.stress, b.stress, rtol=1e-6)
        np.testing.assert_allclose(a.atoms.positions, b.atoms.positions, atol=1e-5)
        np.testing.assert_allclose(a.atoms.cell[:], b.atoms.cell[:])


def test_outcar_of_killed_run_keeps_completed_steps_only(tmp_path):
    text = OUTCAR.read_text()
    cut = text.index("POSITION", text.index("Iteration    2"))  # inside ionic step 2
    frames = read_outcar(_write(tmp_path / "OUTCAR", text[:cut]), "pbe")
    assert len(frames) == 1 and frames[0].energy == pytest.approx(VASP_E0[0])


# --- dispatch and corrupt input ------------------------------------------------------------------

@pytest.mark.parametrize("name, source, opener", [
    ("frames.xyz", XYZ, open), ("frames.xyz.gz", XYZ, gzip.open), ("frames.extxyz.bz2", XYZ, bz2.open),
    ("vasprun.xml", VASPRUN, open), ("vasprun_relax.xml.gz", VASPRUN, gzip.open),
    ("OUTCAR", OUTCAR, open), ("OUTCAR.relax", OUTCAR, open),
])
def test_read_frames_dispatch_by_name(tmp_path, name, source, opener):
    with open(source, "rb") as src, opener(tmp_path / name, "wb") as dst:
        shutil.copyfileobj(src, dst)
    frames = read_frames(tmp_path / name, fidelity="pbe_u")
    assert len(frames) == (3 if source == XYZ else 2)
    assert frames[0].source == f"{tmp_path / name}:0"
    assert frames[0].energy == pytest.approx(-20.45)


def test_read_frames_unknown_type_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"notes\.txt: unknown data file type"):
        read_frames(_write(tmp_path / "notes.txt", "hello"))
    with pytest.raises(FileNotFoundError, match="nothere.xyz"):
        read_frames(tmp_path / "nothere.xyz")
    with pytest.raises(FileNotFoundError, match="nothere.db"):
        read_ase_db(tmp_path / "nothere.db", fidelity="pbe")  # ase.db.connect would create it


@pytest.mark.parametrize("name, make", [
    ("cut.extxyz", lambda: XYZ.read_text()[: int(len(XYZ.read_text()) * 0.8)]),
    ("vasprun.xml", lambda: "<modeling><garbage>\x00 not xml"),
    ("vasprun_cut.xml", lambda: VASPRUN.read_text()[: int(len(VASPRUN.read_text()) * 0.8)]),
    ("vasprun_other.xml", lambda: "<?xml version='1.0'?><root/>"),
    ("OUTCAR", lambda: "this is not an OUTCAR\n" * 5),
    ("broken.db", lambda: "SQLite format 3\x00" + "garbage " * 100),
    ("empty.xyz", lambda: ""),
])
def test_corrupt_file_is_data_error_naming_file(tmp_path, name, make):
    path = _write(tmp_path / name, make())
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_frames(path, fidelity="pbe")

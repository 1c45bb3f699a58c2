"""The DFT labelling pipeline (mf_calc.label), with cheap calculators standing in for DFT: Lennard-Jones
(label_helpers.FlakyLJ, which can fail or crash on demand) and an MF-CHGNet calculator for magmoms."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pytest
from ase.calculators.lj import LennardJones

from mf_calc import lmfp
from mf_calc.cli import main
from mf_calc.data import read_frames
from mf_calc.label import LabelOptions, LabelSpec, finite_difference_check, initial_magmoms, label_frames, shipped_specs
from mf_calc.label.store import LabelStore

LJ = {"sigma": 1.5, "epsilon": 0.01, "rc": 4.0}

QUIET = LabelOptions(progress=False)


def lj_spec(**overrides) -> LabelSpec:
    data = {"calculator": "label_helpers:FlakyLJ", "settings": dict(LJ), "magnetic_start": "none"} | overrides
    return LabelSpec.from_dict(data)


def cells(n=3, x_li=1.0):
    """n rattled 28-atom (or fewer, delithiated) olivine cells."""
    frames = []
    for i in range(n):
        atoms = lmfp(x_li=x_li, supercell=(1, 1, 1), seed=i)
        atoms.rattle(0.05, seed=i)
        frames.append(atoms)
    return frames


# ----------------------------------------------------------------------------- magnetic starts
def test_afm_olivine_start_is_the_olivine_antiferromagnet_and_repeats_along_b():
    cell = lmfp(y_mn=0.5, supercell=(1, 1, 1), seed=0)
    moments = initial_magmoms(cell, "afm-olivine")
    tm = np.isin(cell.numbers, (25, 26))
    y = cell.get_scaled_positions()[:, 1]
    assert np.all(moments[~tm] == 0)
    expected = np.where(y[tm] < 0.5, 1, -1) * np.where(cell.numbers[tm] == 25, 5.0, 4.0)
    assert np.array_equal(moments[tm], expected)
    assert initial_magmoms(lmfp(supercell=(1, 1, 1)), "afm-olivine").sum() == 0  # LiFePO4: 2 up, 2 down
    # a cell repeated along b carries the same order in each olivine cell (not up-up then down-down)
    assert np.array_equal(initial_magmoms(cell.repeat((1, 2, 1)), "afm-olivine"), np.tile(moments, 2))
    assert np.array_equal(initial_magmoms(cell, "ferro"), np.abs(moments))
    assert initial_magmoms(cell, "none") is None


def test_magnetic_start_errors_name_the_problem():
    cell = lmfp(supercell=(1, 1, 1))
    with pytest.raises(ValueError, match="non-zero initial_magmoms"):
        initial_magmoms(cell, "input")
    with pytest.raises(ValueError, match="unknown magnetic start 'afm'"):
        initial_magmoms(cell, "afm")
    li_po4 = cell[[a.index for a in cell if a.symbol != "Fe"]]
    with pytest.raises(ValueError, match="no magnetic element"):
        initial_magmoms(li_po4, "ferro")
    cell.set_initial_magnetic_moments(np.arange(len(cell), dtype=float))
    assert np.array_equal(initial_magmoms(cell, "input"), np.arange(len(cell)))


# ----------------------------------------------------------------------------- specs
def test_shipped_specs_load_and_keep_the_issue_settings():
    assert {"gpaw_afm", "gpaw_nonmag", "vasp_afm"} <= set(shipped_specs())
    afm, nonmag = LabelSpec.load("gpaw_afm"), LabelSpec.load("gpaw_nonmag")
    assert afm.spin_polarized and afm.magnetic_start == "afm-olivine" and not nonmag.spin_polarized
    assert afm.settings["mode"]["ecut"] == 600 and afm.settings["kpts"]["size"] == [1, 2, 2]
    assert nonmag.settings["mode"]["ecut"] == 350 and nonmag.settings["kpts"]["size"] == [1, 1, 2]
    for spec in (afm, nonmag):
        assert spec.settings["setups"] == {"Fe": ":d,4.3", "Mn": ":d,4.5"}
        assert spec.settings["occupations"] == {"name": "fermi-dirac", "width": 0.1}
        assert spec.settings["xc"] == "PBE" and spec.settings["maxiter"] == 200
    assert not afm.stress and not nonmag.stress  # masked: > 1 GPa off the converged stress (data card)
    assert afm.u_ramp == [0.0, 1.0] and nonmag.u_ramp is None  # one PBE+U solution whatever the start (data card)
    assert afm.u_ramp_convergence == {"density": 1e-3, "eigenstates": 1e-5}  # the U = 0 step only picks the solution
    assert afm.calculator_settings()["mixer"]["name"] == "pulay"  # the retry (here its mixer) only when retrying,
    assert afm.calculator_settings(retry=True) == afm.settings | {"mixer": {"name": "msr1"}}  # for build and ramp alike
    assert afm.hash != nonmag.hash
    assert LabelSpec.load("gpaw_afm").hash == afm.hash
    # the hashes of the committed labels (benchmarks/data/dft/raw/*/run.json): fields added to LabelSpec later
    # must not change the hash of a spec that does not use them
    assert (afm.hash, nonmag.hash) == ("c02d130c42b64377", "ab4c7a418b3557f4")


def test_u_ramp_spec_is_checked_and_changes_the_hash():
    direct = LabelSpec.from_dict({k: v for k, v in LabelSpec.load("gpaw_afm").to_dict().items()
                                  if not k.startswith("u_ramp")})
    ramped = LabelSpec.from_dict(direct.to_dict() | {"u_ramp": [0, 0.5, 1]})
    assert ramped.u_ramp == [0.0, 0.5, 1.0] and ramped.hash != direct.hash and "u_ramp" not in direct.to_dict()
    for bad in ([1], [0, 0.5], [0.5, 0, 1], [-0.5, 1], "0,1", 1):
        with pytest.raises(ValueError, match="u_ramp"):
            LabelSpec.from_dict({"calculator": "gpaw", "u_ramp": bad})
    with pytest.raises(ValueError, match="'u_ramp' needs GPAW"):
        lj_spec(u_ramp=[0, 1]).build()
    loose = LabelSpec.from_dict(ramped.to_dict() | {"u_ramp_convergence": {"density": 1e-3}})
    assert loose.hash != ramped.hash and "u_ramp_convergence" not in ramped.to_dict()
    with pytest.raises(ValueError, match="'u_ramp_convergence' needs a 'u_ramp'"):
        LabelSpec.from_dict(direct.to_dict() | {"u_ramp_convergence": {"density": 1e-3}})
    with pytest.raises(ValueError, match="'u_ramp_convergence' must be a JSON object"):
        LabelSpec.from_dict(ramped.to_dict() | {"u_ramp_convergence": 1e-3})


def test_spec_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown spec field"):
        LabelSpec.from_dict({"calculator": "gpaw", "setings": {}})
    with pytest.raises(ValueError, match="no 'calculator'"):
        LabelSpec.from_dict({"settings": {}})
    with pytest.raises(ValueError, match="magnetic_start"):
        LabelSpec.from_dict({"calculator": "gpaw", "magnetic_start": "antiferro"})
    with pytest.raises(FileNotFoundError, match="neither a file nor a shipped spec"):
        LabelSpec.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        LabelSpec.load(bad)
    with pytest.raises(ImportError, match="no_such_dft_code"):
        LabelSpec.from_dict({"calculator": "no_such_dft_code:Calc"}).build()
    with pytest.raises(ValueError, match="rejects the spec settings"):
        LabelSpec.from_dict({"calculator": "ase.calculators.singlepoint:SinglePointCalculator"}).build()


# ----------------------------------------------------------------------------- the pipeline
def test_labels_are_the_calculators_results_and_read_back_as_frames(tmp_path):
    frames = cells(3)
    summary = label_frames(frames, "lj", lj_spec(), tmp_path, QUIET)
    assert (summary["n_input"], summary["n_ok"], summary["n_failed"], summary["n_pending"]) == (3, 3, 0, 0)
    read = read_frames(tmp_path / "labelled.extxyz")
    assert [f.fidelity for f in read] == ["lj"] * 3
    for frame, atoms in zip(read, frames):
        ref = atoms.copy()
        ref.calc = LennardJones(**LJ)
        assert np.allclose(frame.atoms.positions, atoms.positions)
        assert frame.energy == pytest.approx(ref.get_potential_energy(force_consistent=True), abs=1e-10)
        assert np.allclose(frame.forces, ref.get_forces(), atol=1e-7)  # extxyz keeps 8 decimals
        assert np.allclose(frame.stress, ref.get_stress(), atol=1e-12)
        assert frame.magmoms is None  # non-spin-polarised: no magmom label
        assert frame.atoms.info["spec_hash"] == lj_spec().hash
        assert frame.atoms.info["seconds"] >= 0 and "energy_extrapolated" in frame.atoms.info
    record = LabelStore(tmp_path).read(1)
    assert record["status"] == "ok" and record["versions"]["calculator"].startswith("label_helpers")


def test_rerun_skips_finished_frames_and_refuses_other_settings_or_inputs(tmp_path):
    frames = cells(3)
    label_frames(frames[:2], "lj", lj_spec(), tmp_path, QUIET)
    first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "records").glob("*.json")}
    summary = label_frames(frames, "lj", lj_spec(), tmp_path, QUIET)
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "records").glob("*.json")}
    assert summary["n_ok"] == 3 and all(after[name] == t for name, t in first.items()) and len(after) == 3
    with pytest.raises(ValueError, match="another|Use another --out"):
        label_frames(frames, "lj", lj_spec(settings=LJ | {"epsilon": 0.02}), tmp_path, QUIET)
    with pytest.raises(ValueError, match="fidelity 'lj'"):
        label_frames(frames, "lj2", lj_spec(), tmp_path, QUIET)
    changed = [f.copy() for f in frames]
    changed[0].positions[0] += 0.1
    with pytest.raises(ValueError, match="input frames changed"):
        label_frames(changed, "lj", lj_spec(), tmp_path, QUIET)


def test_no_frame_starts_after_the_deadline(tmp_path):
    """A sitting with a time limit stops between frames: past the deadline nothing new starts, the rest stays
    pending and a later call labels it."""
    import time

    frames = cells(3)
    summary = label_frames(frames, "lj", lj_spec(), tmp_path, LabelOptions(progress=False, deadline=time.time() - 1))
    assert summary["n_ok"] == 0 and not list((tmp_path / "records").glob("*.json"))
    assert label_frames(frames, "lj", lj_spec(), tmp_path, LabelOptions(progress=False,
                                                                        deadline=time.time() + 600))["n_ok"] == 3


def test_only_some_frames_keep_their_own_indices(tmp_path):
    """only=[1]: frame 1 is labelled under its own index (a later full call adds frames 0 and 2 and keeps it);
    an index outside the frames is refused."""
    frames = cells(3)
    summary = label_frames(frames, "lj", lj_spec(), tmp_path, QUIET, only=[1])
    assert (summary["n_ok"], summary["n_pending"]) == (1, 2)
    store = LabelStore(tmp_path)
    assert store.read(0) is None and store.read(1)["status"] == "ok"
    first = store.read(1)["labels"]["energy"]
    assert label_frames(frames, "lj", lj_spec(), tmp_path, QUIET)["n_ok"] == 3
    assert store.read(1)["labels"]["energy"] == first and store.read(0)["labels"]["energy"] != first
    with pytest.raises(ValueError, match=r"indices \[3\] are not among the 3 frames"):
        label_frames(frames, "lj", lj_spec(), tmp_path, QUIET, only=[3])


def test_failed_frames_are_retried_once_then_recorded_never_hidden(tmp_path):
    frames = [lmfp(x_li=x, supercell=(1, 1, 1), seed=0) for x in (1.0, 0.75, 0.5)]  # 28, 27, 26 atoms
    spec = lj_spec(settings=LJ | {"fail_sizes": [26, 27]}, retry={"fail_sizes": [26]})
    summary = label_frames(frames, "lj", spec, tmp_path, QUIET)
    assert (summary["n_ok"], summary["n_failed"], summary["n_ok_after_retry"]) == (2, 1, 1)
    (failure,) = summary["failures"]
    assert failure["index"] == 2 and len(failure["errors"]) == 2
    assert all("SCF did not converge" in e for e in failure["errors"])
    assert len(read_frames(tmp_path / "labelled.extxyz")) == 2
    store = LabelStore(tmp_path)
    assert [a["retry"] for a in store.read(1)["attempts"]] == [False, True]
    # a rerun does not try the failed frame again unless asked
    assert label_frames(frames, "lj", spec, tmp_path, QUIET)["n_failed"] == 1
    summary = label_frames(frames, "lj", spec, tmp_path, LabelOptions(retry_failed=True, progress=False))
    assert summary["n_failed"] == 1 and len(store.read(2)["attempts"]) == 2


def test_consecutive_frames_of_a_group_share_a_calculator_until_one_fails(tmp_path):
    frames = cells(4)
    for atoms, trajectory in zip(frames, ("a", "a", "a", "b")):
        atoms.info["trajectory"] = trajectory
    label_frames(frames, "lj", lj_spec(), tmp_path, LabelOptions(group_key="trajectory", progress=False))
    restarted = [r["restarted_from_previous"] for r in LabelStore(tmp_path).all_records()]
    assert restarted == [False, True, True, False]


def test_a_frame_of_another_supercell_gets_a_fresh_calculator_and_records_its_supercell(tmp_path):
    frames = cells(3)
    for atoms in frames:
        atoms.info["trajectory"] = "a"
    frames[1].info["supercell"] = [1, 2, 1]
    frames[2].info["supercell"] = np.array([1, 2, 1])  # as extxyz reads it back
    label_frames(frames, "lj", lj_spec(), tmp_path, LabelOptions(group_key="trajectory", progress=False))
    records = LabelStore(tmp_path).all_records()
    assert [r["restarted_from_previous"] for r in records] == [False, False, True]
    assert [r["supercell"] for r in records] == [[1, 1, 1], [1, 2, 1], [1, 2, 1]]  # lmfp says (1, 1, 1)
    assert [list(f.atoms.info["supercell"]) for f in read_frames(tmp_path / "labelled.extxyz")][1:] == [[1, 2, 1]] * 2
    frames[0].info["supercell"] = [1, 0, 2]
    with pytest.raises(ValueError, match="three positive integers"):
        label_frames(frames[:1], "lj", lj_spec(), tmp_path / "bad", QUIET)


@pytest.mark.parametrize("grid", [{"size": [1, 2, 2]}, {"size": [2, 4, 3], "gamma": True}, {"size": [3, 2, 4]}])
def test_folded_kpoints_of_a_supercell_sample_exactly_the_cells_grid(grid):
    from mf_calc.label.kpoints import _grid, _wrap, folded_kpoints, sampled_cell_kpoints

    cell_grid = np.unique(_wrap(_grid(grid)), axis=0)
    for repeat in ((1, 1, 1), (1, 2, 1), (1, 1, 2), (1, 2, 2)):
        divides = all(n % m == 0 for n, m in zip(grid["size"], repeat))
        points = folded_kpoints(grid, repeat)
        sampled = sampled_cell_kpoints(points, repeat)
        assert len(points) * np.prod(repeat) == len(sampled)  # no point sampled twice
        if divides:
            assert len(points) == len(cell_grid) // np.prod(repeat)
            np.testing.assert_allclose(sampled, cell_grid, atol=1e-9)
        else:  # a superset: denser along the axis the repeat does not divide, never sparser
            distance = np.abs((cell_grid[:, None] - sampled[None] + 0.5) % 1.0 - 0.5).max(axis=-1)
            assert distance.min(axis=1).max() < 1e-9
    with pytest.raises(ValueError, match="Monkhorst-Pack"):
        folded_kpoints({"density": 2.0}, (1, 2, 1))


def test_workers_give_the_same_labels_and_a_crashed_worker_is_recorded(tmp_path):
    frames = cells(4)
    one = label_frames(frames, "lj", lj_spec(), tmp_path / "one", QUIET)
    two = label_frames(frames, "lj", lj_spec(), tmp_path / "two", LabelOptions(workers=2, progress=False))
    assert one["n_ok"] == two["n_ok"] == 4
    for a, b in zip(read_frames(tmp_path / "one/labelled.extxyz"), read_frames(tmp_path / "two/labelled.extxyz")):
        assert a.energy == b.energy and np.array_equal(a.forces, b.forces)
    crashing = cells(2) + [lmfp(x_li=0.5, supercell=(1, 1, 1))]
    spec = lj_spec(settings=LJ | {"crash_sizes": [26]})
    with pytest.raises(RuntimeError, match=r"worker process died while labelling frame\(s\) \[(\d, )*2\]"):
        label_frames(crashing, "lj", spec, tmp_path / "crash", LabelOptions(workers=2, progress=False))
    store = LabelStore(tmp_path / "crash")
    record = store.read(2)
    assert record["status"] == "failed" and "worker process died" in record["attempts"][0]["error"]
    for other in store.all_records():  # a frame the other worker had in progress is recorded the same way
        assert other["status"] == "ok" or "worker process died" in other["attempts"][0]["error"]


def test_spin_polarised_specs_label_magmoms_and_others_do_not(tmp_path, warm_model):
    frames = cells(1, x_li=0.5)
    model_calc = {"calculator": "mf_calc.calculator:MFCalculator", "settings": {"model": "chgnet-0.3.0"}}
    label_frames(frames, "m", LabelSpec.from_dict(model_calc | {"magnetic_start": "afm-olivine"}), tmp_path / "afm",
                 QUIET)
    label_frames(frames, "n", LabelSpec.from_dict(model_calc | {"stress": False}), tmp_path / "nm",
                 QUIET)
    (afm,), (nm,) = read_frames(tmp_path / "afm/labelled.extxyz"), read_frames(tmp_path / "nm/labelled.extxyz")
    assert afm.magmoms is not None and afm.magmoms[frames[0].numbers == 26].min() > 3.0
    assert nm.magmoms is None and nm.stress is None and afm.stress is not None  # masked, never zero
    assert afm.energy == pytest.approx(nm.energy)


def test_finite_difference_check_passes_for_a_conservative_calculator():
    result = finite_difference_check(cells(1)[0], lj_spec(), atom_indices=(0, 5), eps_displacement=1e-4,
                                     eps_strain=1e-5)
    assert result["forces_max_abs_diff_eV_A"] < 1e-6 and result["stress_max_abs_diff_GPa"] < 1e-5
    assert np.abs(result["forces_analytic_eV_A"]).max() > 1e-3  # the check compared something non-trivial
    with pytest.raises(ValueError, match="outside"):
        finite_difference_check(cells(1)[0], lj_spec(), atom_indices=(99,))


def test_cli_label_and_check(tmp_path, capsys):
    import ase.io

    ase.io.write(tmp_path / "frames.extxyz", cells(2))
    (tmp_path / "spec.json").write_text(json.dumps(lj_spec().to_dict()))
    args = ["label", str(tmp_path / "frames.extxyz"), "--fidelity", "lj", "--spec", str(tmp_path / "spec.json"),
            "--quiet", "--out", str(tmp_path / "out")]
    passed = (datetime.datetime.now() - datetime.timedelta(hours=1)).strftime("%H:%M")
    assert main(args + ["--until", passed, "--give-up", "40"]) == 0  # an hour ago: no frame starts
    assert "lj: 0 labelled, 0 failed, 2 pending of 2" in capsys.readouterr().out
    assert main(args) == 0
    assert "lj: 2 labelled, 0 failed, 0 pending of 2" in capsys.readouterr().out
    assert len(read_frames(tmp_path / "out/labelled.extxyz")) == 2
    assert main(args + ["--check"]) == 0
    assert json.loads(capsys.readouterr().out)["forces_max_abs_diff_eV_A"] < 1e-3
    assert main(args[:5] + ["no_such_spec", "--out", str(tmp_path / "x")]) == 2
    assert "neither a file nor a shipped spec" in capsys.readouterr().err


def test_real_gpaw_labels_a_tiny_cell(tmp_path):
    """GPAW itself (optional: `make dft`), on a 2-atom bcc Li cell at a low cutoff, spin-polarised."""
    pytest.importorskip("gpaw", reason="GPAW is not installed (optional; `make dft` installs it)")
    from ase.build import bulk

    spec = LabelSpec.from_dict({"calculator": "gpaw", "magnetic_start": "input",
                                "settings": {"mode": {"name": "pw", "ecut": 200}, "xc": "PBE", "kpts": {"size": [2, 2, 2]},
                                             "occupations": {"name": "fermi-dirac", "width": 0.1}, "maxiter": 100}})
    li = bulk("Li", "bcc", a=3.44, cubic=True)
    li.set_initial_magnetic_moments([0.5, 0.5])
    li.rattle(0.05, seed=1)
    summary = label_frames([li], "gpaw_test", spec, tmp_path, QUIET)
    assert summary["n_ok"] == 1, summary
    (frame,) = read_frames(tmp_path / "labelled.extxyz")
    assert np.isfinite(frame.energy) and frame.forces.shape == (2, 3) and frame.magmoms.shape == (2,)
    assert np.abs(frame.forces.sum(axis=0)).max() < 0.05
    assert frame.atoms.info["scf_iterations"] > 0 and frame.atoms.info["code_version"].startswith("gpaw")


def test_real_gpaw_supercell_with_folded_kpoints_has_the_cells_energy_per_atom(tmp_path):
    """GPAW on a rattled 2-atom bcc Li cell and its (1, 1, 2) supercell: with the cell's grid folded, the supercell
    samples the same k-points, so its energy is twice the cell's and its forces the cell's repeated."""
    pytest.importorskip("gpaw", reason="GPAW is not installed (optional; `make dft` installs it)")
    from ase.build import bulk

    spec = LabelSpec.from_dict({"calculator": "gpaw", "magnetic_start": "none",
                                "settings": {"mode": {"name": "pw", "ecut": 200}, "xc": "PBE", "kpts": {"size": [2, 2, 2]},
                                             "occupations": {"name": "fermi-dirac", "width": 0.1}, "maxiter": 100}})
    li = bulk("Li", "bcc", a=3.44, cubic=True)
    li.rattle(0.05, seed=1)
    double = li.repeat((1, 1, 2))
    double.info["supercell"] = [1, 1, 2]
    summary = label_frames([li, double], "gpaw_test", spec, tmp_path, QUIET)
    assert summary["n_ok"] == 2, summary
    cell, supercell = read_frames(tmp_path / "labelled.extxyz")
    assert abs(supercell.energy - 2 * cell.energy) < 2e-4
    np.testing.assert_allclose(supercell.forces, np.tile(cell.forces, (2, 1)), atol=2e-3)


def test_u_ramp_scales_every_hubbard_u_and_needs_one():
    pytest.importorskip("gpaw", reason="GPAW is not installed (optional; `make dft` installs it)")
    from mf_calc.label.u_ramp import hubbard_u, scaled_settings

    settings = {"xc": "PBE", "setups": {"Fe": ":d,4.3", "Mn": "paw:d,4.5;p,1.0,0", "O": "paw"}}
    half = scaled_settings(settings, 0.5)["setups"]
    assert half == {"Fe": ":d,2.15,1", "Mn": ":d,2.25,1;p,0.5,0", "O": "paw"}
    assert settings["setups"]["Fe"] == ":d,4.3"  # the spec's settings are left alone
    assert np.allclose(hubbard_u({"setups": half})["Mn"][1].U, 0.5 * np.array(hubbard_u(settings)["Mn"][1].U))
    with pytest.raises(ValueError, match="needs a Hubbard U"):
        hubbard_u({"setups": {"O": "paw"}})
    with pytest.raises(ValueError, match="per element"):
        hubbard_u({"setups": {0: ":d,4.3"}})


def test_real_gpaw_u_ramp_lands_on_the_direct_dft_u_solution_of_mno(tmp_path):
    """MnO (Mn2+ d5: one DFT+U solution): the ramp U = 0 -> U ends where a direct DFT+U SCF does (so U really is
    changed in the running calculation), every frame of a group starts from scratch, and the record keeps the
    ramp's steps."""
    pytest.importorskip("gpaw", reason="GPAW is not installed (optional; `make dft` installs it)")
    from ase.build import bulk

    settings = {"mode": {"name": "pw", "ecut": 200}, "xc": "PBE", "kpts": {"size": [2, 2, 2]},
                "setups": {"Mn": ":d,4.5"}, "occupations": {"name": "fermi-dirac", "width": 0.1}, "maxiter": 100,
                "convergence": {"forces": 0.002}}
    frames = []
    for seed in (1, 2):
        mno = bulk("MnO", "rocksalt", a=4.45)
        mno.set_initial_magnetic_moments([5, 0])
        mno.rattle(0.05, seed=seed)
        mno.info["trajectory"] = "t"
        frames.append(mno)
    direct = LabelSpec.from_dict({"calculator": "gpaw", "magnetic_start": "input", "settings": settings})
    ramped = LabelSpec.from_dict(direct.to_dict() | {"u_ramp": [0, 1]})
    assert label_frames(frames, "mno", direct, tmp_path / "direct", QUIET, only=[1])["n_ok"] == 1
    assert label_frames(frames, "mno", ramped, tmp_path / "ramped", LabelOptions(group_key="trajectory",
                                                                                 progress=False))["n_ok"] == 2
    (a,), b = read_frames(tmp_path / "direct/labelled.extxyz"), read_frames(tmp_path / "ramped/labelled.extxyz")[1]
    assert b.energy == pytest.approx(a.energy, abs=2e-4)
    assert np.abs(b.forces - a.forces).max() < 5e-3 and np.abs(b.magmoms - a.magmoms).max() < 5e-3
    records = LabelStore(tmp_path / "ramped").all_records()
    assert [r["restarted_from_previous"] for r in records] == [False, False]
    steps = records[1]["attempts"][0]["u_ramp"]
    assert [s["fraction"] for s in steps] == [0.0, 1.0] and steps[-1]["energy"] == records[1]["labels"]["energy"]
    assert steps[0]["energy"] < steps[1]["energy"] - 0.1  # U = 0 really was a different functional
    assert steps[1]["scf_iterations"] < 30  # from the U = 0 state (with the old mixer history it stalled for 99)
    assert records[1]["scf_iterations"] == sum(s["scf_iterations"] for s in steps)
    # the finite-difference check of a ramped spec checks the full-U solution, also where the cell changes: the
    # stress differences are those of a direct DFT+U start (1.3 GPa of ~230 at this low cutoff); a calculator that
    # fell back to U = 0 on a cell change (GPAW rebuilds its setups then) gave 5.7 GPa
    check = finite_difference_check(frames[1], ramped, atom_indices=(0,), stress=True)
    assert np.allclose(check["forces_analytic_eV_A"], b.forces[:1], atol=5e-3)
    assert check["forces_max_abs_diff_eV_A"] < 0.01 and check["stress_max_abs_diff_GPa"] < 2.0
    # a loose U = 0 step (it only chooses the solution) takes fewer iterations; the full-U step converges to the
    # spec's own criteria again, so the labels are those of the strict ramp
    loose = LabelSpec.from_dict(ramped.to_dict() | {"u_ramp_convergence": {"density": 1e-2, "eigenstates": 1e-4}})
    assert label_frames(frames, "mno", loose, tmp_path / "loose", QUIET, only=[1])["n_ok"] == 1
    (c,), (record,) = read_frames(tmp_path / "loose/labelled.extxyz"), LabelStore(tmp_path / "loose").all_records()
    assert c.energy == pytest.approx(b.energy, abs=2e-4) and np.abs(c.forces - b.forces).max() < 5e-3
    loose_steps = record["attempts"][0]["u_ramp"]
    assert loose_steps[0]["scf_iterations"] < steps[0]["scf_iterations"]
    log = (tmp_path / "loose/logs/00001.txt").read_text()
    assert log.count("[forces] across last 2 cycles: 0.002") == 1  # the full-U step only


def test_runs_sharing_a_folder_skip_frames_another_live_process_claimed(tmp_path):
    import subprocess

    frames = cells(3)
    label_frames(frames[:1], "lj", lj_spec(), tmp_path, QUIET)
    other = subprocess.Popen(["sleep", "60"])  # stands in for a second labelling process
    try:
        (tmp_path / "records" / "00001.running").write_text(str(other.pid))
        summary = label_frames(frames, "lj", lj_spec(), tmp_path, QUIET)
        assert (summary["n_ok"], summary["n_pending"]) == (2, 1)
    finally:
        other.kill()
        other.wait()
    summary = label_frames(frames, "lj", lj_spec(), tmp_path,
                           QUIET)  # the claim of an ended process lapses
    assert (summary["n_ok"], summary["n_pending"]) == (3, 0)
    assert not list((tmp_path / "records").glob("*.running"))


def test_spec_relaxation_resumes_on_the_uninterrupted_path(tmp_path):
    """mf_calc.label.relax: BFGS at fixed cell with a spec's calculator; a run killed after 5 steps (trajectory,
    Hessian and progress on disk, no result) continues to the same relaxed structure in the same step count."""
    from ase.build import bulk

    from mf_calc.label.relax import RESULT, DFTRelaxSettings, relax_with_spec

    spec = LabelSpec.from_dict({"calculator": "ase.calculators.lj:LennardJones", "magnetic_start": "none",
                                "settings": {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.0}})
    atoms = bulk("Ar", "fcc", a=5.3) * (2, 2, 2)
    atoms.rattle(0.1, seed=1)
    cell = atoms.cell.array.copy()
    full = relax_with_spec(atoms, spec, tmp_path / "full", DFTRelaxSettings(fmax=0.005, steps=200))
    assert full["converged"] and full["fmax_eV_A"] < 0.005 and full["steps"] > 6
    relax_with_spec(atoms, spec, tmp_path / "killed", DFTRelaxSettings(fmax=0.005, steps=5))
    (tmp_path / "killed" / RESULT).unlink()  # as if killed during step 6
    resumed = relax_with_spec(atoms, spec, tmp_path / "killed", DFTRelaxSettings(fmax=0.005, steps=200))
    assert resumed["steps"] == full["steps"]
    np.testing.assert_allclose(resumed["positions"], full["positions"], atol=1e-8)
    assert resumed["energy"] == pytest.approx(full["energy"], abs=1e-10)
    assert relax_with_spec(atoms, spec, tmp_path / "killed") == resumed  # finished: read back
    np.testing.assert_allclose(atoms.cell.array, cell)


def test_a_spec_relaxation_whose_first_scf_fails_goes_on_with_the_retry_settings(tmp_path):
    from ase.build import bulk

    from mf_calc.label.relax import PROGRESS, RESULT, DFTRelaxSettings, relax_with_spec

    atoms = bulk("Ar", "fcc", a=5.3) * (2, 2, 2)
    atoms.rattle(0.1, seed=1)
    ar = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.0}
    flaky = lj_spec(settings=ar | {"fail_sizes": [len(atoms)]}, retry={"fail_sizes": []})
    result = relax_with_spec(atoms, flaky, tmp_path / "flaky", DFTRelaxSettings(fmax=0.005, steps=200))
    steady = relax_with_spec(atoms, lj_spec(settings=ar), tmp_path / "steady", DFTRelaxSettings(fmax=0.005, steps=200))
    assert result["converged"] and result["retry"] and not steady["retry"]
    np.testing.assert_allclose(result["positions"], steady["positions"], atol=1e-8)
    # killed after some steps: the rerun resumes with the retry settings at once (the first try would fail again)
    relax_with_spec(atoms, flaky, tmp_path / "killed", DFTRelaxSettings(fmax=0.005, steps=3))
    (tmp_path / "killed" / RESULT).unlink()
    assert json.loads((tmp_path / "killed" / PROGRESS).read_text())["retry"]
    resumed = relax_with_spec(atoms, flaky, tmp_path / "killed", DFTRelaxSettings(fmax=0.005, steps=200))
    assert resumed["steps"] == result["steps"] and resumed["retry"]
    # asked to (the settings a label converged with), it starts with the retry settings
    other = lj_spec(settings=ar, retry={"epsilon": 0.0208})
    direct = relax_with_spec(atoms, other, tmp_path / "direct", DFTRelaxSettings(fmax=0.005, steps=200, retry=True))
    assert direct["retry"] and direct["energy"] == pytest.approx(2 * steady["energy"], rel=1e-3)
    with pytest.raises(RuntimeError, match="SCF did not converge"):  # no retry settings: the failure is raised
        relax_with_spec(atoms, lj_spec(settings=ar | {"fail_sizes": [len(atoms)]}), tmp_path / "hopeless")


def test_a_spec_relaxation_another_live_process_runs_is_left_to_it(tmp_path):
    import subprocess

    from ase.build import bulk

    from mf_calc.label.relax import RESULT, RUNNING, DFTRelaxSettings, relax_with_spec

    spec = LabelSpec.from_dict({"calculator": "ase.calculators.lj:LennardJones", "magnetic_start": "none",
                                "settings": {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.0}})
    atoms = bulk("Ar", "fcc", a=5.3) * (2, 2, 2)
    atoms.rattle(0.1, seed=1)
    folder = tmp_path / "shared"
    folder.mkdir()
    other = subprocess.Popen(["sleep", "60"])  # stands in for a relaxation on another core
    try:
        (folder / RUNNING).write_text(str(other.pid))
        assert relax_with_spec(atoms, spec, folder, DFTRelaxSettings(fmax=0.005)) is None
        assert not (folder / RESULT).is_file() and not (folder / "relax.traj").is_file()
    finally:
        other.kill()
        other.wait()
    result = relax_with_spec(atoms, spec, folder, DFTRelaxSettings(fmax=0.005))  # an ended process's claim lapses
    assert result["converged"] and not (folder / RUNNING).exists()
    with pytest.raises(ValueError, match="fmax > 0"):
        DFTRelaxSettings(fmax=0.0)


def test_a_stalled_scf_is_given_up_and_a_fresh_scf_starts_counting_again():
    """mf_calc.label.stall: the criterion never blocks convergence, raises once the density error has not halved
    for `window` iterations, and starts over on a new SCF (GPAW's iteration counter back at 1)."""
    from types import SimpleNamespace

    from mf_calc.label.stall import GiveUpStalled, SCFStalled, with_stall

    def context(niter, error):
        return SimpleNamespace(niter=niter, dens=SimpleNamespace(error=error * 10), wfs=SimpleNamespace(nvalence=10))

    stall = GiveUpStalled(3)
    for niter, error in enumerate([1.0, 0.4, 0.1, 0.06, 0.07], start=1):  # halves, then stays above 0.05
        assert stall(context(niter, error)) == (True, "")
    with pytest.raises(SCFStalled, match="not halved in 3 iterations"):
        stall(context(6, 0.055))  # the third iteration since the best (0.1) without reaching 0.05
    stall = GiveUpStalled(3)
    for niter, error in [(1, 1.0), (2, 0.9), (3, 0.8), (1, 5.0), (2, 4.0), (3, 1.0), (4, 0.9)]:  # new SCF at niter 1
        stall(context(niter, error))
    stall = GiveUpStalled(3, floor=3e-4)  # near the criterion the error flickers: no stall there
    for niter, error in enumerate([1e-3, 2e-4, 1.1e-4, 0.95e-4, 1.05e-4, 0.99e-4, 1.02e-4, 0.98e-4], start=1):
        stall(context(niter, error))
    settings = with_stall({"forces": 0.005}, 40)
    assert settings["forces"] == 0.005 and [c.window for c in settings["custom"]] == [40]
    assert settings["custom"][0].floor == pytest.approx(3e-4)  # 3 x GPAW's default density criterion 1e-4
    assert with_stall({"density": 1e-3}, 40)["custom"][0].floor == pytest.approx(3e-3)
    assert with_stall({"forces": 0.005}, None) == {"forces": 0.005}
    spec = LabelSpec.load("gpaw_afm")
    assert spec.calculator_settings(give_up=30)["convergence"]["custom"][0].window == 30
    assert "custom" not in spec.calculator_settings()["convergence"]
    with pytest.raises(ValueError, match="give_up"):
        LabelOptions(give_up=1)


def test_give_up_reaches_every_attempt(tmp_path, monkeypatch):
    """LabelOptions.give_up reaches the calculator of the first attempt and of the retry."""
    built = []
    original = LabelSpec.build

    def build(self, log=None, retry=False, supercell=None, give_up=None):
        built.append((retry, give_up))
        return original(self, log=log, retry=retry, supercell=supercell, give_up=give_up)

    monkeypatch.setattr(LabelSpec, "build", build)
    frames = cells(1)
    spec = lj_spec(settings=LJ | {"fail_sizes": [len(frames[0])]}, retry={"fail_sizes": []})
    summary = label_frames(frames, "lj", spec, tmp_path, LabelOptions(progress=False, give_up=40))
    assert summary["n_ok_after_retry"] == 1 and built == [(False, 40), (True, 40)]
    built.clear()
    label_frames(frames, "lj", lj_spec(), tmp_path / "no_retry", LabelOptions(progress=False, give_up=40))
    assert built == [(False, 40)]  # a spec without a retry: its one attempt is given up too

"""The DFT workflow benchmark's scoring (benchmarks/workflow_bench_report.py) and its charge-ordered start
(benchmarks/make_workflow_bench.py), on synthetic labels: no DFT runs here."""


import json

import make_workflow_bench as bench
import numpy as np
import pytest
import workflow_bench_report as report
from ase import units
from ase.calculators.singlepoint import SinglePointCalculator

from mf_calc import lmfp


def _labelled(atoms, energy, magmoms=None, forces=None, **info):
    atoms = atoms.copy()
    atoms.info.update(info)
    forces = np.zeros((len(atoms), 3)) if forces is None else forces
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, magmoms=magmoms)
    return atoms


def _hull_frames(ef_half_meV):
    """Li_xFePO4 (4 fu) at x = 0, 1/2, 1 with E(x) linear plus ``ef_half_meV`` per fu at x = 1/2."""
    frames = []
    for x in (0.0, 0.5, 1.0):
        atoms = lmfp(x_li=x, supercell=(1, 1, 1), seed=0)
        ox = {0.0: [4.2] * 4, 0.5: [3.6, 4.2, 4.2, 3.6], 1.0: [3.6] * 4}[x]
        magmoms = np.where(atoms.numbers == 26, 1.0, 0.0)
        magmoms[atoms.numbers == 26] = ox
        energy = -100.0 - 8.0 * x + (4 * ef_half_meV / 1e3 if x == 0.5 else 0.0)
        frames.append(_labelled(atoms, energy, magmoms, x_li=x))
    return frames


@pytest.mark.parametrize("ef_half", [+24.0, -108.0])
def test_hull_scores_formation_energies_hull_sets_and_charge_balance(ef_half):
    dft = _hull_frames(+24.0)  # phase separation: x = 1/2 above the tie line
    model = _hull_frames(ef_half)
    preds = [{"energy": m.get_potential_energy(), "magmoms": m.get_magnetic_moments()} for m in model]
    score = report.score_hull(dft, preds)
    assert score["ef_dft_meV_fu"] == pytest.approx([0.0, 24.0, 0.0])
    assert score["ef_model_meV_fu"][1] == pytest.approx(ef_half)
    assert score["ef_mae_meV_fu"] == pytest.approx(abs(ef_half - 24.0) / 3)
    assert score["on_hull_dft"] == [0.0, 1.0]
    assert score["on_hull_model"] == ([0.0, 1.0] if ef_half > 0 else [0.0, 0.5, 1.0])
    assert score["charge_balanced_dft"] == 1.0 and score["charge_balanced_model"] == 1.0


def test_lower_energy_solution_of_the_same_structure_is_the_label():
    frames = _hull_frames(+24.0)
    alternative = _labelled(frames[1], frames[1].get_potential_energy() - 0.05, x_li=0.5)
    higher = _labelled(frames[0], frames[0].get_potential_energy() + 0.05, x_li=0.0)
    moved = frames[2].copy()
    moved.positions[0] += 0.1  # another structure: never replaces
    moved = _labelled(moved, -1e3, x_li=1.0)
    chosen = report.lowest_solutions(frames, [alternative, higher, moved])
    assert [a.info["solution"] for a in chosen] == ["spec", "charge_ordered", "spec"]
    assert chosen[1].get_potential_energy() == pytest.approx(alternative.get_potential_energy())


def test_bulk_modulus_of_a_birch_murnaghan_curve_is_recovered():
    from ase.eos import birchmurnaghan

    base = lmfp(x_li=1.0, supercell=(1, 1, 1))
    v0, b0 = base.get_volume(), 90.0 * units.GPa
    frames, preds = [], []
    for scale in bench.VOLUME_SCALES:
        atoms = base.copy()
        atoms.set_cell(base.cell.array * scale ** (1 / 3), scale_atoms=True)
        v = atoms.get_volume()
        frames.append(_labelled(atoms, birchmurnaghan(v, -200.0, b0, 4.5, v0), material="LiFePO4"))
        preds.append({"energy": birchmurnaghan(v, -190.0, 1.1 * b0, 4.5, v0)})
    score = report.score_ev(frames, preds)["LiFePO4"]
    assert score["dft"]["B_GPa"] == pytest.approx(90.0, rel=1e-3)
    assert score["B_error_percent"] == pytest.approx(10.0, abs=0.2)


def test_md_and_neb_errors():
    atoms = lmfp(x_li=0.5, supercell=(1, 1, 1), seed=1)
    n = len(atoms)
    forces = np.zeros((n, 3))
    frames = [_labelled(atoms, -100.0, forces=forces), _labelled(atoms, -101.0, forces=forces)]
    preds = [{"energy": -100.0 + 0.002 * n, "forces": forces + 0.03}, {"energy": -101.0, "forces": forces - 0.01}]
    md = report.score_md(frames, preds)
    assert md["energy_mae_meV_atom"] == pytest.approx(1.0) and md["forces_mae_meV_A"] == pytest.approx(20.0)
    neb = report.score_neb([_labelled(atoms, -100.0, role="initial"), _labelled(atoms, -99.7, role="climbing_image")],
                           [{"energy": np.float32(-50.0)}, {"energy": np.float32(-49.75)}])
    assert neb["barrier_dft_eV"] == pytest.approx(0.3) and neb["barrier_error_eV"] == pytest.approx(-0.05)
    json.dumps(neb)  # model energies come as float32


def test_charge_ordered_start_puts_one_fe2_next_to_each_li(monkeypatch):
    host = lmfp(x_li=0.5, supercell=(1, 1, 1), seed=2)
    host.info["x_li"] = 0.5
    monkeypatch.setattr(bench, "inputs", lambda part: [host.copy()])
    (atoms,) = bench.build_charge_ordered()
    moments = atoms.get_initial_magnetic_moments()
    fe = np.flatnonzero(atoms.numbers == 26)
    assert sorted(np.abs(moments[fe]).tolist()) == [4.0, 4.0, 5.0, 5.0]
    assert np.abs(moments[fe]).sum() == pytest.approx(18.0) and moments[fe].sum() in (-2.0, 0.0, 2.0)
    for li in np.flatnonzero(atoms.numbers == 3):  # each Li has an Fe2+ start among its two nearest Fe
        nearest = fe[np.argsort(atoms.get_distances(li, fe, mic=True))[:2]]
        assert 4.0 in np.abs(moments[nearest])
    spec = bench.charge_ordered_spec()
    assert spec.magnetic_start == "input" and spec.u_ramp is None


def test_target_checks_say_met_missed_and_unlabelled():
    scores = {"parts": {"md": {"forces_mae_meV_A": 40.0, "energy_mae_meV_atom": 5.0},
                        "hull_fe": {"ef_mae_meV_fu": 8.0, "on_hull_dft": [0.0, 1.0], "on_hull_model": [0.0, 1.0],
                                    "lowest_half_dft_meV_fu": 20.0, "lowest_half_model_meV_fu": -5.0,
                                    "charge_balanced_model": 1.0},
                        "ev": {"LiFePO4": {"B_error_percent": -4.0}, "FePO4": {"B_error_percent": 12.0}}}}
    checks = {name: (value, ok) for name, value, _, ok in report.target_checks(scores)}
    assert checks["MD snapshots: force MAE (meV/Å)"] == (40.0, True)
    assert checks["MD snapshots: energy MAE (meV/atom)"] == (5.0, False)
    assert checks["hull: same on-hull set as DFT (1 = yes)"] == (1.0, True)
    assert checks["lowest x = 1/2 ordering: same sign of E_f as DFT (1 = yes)"] == (0.0, False)
    assert checks["bulk moduli: largest abs. error (%)"] == (12.0, False)
    assert checks["[010] barrier along the path: abs. error (eV)"] == (None, None)
    assert len(checks) == 8


def test_active_learning_summary_counts_earlier_rounds_and_tabulates_every_round(tmp_path):
    """benchmarks/active_learning_report.py: round r's model is charged the DFT of rounds < r; one table row
    per arm and round, unlabelled targets as a dash; a cell shows member 0 and the range over the members scored
    on the same benchmark frames (the seed scatter)."""
    import active_learning_report as summary

    from mf_calc.learn.loop import round_dir

    for r, (frames, hours) in enumerate([(4, 3.5), (3, 2.0)]):
        round_dir(tmp_path, r).mkdir(parents=True)
        (round_dir(tmp_path, r) / "evaluation.json").write_text(json.dumps({"labelled": frames,
                                                                            "dft_core_hours": hours}))
    assert summary.spent_before(tmp_path, 0) == {"labelled_frames": 0, "dft_core_hours": 0.0}
    assert summary.spent_before(tmp_path, 2) == {"labelled_frames": 7, "dft_core_hours": 5.5}

    def member(md_forces, bench_frames):
        scores = {"parts": {"md": {"forces_mae_meV_A": md_forces, "energy_mae_meV_atom": 4.0},
                            "hull_mnfe": {"ef_mae_meV_fu": 53.0}}}
        return {"test": {"test.extxyz": {"f_mae": 120.04, "e_mae": 9.5}}, "workflow_bench": scores,
                "targets": report.target_checks(scores), "bench_frames": bench_frames}

    members = {"m0": member(80.0, {"md": 13}), "m1": member(90.0, {"md": 13}),
               "m2": member(10.0, {"md": 12})}  # m2 was scored on fewer frames: left out of the range
    result = {"round": 1, "members": members, **summary.spent_before(tmp_path, 1)}
    text = summary.table({"arm_a": [result], "arm_b": [result | {"round": 2, "members": {"m0": members["m0"]}}]})
    rows = [line.split(" | ") for line in text.splitlines()[2:]]
    assert [r[:3] for r in rows] == [["| arm_a", "1", "2"], ["| arm_b", "2", "1"]]
    assert rows[0][3:8] == ["4", "3.5", "120 (120–120)", "9.5 (9.5–9.5)", "80 (80–90)"]
    assert rows[1][7] == "80" and rows[0][-1] == "53 (53–53) |"
    assert rows[0][9] == "–"  # hull_fe not labelled
    assert len(rows[0]) == len(text.splitlines()[0].split(" | "))


def test_relax_scores_compare_the_dft_relaxation_with_the_single_points(tmp_path, monkeypatch):
    """score_relax: energy change per fu, largest displacement, and E_f at x = 1/2 from single points and from
    the relaxed energies of FePO4, LiFePO4 and the ordering; an unfinished relaxation shows its progress."""
    import ase.io

    monkeypatch.setattr(report, "INPUTS", tmp_path / "inputs")
    monkeypatch.setattr(report, "RAW", tmp_path / "raw")
    (tmp_path / "inputs").mkdir()
    frames, relaxed = [], {0.0: -100.0, 0.5: -104.5, 1.0: -108.2}  # eV per 4 fu cell
    for name, x in (("FePO4", 0.0), ("LiFePO4", 1.0), ("Li0.5FePO4", 0.5)):
        atoms = lmfp(x_li=x, supercell=(1, 1, 1), seed=0)
        atoms.info.update(name=name, x_li=x, single_point_energy=relaxed[x] + 0.04 + (0.1 if x == 0.5 else 0.0))
        frames.append(atoms)
        moved = atoms.positions.copy()
        moved[0, 2] += 0.03
        folder = tmp_path / "raw" / "relax" / name
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({"energy": relaxed[x], "positions": moved.tolist(),
                                                        "steps": 7, "converged": True, "seconds": 3600.0,
                                                        "fmax_eV_A": 0.04}))
    ase.io.write(tmp_path / "inputs" / "relax.extxyz", frames)
    scores = report.score_relax()
    assert scores["LiFePO4"]["energy_change_meV_fu"] == pytest.approx(-10.0)
    assert scores["FePO4"]["max_displacement_A"] == pytest.approx(0.03)
    assert scores["ef_half_relaxed_meV_fu"] == pytest.approx(-100.0)  # (-104.5 + 104.1) eV / 4 fu
    assert scores["ef_half_single_point_meV_fu"] == pytest.approx(-75.0)  # the x = 1/2 single point 0.1 eV higher
    (tmp_path / "raw" / "relax" / "FePO4" / "result.json").unlink()
    (tmp_path / "raw" / "relax" / "FePO4" / "progress.json").write_text(json.dumps({"steps": 3, "seconds": 10.0}))
    scores = report.score_relax()
    assert scores["FePO4"] == {"finished": False, "steps": 3, "seconds": 10.0}
    assert "ef_half_relaxed_meV_fu" not in scores


def test_committee_errors_measure_spread_and_member_zero_error():
    """active_learning_report.committee_errors: DP-GEN's max atomic force deviation and the energy spread of the
    committee, member 0's errors against the labels (stub models: known offsets)."""
    import active_learning_report as summary

    frames = [_labelled(lmfp(x_li=1.0, supercell=(1, 1, 1), seed=0), -100.0)]
    n = len(frames[0])

    class Stub:
        def __init__(self, de, df):
            self.de, self.df = de, df

        def predict(self, frames, fidelity, task):
            return [{"energy": -100.0 + self.de, "forces": np.full((n, 3), self.df)} for _ in frames]

    out = summary.committee_errors([Stub(0.0, 0.0), Stub(n * 2e-3, 0.0), Stub(n * 4e-3, 0.3)], frames, "x")
    # per atom: mean force (0.1, 0.1, 0.1); squared distances 0.03, 0.03, 0.12 -> sqrt(mean) = sqrt(0.06)
    assert out["force_deviation_eV_A"][0] == pytest.approx(np.sqrt(0.06))
    assert out["force_error_eV_A"][0] == pytest.approx(0.0) and out["energy_error_meV_atom"][0] == pytest.approx(0.0)
    assert out["energy_spread_meV_atom"][0] == pytest.approx(np.std([0.0, 2.0, 4.0]))


def test_scf_stall_scan_splits_scfs_and_counts_iterations_without_halving(tmp_path):
    """benchmarks/scf_stalls.py on a GPAW-style log: two SCFs (the U ramp's), first iterations without a density
    error skipped, the longest stretch without halving counted."""
    import scf_stalls

    lines = ["|iter:   1| 07:34:05 | -409.895247 | +0.59 |       |  -0.0000|"]
    lines += [f"|iter: {k:3d}| 07:34:05 | -409.8 | -4.0 | {d:+.2f}c|  -0.0000|"
              for k, d in zip(range(2, 6), (-1.0, -1.5, -1.6, -1.65))]
    lines += ["|iter:   1| 07:40:02 | -362.873981 | -1.24 |       |      |  -0.0276|"]
    lines += [f"|iter: {k:3d}| 07:40:02 | -362.87 | -4.0 | {d:+.2f} |      |  -0.0276|"
              for k, d in zip(range(2, 5), (-2.0, -4.1, -4.2))]
    (tmp_path / "00000.txt").write_text("\n".join(["header"] + lines) + "\n")
    assert scf_stalls.scfs(str(tmp_path / "00000.txt")) == [[-1.0, -1.5, -1.6, -1.65], [-2.0, -4.1, -4.2]]
    assert scf_stalls.longest_stall([-1.0, -1.5, -1.6, -1.65]) == 2  # -1.6 and -1.65 do not halve 10**-1.5
    assert scf_stalls.longest_stall([-2.0, -4.1, -4.2]) == 1

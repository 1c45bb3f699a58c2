"""Active learning (mf_calc.learn, ``mf-calc learn``): committee deviation, trust-window and diverse selection, a
random control, and whole rounds with Lennard-Jones standing in for DFT and tiny models for the committee."""

from __future__ import annotations

import json
import shutil

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.geometry import get_distances
from conftest import tiny_model

from mf_calc import lmfp
from mf_calc.cli import main
from mf_calc.learn import LearnSettings, SelectSettings, force_deviation, next_round, pick_random, pick_uncertain
from mf_calc.learn.loop import round_dir, run_round
from mf_calc.learn.select import relaxation_ends

LJ_SPEC = {"calculator": "label_helpers:FlakyLJ", "settings": {"sigma": 1.5, "epsilon": 0.01, "rc": 4.0},
           "magnetic_start": "none"}


def test_force_deviation_is_the_largest_per_atom_spread_of_the_committee():
    base = np.zeros((4, 3))
    shifted = base.copy()
    shifted[2] = [0.3, 0.0, 0.0]  # one model differs on atom 2 by 0.3 eV/Å
    deviation = force_deviation([[base, base], [base, base], [base, shifted]])
    assert deviation[0] == pytest.approx(0.0)
    # mean 0.1, spread sqrt((0.01 + 0.01 + 0.04) / 3)
    assert deviation[1] == pytest.approx(np.sqrt(0.06 / 3))
    with pytest.raises(ValueError, match="at least 2 models"):
        force_deviation([[base]])


def test_uncertain_picks_stay_in_the_window_most_uncertain_first_and_diverse():
    frames = [lmfp(x_li=x, supercell=(1, 1, 1), seed=s) for x, s in
              ((1.0, 0), (1.0, 0), (0.5, 1), (0.5, 2), (0.0, 0), (0.25, 3))]
    deviation = np.array([0.30, 0.29, 0.02, 0.20, 0.90, 0.10])
    settings = SelectSettings(lower=0.05, upper=0.6, cap=3, min_distance=0.01)
    picks = pick_uncertain(frames, deviation, settings)
    # 4 is above the window, 2 below it; 1 is the same structure as 0
    assert picks == [0, 3, 5]
    assert pick_uncertain(frames, deviation, settings, exclude=[frames[3]]) == [0, 5]
    assert pick_uncertain(frames, deviation, SelectSettings(cap=1, min_distance=0.01)) == [0]
    for k, atoms in enumerate(frames):
        atoms.info["source"] = "relax00" if k in (0, 3) else f"md{k:02d}"
    assert pick_uncertain(frames, deviation, settings) == [0, 3, 5]
    assert pick_uncertain(frames, deviation, SelectSettings(0.05, 0.6, 3, 0.01, per_source=1)) == [0, 5]
    with pytest.raises(ValueError, match="trust window"):
        SelectSettings(lower=0.5, upper=0.1)


def test_endpoints_are_the_last_frames_of_relaxations_by_energy_spread():
    from mf_calc.learn.select import energy_spread, pick_endpoints, relaxation_ends

    frames = []
    for source, kind, n, seed in (("md00", "md", 2, 0), ("relax01", "relax", 3, 1), ("relax02", "relax", 2, 2)):
        for step in range(n):
            atoms = lmfp(x_li=0.5, supercell=(1, 1, 1), seed=seed)
            atoms.rattle(0.1 / (step + 1), seed=step)
            atoms.info.update(kind=kind, source=source)
            frames.append(atoms)
    assert relaxation_ends(frames) == [4, 6]
    n_atoms = len(frames[0])
    energies = [[0.0] * 7, [0.0] * 7]
    energies[1][4], energies[1][6], energies[1][0] = 0.002 * n_atoms, 0.004 * n_atoms, 0.1 * n_atoms
    spread = energy_spread(energies, frames)
    assert spread[6] == pytest.approx(2.0) and spread[4] == pytest.approx(1.0)  # meV/atom: std of 0 and 4
    settings = SelectSettings(cap=1, min_distance=1e-6, endpoints=2)
    assert pick_endpoints(frames, spread, settings) == [6, 4]  # the MD frame's larger spread does not count
    assert pick_endpoints(frames, spread, settings, taken=[6]) == [4]
    assert pick_endpoints(frames, spread, settings, exclude=[frames[4]]) == [6]
    assert pick_endpoints(frames, spread, SelectSettings(endpoints=0)) == []


class _RegularSolution(Calculator):
    """E = a n_Li + b n_M + w n_Li (n_M - n_Li) / n_M (eV), no forces or stress: E_f = w x (1 - x) per fu."""

    implemented_properties = ("energy", "forces", "stress")
    a, b, w = -2.0, -40.0, 0.3

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        n_li, n_m = (self.atoms.numbers == 3).sum(), np.isin(self.atoms.numbers, (25, 26)).sum()
        self.results = {"energy": self.a * n_li + self.b * n_m + self.w * n_li * (n_m - n_li) / n_m,
                        "forces": np.zeros((len(self.atoms), 3)), "stress": np.zeros(6)}


def test_end_members_empty_and_fill_the_olivine_li_sites_of_the_same_host():
    from mf_calc.learn.tie_line import end_members

    atoms = lmfp(0.25, 0.5, supercell=(1, 2, 1), seed=3)
    atoms.rattle(0.1, seed=0)
    empty, full = end_members(atoms, (1, 2, 1))
    lithiated = lmfp(1.0, 0.5, supercell=(1, 2, 1), seed=3)  # the same seed draws the same Mn sites
    assert (empty.numbers != 3).all() and len(empty) == len(atoms) - 2
    assert np.allclose(empty.positions, atoms.positions[atoms.numbers != 3])
    assert sorted(full.numbers) == sorted(lithiated.numbers)
    assert (full.numbers[full.numbers != 3] == lithiated.numbers[lithiated.numbers != 3]).all()
    _, d = get_distances(full.positions[full.numbers == 3], lithiated.positions[lithiated.numbers == 3],
                         cell=full.cell, pbc=True)
    assert d.min(1)[:2].max() < 0.5 and d.min(1)[2:].max() < 1e-9  # rattled ones near a site, added ones on one
    assert sorted(d.argmin(1)) == list(range(8))
    with pytest.raises(ValueError, match="supercell has 16"):
        end_members(atoms, (2, 2, 1))
    astray = atoms.copy()
    astray.positions[0] += [0.0, 0.0, 2.3]  # half-way to the next site along c
    with pytest.raises(ValueError, match="not on distinct olivine Li sites"):
        end_members(astray, (1, 2, 1))


def test_above_tie_line_is_the_formation_energy_per_formula_unit():
    from mf_calc.learn.tie_line import tie_line_scores

    frames = [lmfp(x, 0.0, supercell=(1, 1, 2), seed=k) for k, x in enumerate((0.25, 0.5, 0.75, 0.5))]
    for atoms in frames:
        atoms.info["supercell"] = [1, 1, 2]
    scores = tie_line_scores(frames, [0, 1, 2], _RegularSolution())
    w = _RegularSolution.w * 1000
    assert scores[:3] == pytest.approx([w * 3 / 16, w / 4, w * 3 / 16]) and np.isnan(scores[3])
    del frames[3].info["supercell"]
    with pytest.raises(ValueError, match="no info"):
        tie_line_scores(frames, [3], _RegularSolution())


def test_hull_ranking_takes_the_lowest_ordering_of_each_mn_content_in_turn():
    from mf_calc.learn.select import lowest_per_family

    frames = [Atoms("H") for _ in range(6)]
    for atoms, y in zip(frames, (0.5, 0.5, 0.0, 0.0, 0.5, 0.0)):
        atoms.info["y_mn"] = y
    above = np.array([-94.0, -82.0, -18.0, 30.0, np.nan, 55.0])  # meV/fu
    ranking = lowest_per_family(frames, above)
    order = [int(i) for i in np.argsort(-ranking) if np.isfinite(ranking[i])]
    assert order == [0, 2, 1, 3, 5] and np.isnan(ranking[4])  # LMFP's lowest, LFP's lowest, then the second ones


def test_explored_arrangements_never_repeat_a_smaller_cell():
    """A supercell arrangement periodic in one olivine cell is a 28-atom ordering (the benchmark's hull has them
    all): the explorer draws another."""
    from mf_calc.learn.explore import ExploreSettings, _cases, repeats_a_smaller_cell

    ordering = lmfp(0.5, 0.5, supercell=(1, 1, 1), seed=3)
    assert repeats_a_smaller_cell(ordering.repeat((1, 2, 1)), (1, 2, 1))
    assert repeats_a_smaller_cell(ordering.repeat((2, 1, 1)), (2, 1, 1))
    drawn = [repeats_a_smaller_cell(lmfp(0.5, 0.0, supercell=(1, 1, 2), seed=k), (1, 1, 2)) for k in range(60)]
    assert 0 < sum(drawn) < 20  # x = 1/2 in two cells: 6 of the 70 Li arrangements are repeats
    settings = ExploreSettings(cells=((1, 1, 2),), x_li=(0.5,), y_mn=(0.0,))
    cases = _cases(settings, 40, np.random.default_rng(0))
    assert len(cases) == 40
    assert not any(repeats_a_smaller_cell(lmfp(c["x_li"], c["y_mn"], supercell=c["cell"], seed=c["site_seed"]),
                                          c["cell"]) for c in cases)


def test_random_control_is_seeded_and_avoids_given_frames():
    picks = pick_random(20, 5, seed=3, avoid=[0, 1, 2])
    assert picks == pick_random(20, 5, seed=3, avoid=[0, 1, 2]) and len(set(picks)) == 5
    assert not set(picks) & {0, 1, 2} and picks != pick_random(20, 5, seed=4, avoid=[0, 1, 2])


def _run(tmp_path, select="committee", low=False):
    """Settings of a tiny run: a 2-model committee of tiny models on 6 LJ-labelled frames, one short MD and one
    relaxation per round in the 28-atom cell, 2 picks labelled by Lennard-Jones."""
    from ase.calculators.lj import LennardJones

    modules, fidelities = ("EMRC", ("lj_low", "lj")) if low else ("", ("lj",))
    model = tiny_model(modules=modules, fidelities=fidelities).float()
    model.save(tmp_path / "start")
    frames = []
    for i in range(6):
        atoms = lmfp(x_li=0.5, supercell=(1, 1, 1), seed=i)
        atoms.rattle(0.05, seed=i)
        atoms.calc = LennardJones(**LJ_SPEC["settings"])
        atoms.get_forces()
        frames.append(atoms)
    ase.io.write(tmp_path / "base.extxyz", frames)
    (tmp_path / "spec.json").write_text(json.dumps(LJ_SPEC))
    low_spec = LJ_SPEC | {"settings": LJ_SPEC["settings"] | {"epsilon": 0.02}}  # the "cheap DFT": twice the energies
    (tmp_path / "spec_low.json").write_text(json.dumps(low_spec))
    extra = ({"low_fidelity": {"fidelity": "lj_low", "spec": str(tmp_path / "spec_low.json"), "cap": 3}}
             if low else {})
    return LearnSettings(**extra,model=str(tmp_path / "start"), data=(f"{tmp_path / 'base.extxyz'}:lj",), fidelity="lj",
                         spec=str(tmp_path / "spec.json"), committee=2, select=select,
                         train={"epochs": 1, "batch_size": 3, "lr": 1e-3, "modules": modules, "targets": "ef",
                                "fidelities": list(fidelities)},
                         explore={"cells": [[1, 1, 1]], "x_li": [0.5], "y_mn": [0.0, 0.5], "temperatures_K": [600],
                                  "trajectories": 1, "md_steps": 10, "interval": 5, "relaxations": 1},
                         selection={"lower": 0.0, "upper": 100.0, "cap": 2, "min_distance": 1e-6},
                         evaluate=(str(tmp_path / "base.extxyz"),))


@pytest.mark.usefixtures("one_thread")
def test_explored_hops_are_neb_bands_of_one_vacancy_or_nothing(tmp_path):
    from mf_calc.calculator import MFCalculator
    from mf_calc.learn.explore import ExploreSettings, explore

    calc = MFCalculator(tiny_model(modules="", fidelities=("lj",)).float())
    hops = ExploreSettings(cells=((1, 1, 1),), x_li=(0.75,), y_mn=(0.5,), trajectories=0, relaxations=0, hops=1)
    frames = explore(calc, hops, seed=0, folder=tmp_path / "a")
    assert [a.info["kind"] for a in frames] == ["neb"] * 5 and {a.info["source"] for a in frames} == {"neb00"}
    assert all((a.numbers == 3).sum() == 2 for a in frames)  # 3 Li of the 4 sites, one of them the vacancy
    moved = [np.abs(a.positions - frames[0].positions).max() for a in frames]
    assert moved[0] == 0 and all(m > 0.5 for m in moved[2:])  # the mover travels along the band
    alone = ExploreSettings(cells=((1, 1, 1),), x_li=(0.25,), trajectories=0, relaxations=0, hops=1)
    assert explore(calc, alone, seed=0, folder=tmp_path / "b") == []  # one Li: no hop to make


@pytest.mark.usefixtures("one_thread")
def test_rounds_write_every_step_continue_and_feed_the_next_round(tmp_path):
    settings = _run(tmp_path)
    run = tmp_path / "run"
    from mf_calc.learn import open_run

    open_run(run, settings)
    first = run_round(run, settings, 0, deadline=0.0)  # past deadline: no DFT frame starts
    assert first is None and (round_dir(run, 0) / "selected.extxyz").is_file()
    selection = json.loads((round_dir(run, 0) / "selection.json").read_text())
    candidates = ase.io.read(round_dir(run, 0) / "candidates.extxyz", ":")
    assert len(selection["deviation_eV_A"]) == len(candidates) > 2 and len(selection["picks"]) == 2
    assert {a.info["kind"] for a in candidates} == {"md", "relax"}
    assert next_round(run) == 0
    shutil.rmtree(round_dir(run, 0) / "committee" / "m1")  # a new machine with the committed files only
    result = run_round(run, settings, 0)  # continues: labels the picks, evaluates
    assert not (round_dir(run, 0) / "committee" / "m1").exists()  # after the picks only member 0 is needed
    assert result["labelled"] == 2 and result["trained_on_labelled_frames"] == 0
    assert (round_dir(run, 0) / "report.md").read_text().startswith("# Active-learning round 0")
    assert next_round(run) == 1
    # round 1 trains on the base data and round 0's labels, and avoids picking them again
    assert main(["learn", str(run), "--threads", "1"]) == 0
    second = json.loads((round_dir(run, 1) / "evaluation.json").read_text())
    assert second["trained_on_labelled_frames"] == 2 and next_round(run) == 2
    with pytest.raises(ValueError, match="other settings"):
        open_run(run, LearnSettings(**(settings.to_dict() | {"committee": 3})))


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("select", "ranking"), [("committee", "spread"), ("random", "spread"), ("committee", "hull")])
def test_rounds_add_relaxed_end_points_to_the_picks(tmp_path, select, ranking):
    settings = _run(tmp_path, select=select).to_dict()
    settings["selection"] |= {"endpoints": 1, "endpoints_by": ranking}
    settings["explore"] |= {"relaxations": 2}
    settings = LearnSettings(**settings)
    assert run_round(tmp_path / "run", settings, 0, deadline=0.0) is None  # picks made, no DFT started
    selection = json.loads((round_dir(tmp_path / "run", 0) / "selection.json").read_text())
    candidates = ase.io.read(round_dir(tmp_path / "run", 0) / "candidates.extxyz", ":")
    assert len(selection["energy_spread_meV_atom"]) == len(candidates)
    picks = selection["picks"]
    assert len(picks) == 3 and len(set(picks)) == 3
    end = candidates[picks[0]]  # the end point first: labelled first
    assert end.info["kind"] == "relax"
    assert end.info["frame"] == max(a.info["frame"] for a in candidates if a.info["source"] == end.info["source"])
    if ranking == "hull":  # member 0's lowest end point against its end members' tie line
        above = selection["above_tie_line_meV_fu"]
        ends = [i for i, value in enumerate(above) if value is not None]
        assert ends == relaxation_ends(candidates) and len(ends) == 2
        assert picks[0] == min((i for i in ends if i not in picks[1:]), key=lambda i: above[i])
    else:
        assert "above_tie_line_meV_fu" not in selection


@pytest.mark.usefixtures("one_thread")
def test_random_arm_picks_at_random_at_the_same_budget(tmp_path):
    settings = _run(tmp_path, select="random")
    result = run_round(tmp_path / "run", settings, 0)
    selection = json.loads((round_dir(tmp_path / "run", 0) / "selection.json").read_text())
    assert result["labelled"] == 2 and selection["select"] == "random"
    assert selection["picks"] == pick_random(len(selection["deviation_eV_A"]), 2, seed=0)


@pytest.mark.usefixtures("one_thread")
def test_mf_arm_labels_more_frames_at_the_cheap_fidelity_and_trains_on_both(tmp_path):
    from mf_calc.data import read_frames

    settings = _run(tmp_path, low=True)
    run = tmp_path / "run"
    first = run_round(run, settings, 0)
    selection = json.loads((round_dir(run, 0) / "selection.json").read_text())
    assert len(selection["picks"]) == 2 and len(selection["picks_low"]) == 3
    assert selection["picks"] == selection["picks_low"][:2]  # the same ranking, a larger budget
    scarce = read_frames(round_dir(run, 0) / "labels" / "labelled.extxyz")
    cheap = read_frames(round_dir(run, 0) / "labels_low" / "labelled.extxyz")
    assert {f.fidelity for f in scarce} == {"lj"} and {f.fidelity for f in cheap} == {"lj_low"}
    np.testing.assert_allclose([f.energy for f in cheap[:2]], [2 * f.energy for f in scarce])
    assert first["by_fidelity"]["lj_low"]["labelled"] == 3 and first["labelled"] == 2
    assert "lj_low: trained on 0 frames" in (round_dir(run, 0) / "report.md").read_text()
    second = run_round(run, settings, 1)
    assert {k: v["trained_on"] for k, v in second["by_fidelity"].items()} == {"lj": 2, "lj_low": 3}
    with pytest.raises(ValueError, match="another fidelity"):
        LearnSettings(**(settings.to_dict() | {"low_fidelity": {"fidelity": "lj", "spec": "x", "cap": 2}}))


@pytest.mark.usefixtures("one_thread")
def test_sibling_runs_share_candidates_or_picks_and_labels(tmp_path):
    """The random control selects from the committee arm's candidates; an MF arm reuses its picks and labels."""
    from mf_calc.learn.loop import Waiting, labelled_so_far

    committee = _run(tmp_path)
    random = LearnSettings(**(committee.to_dict() | {"select": "random", "candidates_from": "committee"}))
    (tmp_path / "mf").mkdir()
    mf = LearnSettings(**(_run(tmp_path / "mf", low=True).to_dict() | {"picks_from": "committee"}))
    runs = {name: tmp_path / "runs" / name for name in ("committee", "random", "mf")}
    with pytest.raises(Waiting, match="committee"):
        run_round(runs["mf"], mf, 0)
    run_round(runs["committee"], committee, 0)
    records = sorted((round_dir(runs["committee"], 0) / "labels" / "records").glob("*.json"))
    run_round(runs["random"], random, 0)
    mf_result = run_round(runs["mf"], mf, 0)
    for name in ("random", "mf"):  # no exploration of their own: the committee arm's candidates
        assert not any((round_dir(runs[name], 0) / part).exists() for part in ("explore", "candidates.extxyz"))
    shared = [json.loads((round_dir(runs[n], 0) / "selection.json").read_text())["picks"] for n in runs]
    assert shared[2] == shared[0] and len(shared[1]) == 2
    assert (round_dir(runs["mf"], 0) / "selected.extxyz").read_bytes() == \
        (round_dir(runs["committee"], 0) / "selected.extxyz").read_bytes()
    assert sorted((round_dir(runs["committee"], 0) / "labels" / "records").glob("*.json")) == records
    assert not (round_dir(runs["mf"], 0) / "labels").exists() and mf_result["labelled"] == 2
    assert mf_result["by_fidelity"]["lj_low"]["labelled"] == 3 and "picks" in mf_result["shared"]
    assert len(labelled_so_far(runs["mf"], mf, 1)) == 5  # round 1 trains on the shared and its own labels
    with pytest.raises(ValueError, match="shares that run's candidates"):
        LearnSettings(**(mf.to_dict() | {"candidates_from": "random"}))


def test_picks_skip_supercells_whose_labels_would_sample_other_kpoints(tmp_path):
    """gpaw_afm's 1x2x2 grid folds exactly into (1,2,1) and (1,1,2) cells, not into (2,1,1) (one k-point along a)."""
    from mf_calc.label import LabelSpec
    from mf_calc.learn.loop import Target, _picks

    spec = LabelSpec.load("gpaw_afm")
    cells = [(2, 1, 1), (1, 2, 1), (2, 1, 1), (1, 1, 2), (1, 1, 1)]
    frames = [lmfp(x_li=0.5, supercell=c, seed=k) for k, c in enumerate(cells)]
    assert [spec.same_kpoint_convention(a) for a in frames] == [False, True, False, True, True]
    assert LabelSpec.from_dict(LJ_SPEC).same_kpoint_convention(frames[0])  # no k-points: nothing to fold
    target = Target("gpaw_afm", "gpaw_afm", 5, "")
    spreads = {"force": np.array([0.5, 0.2, 0.4, 0.3, 0.1]), "energy": np.ones(5)}
    committee = _run(tmp_path)
    assert _picks(committee, target, 0, frames, spreads, []) == [3, 1, 4]
    random = LearnSettings(**(committee.to_dict() | {"select": "random"}))
    assert sorted(_picks(random, target, 0, frames, spreads, [])) == [1, 3, 4]


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="select must be"):
        LearnSettings(model="m", data=("d",), select="best")
    with pytest.raises(ValueError, match="at least 2 models"):
        LearnSettings(model="m", data=("d",), committee=1)
    with pytest.raises(ValueError, match="unknown learn setting"):
        LearnSettings.from_dict({"model": "m", "data": ["d"], "budget": 3})
    with pytest.raises(ValueError, match="endpoints_by must be one of"):
        LearnSettings(model="m", data=("d",), selection={"endpoints": 1, "endpoints_by": "energy"})


def test_the_committed_run_settings_are_valid():
    """benchmarks/active_learning/*.json load as LearnSettings with a valid training config and existing data."""
    from pathlib import Path

    from mf_calc.train.config import TrainConfig

    root = Path(__file__).resolve().parents[1]
    files = sorted((root / "benchmarks" / "active_learning").glob("*.json"))
    assert len(files) >= 3
    for path in files:
        settings = LearnSettings.from_dict(json.loads(path.read_text()))
        TrainConfig.from_dict(settings.train | {"init": settings.model})
        for item in settings.data + settings.evaluate:
            assert (root / item.rsplit(":", 1)[0]).is_file() or (root / item).is_file(), item

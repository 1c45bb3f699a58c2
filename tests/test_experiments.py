"""benchmarks/experiments.py (the package benchmarks/paper_experiments): the paper's experiments at a micro
scale on synthetic data.

One sweep of all four experiments (1 epoch, tiny model, N ∈ {2, 4}) on frames labelled by a random tiny
MF-CHGNet (not the benchmark teachers) runs once per module; the tests check its outputs, that a rerun
trains nothing, and the pieces (plan sharing, subsets, Δ metrics) on their own.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from paper_experiments import data as exp_data
from paper_experiments import plan as exp_plan
from paper_experiments import report as exp_report
from paper_experiments import runs as exp_runs

from mf_calc.train import TRANSFER_FROZEN

ROOT = Path(__file__).resolve().parents[1]


def _load_cli():
    spec = importlib.util.spec_from_file_location("experiments", ROOT / "benchmarks" / "experiments.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("experiments", module)
    spec.loader.exec_module(module)
    return module


cli = _load_cli()

MICRO_MODEL = dict(atom_fea_dim=8, bond_fea_dim=8, angle_fea_dim=8, num_radial=5, num_angular=5, n_conv=2,
                   atom_conv_hidden_dim=8, bond_conv_hidden_dim=8, mlp_hidden_dims=(8,))
MICRO = exp_plan.Scale(name="micro", model=MICRO_MODEL, epochs=1, seeds=(0,), experiments=tuple(exp_plan.EXPERIMENTS),
                  lc_n=(2, 4), lf_n_high=(2,), lf_n_low=(0, 3, None), ablation_n=2, tl_n=(2, 4), n_low=None,
                  max_test=3, speed={"cpu": 20.0, "cuda": 20.0}, about="test scale")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Synthetic data + one full micro sweep; yields (data dir, out dir, argv, summary)."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    exp_plan.SCALES["micro"] = MICRO
    tmp = tmp_path_factory.mktemp("experiments")
    data = exp_data.write_synthetic_data(tmp / "data", n_high=6, n_low=6, n_test=3, n_paired=4)
    out = tmp / "out"
    argv = ["--scale", "micro", "--data", str(data), "--out", str(out), "--device", "cpu"]
    summary = cli.main(argv)
    yield data, out, argv, summary
    exp_plan.SCALES.pop("micro", None)
    torch.set_num_threads(old_threads)


def test_sweep_writes_runs_tables_plots_and_readme(sweep):
    data, out, argv, summary = sweep
    runs = sorted((out / "runs").glob("*.json"))
    assert summary["trained"] == len(runs) == 17  # lc 4 + lf 1 + ablation 8 + tl 4 (shared runs once)
    record = json.loads(runs[0].read_text())
    assert {"key", "metrics", "time_s", "check", "n_high_frames"} <= set(record)
    for name in ("results.csv", "results.json", "README.md", "lc_mae.png", "lc_rmse.png", "lf_mae.png",
                 "ablation_mae.png", "tl_mae.png"):
        assert (out / name).stat().st_size > 0, name
    readme = (out / "README.md").read_text()
    assert exp_plan.TEACHER_SENTENCE in readme
    assert "## What we see" in readme and "synthetic development data" in readme
    assert "python benchmarks/experiments.py " + " ".join(argv) in readme
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert all(r["n_seeds"] == 1 for r in rows)
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(rows) and "f_mae_mean" in csv_lines[0]


def test_ablation_table_has_all_ten_variants(sweep):
    _, out, _, _ = sweep
    rows = [r for r in json.loads((out / "results.json").read_text())["rows"] if r["experiment"] == "ablation"]
    assert [r["label"] for r in rows] == ["N", "F", "C", "E", "M", "R"] + [v + exp_plan.BAR for v in "CEMR"]
    assert [r["modules"] for r in rows] == ["", "EMRC", "C", "E", "M", "R", "EMR", "MRC", "ERC", "EMC"]
    readme = (out / "README.md").read_text()
    table = readme.split("## Ablation")[1].split("##")[0]
    assert len([line for line in table.splitlines() if line.startswith("| ") and "variant" not in line]) == 10


def test_delta_learning_has_no_magmoms_and_others_do(sweep):
    _, out, _, _ = sweep
    rows = [r for r in json.loads((out / "results.json").read_text())["rows"] if r["experiment"] == "tl"]
    assert {r["label"] for r in rows} == {"mf", "transfer", "delta"}
    for r in rows:
        assert (r["m_mae_mean"] is None) == (r["label"] == "delta")
        assert r["f_mae_mean"] > 0 and r["e_rmse_mean"] >= r["e_mae_mean"]


def test_rerun_skips_finished_runs(sweep, monkeypatch):
    _, out, argv, _ = sweep
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(exp_runs, "run_one", no_training)
    summary = cli.main(argv)
    assert summary["trained"] == 0 and summary["skipped"] == len(mtimes)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")} == mtimes
    assert (out / "README.md").is_file()


def test_changed_settings_do_not_reuse_runs(sweep):
    _, out, argv, _ = sweep
    with pytest.raises(ValueError, match="another configuration"):
        cli.main(argv + ["--epochs", "2", "--dry-run"])


def test_runs_validated_under_another_split_protocol_are_not_reused(sweep):
    _, out, argv, _ = sweep
    path = sorted((out / "runs").glob("*.json"))[0]
    original = path.read_text()
    record = json.loads(original)
    del record["check"]["validation_split"]  # a record of the split before the grouped one
    path.write_text(json.dumps(record))
    try:
        with pytest.raises(ValueError, match="validation_split"):
            cli.main(argv + ["--dry-run"])
    finally:
        path.write_text(original)


def test_low_fidelity_model_of_another_split_protocol_is_not_reused(sweep):
    _, out, argv, _ = sweep
    done = next((out / "work").glob("low-*/done.json"))
    transfer = next((out / "runs").glob("transfer-*.json"))
    original_done, original_run = done.read_text(), transfer.read_text()
    record = json.loads(original_done)
    del record["check"]["validation_split"]  # a low model of the split before the grouped one
    done.write_text(json.dumps(record))
    transfer.unlink()  # so that a transfer run needs the shared low-fidelity model again
    try:
        with pytest.raises(ValueError, match="low-fidelity model was made with another configuration"):
            cli.main(argv + ["--experiments", "tl"])
    finally:
        done.write_text(original_done)
        transfer.write_text(original_run)


def test_plan_shares_identical_runs_between_experiments():
    sizes = {"high": 1720, "low": 1736, "test": 191, "paired": 200}
    plan = exp_plan.build_plan(list(exp_plan.EXPERIMENTS), exp_plan.SCALES["paper"], (0, 1, 2), sizes)
    keys = {(r.experiment, r.label, r.n_high, r.n_low, r.seed): r.key for r in plan}
    assert keys[("lc", "mf", 100, None, 0)] == keys[("ablation", "F", 100, None, 0)] == keys[("tl", "mf", 100, None, 0)]
    assert keys[("lf", "single", 50, 0, 1)] == keys[("lc", "single", 50, 0, 1)]
    assert keys[("lc", "mf", None, None, 2)] == "mf-EMRC-nhall-nlall-s2"  # N=all resolved
    unique = exp_plan.unique_runs(plan)
    assert len(unique) == len({r.key for r in plan}) < len(plan)
    assert len(exp_plan.build_plan(["ablation"], exp_plan.SCALES["paper"], (0,), sizes)) == 10


def test_n_high_keeps_a_subset_of_the_sweeps():
    cpu = exp_plan.SCALES["cpu"]
    kept = exp_plan.restrict_n(cpu, (50, 100))
    assert kept.lc_n == (50, 100) and kept.tl_n == (50, 100) and kept.lf_n_high == (50,)
    assert kept.ablation_n == cpu.ablation_n and kept.epochs == cpu.epochs
    with pytest.raises(SystemExit, match="keeps none"):
        exp_plan.restrict_n(cpu, (7,))
    assert cli.parse_args(["--scale", "cpu", "--n-high", "50,100"]).n_high == (50, 100)


def test_subsets_are_seeded_and_nested():
    a, b = exp_data.pick(100, 10, seed=0, stream="high"), exp_data.pick(100, 20, seed=0, stream="high")
    assert set(a) < set(b) and a == sorted(a) and len(set(a)) == 10
    assert exp_data.pick(100, 10, seed=1, stream="high") != a
    assert exp_data.pick(100, 10, seed=0, stream="low") != a
    assert exp_data.pick(5, None, seed=0, stream="high") == list(range(5))
    assert exp_plan.resolve(400, 300) is None and exp_plan.resolve(50, 300) == 50


def test_findings_are_computed_from_the_numbers():
    def row(label, n, f, std=1.0):
        base = {"experiment": "lc", "label": label, "n_high": n, "n_seeds": 3}
        for t in "efsm":
            base.update({f"{t}_mae_mean": f, f"{t}_mae_std": std})
        return base

    rows = [row("single", "50", 90.0), row("mf", "50", 45.0), row("single", "all", 20.0), row("mf", "all", 21.0)]
    text = " ".join(exp_report.lc_findings(rows))
    assert "MF beats single-fidelity on forces at N=50 by 2.00×" in text
    assert "MF does not beat single-fidelity on forces at N=all: 21 vs 20 meV/Å, 0.95× (within the seed scatter)" in text
    ablation = [dict(row(v, "100", 10.0 if v == "F" else 20.0), experiment="ablation") for v in exp_plan.ABLATION]
    assert "best: F" in " ".join(exp_report.ablation_findings(ablation))


def test_plots_leave_out_targets_no_run_measured():
    """DFT labels carry no stress: its panel would be empty, so plots show e, f, m only."""
    rows = [{"e_mae_mean": 1.0, "f_mae_mean": 2.0, "s_mae_mean": None, "m_mae_mean": 0.1},
            {"e_mae_mean": 1.5, "f_mae_mean": float("nan"), "s_mae_mean": float("nan"), "m_mae_mean": None}]
    assert exp_report.measured_targets(rows) == ["e", "f", "m"]


def test_findings_count_only_the_targets_measured():
    """Without stress (DFT data) a finding speaks of three targets, not four."""
    def row(label, f, stress):
        return {"experiment": "lc", "label": label, "n_high": "50", "n_seeds": 3, "e_mae_mean": f, "f_mae_mean": f,
                "m_mae_mean": f, "s_mae_mean": f if stress else None}

    for stress, count in ((True, "four"), (False, "three")):
        text = " ".join(exp_report.lc_findings([row("single", 90.0, stress), row("mf", 45.0, stress)]))
        assert f"of the {count} targets measured" in text


def test_dft_scale_plans_warm_starts_and_shares_them_with_the_ablation():
    """Scale dft (issue 13): four learning-curve series, two of them warm-started from CHGNet 0.3.0; the
    warm-started ablation's F and N are the learning curves' mf-warm and finetune runs at N = 50."""
    dft = exp_plan.SCALES["dft"]
    plan = exp_plan.build_plan(["lc", "ablation"], dft, (0,), {"high": 90, "low": 300, "test": 30})
    lc = {(r.label, r.n_high): r for r in plan if r.experiment == "lc"}
    assert {label for label, _ in lc} == {"single", "mf", "finetune", "mf-warm"}
    assert lc[("finetune", 10)].key == "single-plain-chgnet-0.3.0-nh10-nl0-s0"
    assert lc[("mf-warm", None)].key == "mf-EMRC-chgnet-0.3.0-nhall-nlall-s0"  # N = all: the 90 gpaw_afm frames
    ablation = {r.label: r for r in plan if r.experiment == "ablation"}
    assert ablation["F"].key == lc[("mf-warm", 50)].key and ablation["N"].key == lc[("finetune", 50)].key
    assert all(r.init == "chgnet-0.3.0" for r in ablation.values())
    assert lc[("mf", 10)].key == "mf-EMRC-nh10-nlall-s0"  # scratch keys as before: finished runs stay valid


def test_sizes_that_resolve_to_all_frames_are_planned_once_per_seed():
    """With 90 high-fidelity frames N = 100 is N = all: one plan entry per seed, so its mean is not over a seed
    counted twice."""
    plan = exp_plan.build_plan(["lc"], exp_plan.SCALES["dft-cpu"], (0, 1), {"high": 90, "low": 300, "test": 30})
    entries = [(r.label, r.n_high, r.seed) for r in plan]
    assert len(entries) == len(set(entries)) == 2 * 4 * 4  # seeds × series × N ∈ {10, 25, 50, all}
    assert {n for _, n, _ in entries} == {10, 25, 50, None}


def test_dft_cpu_scale_sizes_warm_and_scratch_runs_apart():
    """Scale dft-cpu: warm starts keep the pretrained size and train fewer epochs, scratch runs use the reduced
    model; MF runs draw a quarter of the low-fidelity frames per epoch, and the estimate counts only those."""
    scale = exp_plan.SCALES["dft-cpu"]
    sizes = {"high": 90, "low": 300, "test": 30}
    lc = {(r.label, r.n_high): r for r in exp_plan.build_plan(["lc"], scale, (0,), sizes)}
    warm, scratch = (exp_runs.train_config(scale, lc[(name, 10)]) for name in ("mf-warm", "mf"))
    assert (warm.epochs, warm.model, warm.fidelity_fraction) == (15, {}, {"gpaw_nonmag": 0.25})
    assert (scratch.epochs, scratch.model["atom_fea_dim"], scratch.fidelity_fraction) == (40, 32, {"gpaw_nonmag": 0.25})
    assert exp_runs.train_config(scale, lc[("finetune", 10)]).fidelity_fraction == {}  # no low-fidelity frames
    assert exp_runs.frames_of(lc[("mf", 10)], sizes, scale) == 10 + 300 * 0.25
    one = exp_runs.estimated_seconds([lc[("mf-warm", 10)]], {**sizes, "test": 0}, scale, "cpu", lambda s: False)
    assert one == pytest.approx(85 * 15 / 2.7 * 1.05)
    assert exp_runs.train_config(exp_plan.SCALES["dft"], lc[("mf-warm", 10)]).fidelity_fraction == {}  # the paper's


def test_levers_share_runs_with_the_learning_curves_and_set_share_and_frozen_trunk():
    """The levers experiment (issue 13) at N = 25: a share equal to the scale's is the learning curve's own run
    (dft-cpu: 25 %, dft: all), other shares and the frozen trunk are runs of their own with that config."""
    sizes = {"high": 90, "low": 300, "test": 30}
    for name, shared, own in (("dft-cpu", "MF, 25 % low/epoch", "MF, all low/epoch"),
                              ("dft", "MF, all low/epoch", "MF, 25 % low/epoch")):
        scale = exp_plan.SCALES[name]
        plan = exp_plan.build_plan(["lc", "levers"], scale, (0,), sizes)
        lc = {r.label: r for r in plan if r.experiment == "lc" and r.n_high == 25}
        levers = {r.label: r for r in plan if r.experiment == "levers"}
        assert set(levers) == set(exp_plan.LEVERS) and {r.n_high for r in levers.values()} == {25}
        assert levers[shared].key == lc["mf-warm"].key and levers["finetune"].key == lc["finetune"].key
        config = exp_runs.train_config(scale, levers[own])
        assert config.fidelity_fraction == ({} if own.startswith("MF, all") else {"gpaw_nonmag": 0.25})
        assert exp_runs.frames_of(levers[own], sizes, scale) == 25 + 300 * (1.0 if own.startswith("MF, all") else 0.25)
        low5 = exp_runs.train_config(scale, levers["MF, 5 % low/epoch"])
        assert low5.fidelity_fraction == {"gpaw_nonmag": 0.05} and low5.init == "chgnet-0.3.0" and low5.freeze == ()
        frozen = exp_runs.train_config(scale, levers["MF, trunk frozen"])
        assert frozen.freeze == TRANSFER_FROZEN
        assert frozen.fidelity_fraction == exp_runs.train_config(scale, lc["mf-warm"]).fidelity_fraction
        assert "-frozen-" in levers["finetune, trunk frozen"].key and levers["finetune, trunk frozen"].low_fraction is None
    assert exp_plan.build_plan(["levers"], exp_plan.SCALES["cpu"], (0,), sizes) == []  # a scale without levers_n


def test_dft_layout_pairs_structures_found_in_both_files_and_warm_starts(tmp_path):
    """DFT-like data (no paired files; the paired structures sit in both the high and the low file): Δ-learning
    finds its pairs by structure, warm-started runs train, and the report speaks of DFT, not teachers."""
    names = {"high": "afm_train.extxyz", "low": "nonmag.extxyz", "test": "afm_test.extxyz"}
    data_dir = exp_data.write_synthetic_data(tmp_path / "data", n_high=3, n_low=4, n_test=2, n_paired=3,
                                             low="nm", high="afm", files=names)
    scale = replace(MICRO, name="micro_dft", experiments=("lc", "tl", "levers"), lc_n=(2,), tl_n=(2,), low="nm",
                    high="afm", files=names, labels="**Labels are real DFT (test).**", labels_short="DFT (test)",
                    lc_variants=("single", "mf", "finetune", "mf-warm"), levers_n=2)
    data = exp_data.load_data(data_dir, scale, paired=True)
    assert len(data.high) == 6 and len(data.low) == 7 and len(data.paired_high) == len(data.paired_low) == 3
    assert data.files["paired_high"] == data.files["high"]
    exp_plan.SCALES["micro_dft"] = scale
    try:
        summary = cli.main(["--scale", "micro_dft", "--data", str(data_dir), "--out", str(tmp_path / "out"),
                            "--device", "cpu", "--threads", "1"])
    finally:
        exp_plan.SCALES.pop("micro_dft")
    rows = {(r["experiment"], r["label"]): r for r in summary["rows"]}
    assert set(rows) == {("lc", v) for v in ("single", "mf", "finetune", "mf-warm")} | {
        ("tl", v) for v in ("mf", "transfer", "delta")} | {("levers", v) for v in exp_plan.LEVERS}
    assert all(r["n_seeds"] == 1 and r["f_mae_mean"] > 0 for r in rows.values())
    from mf_calc.model.mfchgnet import MFCHGNet

    pretrained = MFCHGNet.from_chgnet("0.3.0", fidelities=("nm", "afm")).state_dict()
    frozen = MFCHGNet.load(tmp_path / "out" / "work" / "mf-EMRC-chgnet-0.3.0-frozen-nh2-nlall-s0" / "best")
    trunk = [k for k in pretrained if k.split(".")[0] in TRANSFER_FROZEN]
    assert trunk and all(torch.equal(frozen.state_dict()[k], pretrained[k]) for k in trunk)  # the trunk did not move
    assert not torch.equal(frozen.state_dict()["readouts.1.layers.0.weight"], pretrained["readouts.1.layers.0.weight"])
    record = json.loads((tmp_path / "out" / "runs" / "mf-EMRC-chgnet-0.3.0-nh2-nlall-s0.json").read_text())
    assert record["check"]["train_config"]["init"] == "chgnet-0.3.0" and record["check"]["train_config"]["model"] == {}
    delta = json.loads((tmp_path / "out" / "runs" / "delta-plain-nh2-nlall-s0.json").read_text())
    assert delta["n_paired_frames"] == 2
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "Labels are real DFT (test)." in readme and "teacher" not in readme.split("## What we see")[0]
    assert "MF from CHGNet 0.3.0" in readme  # the warm comparison in the findings
    assert "*levers*: MF, 5 % low/epoch" in readme and "levers_mae.png" in readme

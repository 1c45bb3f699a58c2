"""What active learning bought: every arm's round models scored side by side on the DFT workflow benchmark and the
fixed test split, against the DFT they cost.

    python benchmarks/active_learning_report.py     # -> benchmarks/active_learning/runs/SUMMARY.md, summary.png

Row "round r" of an arm is its round-r model (committee member 0, ``round_RR/committee/m0/best``): the starting
data plus every frame labelled in rounds < r, so round 0 is the loop's baseline. Each member present is scored on
the benchmark frames labelled so far (``benchmarks/workflow_bench_report.py``: the issue-30 default-model targets)
and on the run's ``evaluate`` files; the scores go to ``round_RR/scores.json`` beside the models and are reused
while the weights and the benchmark's labelled frames are unchanged. Members other than 0 are not committed, their
scores are: a cell shows member 0 and, in brackets, the range over the members scored on the same frames (the
seed scatter).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "active_learning" / "runs"
ARMS = ("finetune_committee", "finetune_random", "mf_committee", "hull_committee")


def round_models(run: Path) -> list[tuple[int, Path]]:
    """(round, member-0 model folder) of every round whose model is trained, in order."""
    from mf_calc.learn.loop import round_dir
    from mf_calc.train.checkpoint import training_finished

    out, index = [], 0
    while training_finished(round_dir(run, index) / "committee" / "m0"):
        out.append((index, round_dir(run, index) / "committee" / "m0" / "best"))
        index += 1
    return out


def members_on_disk(run: Path, index: int) -> dict[str, Path]:
    """Committee member name (m0, m1, ...) -> model folder, for the round's members present here."""
    from mf_calc.learn.loop import round_dir
    from mf_calc.train.checkpoint import training_finished

    found = sorted(path for path in (round_dir(run, index) / "committee").glob("m*") if training_finished(path))
    return {path.name: path / "best" for path in found}


def weights_id(model_dir: Path) -> str:
    """The model folder's weights checksum (written by ``save_model``)."""
    return json.loads((model_dir / "config.json").read_text())["weights_sha256"]


def bench_frames() -> dict[str, int]:
    """Labelled frames per workflow-benchmark part now: a member's cached score holds while these are unchanged."""
    import workflow_bench_report as bench

    return {part: len(bench.labelled(part)) for part in bench.PARTS}


def spent_before(run: Path, index: int) -> dict:
    """gpaw_afm frames and DFT core-hours (all fidelities) of the finished rounds < ``index``."""
    from mf_calc.learn.loop import round_dir

    frames, hours = 0, 0.0
    for r in range(index):
        path = round_dir(run, r) / "evaluation.json"
        if path.is_file():
            result = json.loads(path.read_text())
            frames += result["labelled"]
            hours += result["dft_core_hours"]
    return {"labelled_frames": frames, "dft_core_hours": hours}


def score_member(run: Path, model_dir: Path, frames: dict[str, int]) -> dict:
    """Benchmark and test-split scores of one committee member."""
    import workflow_bench_report as bench

    from mf_calc.data import read_frames
    from mf_calc.learn.loop import open_run
    from mf_calc.model.mfchgnet import MFCHGNet
    from mf_calc.train.dataset import FrameDataset
    from mf_calc.train.metrics import evaluate

    settings = open_run(run)
    model = MFCHGNet.load(model_dir)
    test = {}
    for item in settings.evaluate:
        data = FrameDataset(read_frames(item, fidelity=settings.fidelity))
        test[item] = evaluate(model, data.graphs(model)).get(settings.fidelity, {})
    name = os.path.relpath(model_dir, ROOT)  # committed: no machine's absolute path
    scores = bench.evaluate(str(model_dir), settings.fidelity) | {"model": name}
    return {"model": name, "weights_sha256": weights_id(model_dir), "bench_frames": frames, "test": test,
            "workflow_bench": scores, "targets": bench.target_checks(scores)}


def saved_members(path: Path) -> dict[str, dict]:
    """Member scores kept in a round's scores.json (members other than m0 are not committed, their scores are)."""
    return json.loads(path.read_text()).get("members", {}) if path.is_file() else {}


def score_round(run: Path, index: int, frames: dict[str, int]) -> dict:
    """Scores of every member of round ``index``, written to ``round_RR/scores.json``: members here are scored
    again unless their saved score is for the same weights and benchmark frames; members only in the file keep
    their saved score."""
    from mf_calc.atomic import write_json
    from mf_calc.learn.loop import round_dir

    path = round_dir(run, index) / "scores.json"
    members = saved_members(path)
    for name, model_dir in members_on_disk(run, index).items():
        saved = members.get(name, {})
        if saved.get("weights_sha256") != weights_id(model_dir) or saved.get("bench_frames") != frames:
            members[name] = score_member(run, model_dir, frames)
    result = {"round": index, **spent_before(run, index), "members": dict(sorted(members.items()))}
    write_json(path, result)
    write_round_report(run, result)
    return result


def write_round_report(run: Path, result: dict) -> None:
    """``round_RR/workflow_bench.md``: member 0's targets and per-part scores."""
    import workflow_bench_report as bench

    from mf_calc.learn.loop import round_dir

    index, first = result["round"], result["members"]["m0"]
    report = [f"# Round {index} model on the DFT workflow benchmark", "",
              f"`{first['model']}`: the base data and {result['labelled_frames']} frames labelled in rounds < {index} "
              f"({result['dft_core_hours']:.1f} DFT core-hours); `python benchmarks/active_learning_report.py`.", "",
              *bench.targets_table({"member 0": first["targets"]}), "",
              "Per part (meV/Å, meV/atom, meV/fu, GPa, eV):", "",
              "```json", json.dumps(first["workflow_bench"]["parts"], indent=1), "```", ""]
    (round_dir(run, index) / "workflow_bench.md").write_text("\n".join(report))


def committee_errors(models: list, frames: list, fidelity: str) -> dict:
    """Per frame: the committee's max atomic force deviation (eV/Å) and energy spread (meV/atom), and member 0's
    max atomic force error (eV/Å) and energy error (meV/atom) against the frames' DFT labels."""
    import numpy as np

    from mf_calc.learn.select import force_deviation

    preds = [model.predict(frames, fidelity=fidelity, task="ef") for model in models]
    n = np.array([len(f) for f in frames])
    energies = np.array([[p["energy"] for p in per_model] for per_model in preds]) / n
    dft = np.array([f.get_potential_energy() for f in frames]) / n
    return {"force_deviation_eV_A": force_deviation([[p["forces"] for p in per_model] for per_model in preds]),
            "force_error_eV_A": np.array([np.linalg.norm(f.get_forces() - p["forces"], axis=1).max()
                                          for f, p in zip(frames, preds[0])]),
            "energy_spread_meV_atom": energies.std(0) * 1e3, "energy_error_meV_atom": np.abs(energies[0] - dft) * 1e3}


def calibration(run: Path, index: int, frames: dict[str, int]) -> dict | None:
    """How well round ``index``'s committee knows its errors on the benchmark frames: per part the medians of
    ``committee_errors``, and over all parts the rank correlation (Spearman) of deviation with error. Needs every
    member (kept in ``round_RR/calibration.json`` and reused while the members' weights and the benchmark's
    labelled ``frames`` are unchanged; members other than 0 are not committed)."""
    import numpy as np
    import workflow_bench_report as bench
    from scipy.stats import spearmanr

    from mf_calc.atomic import write_json
    from mf_calc.learn.loop import open_run, round_dir
    from mf_calc.model.mfchgnet import MFCHGNet

    path = round_dir(run, index) / "calibration.json"
    saved = json.loads(path.read_text()) if path.is_file() else None
    members = members_on_disk(run, index)
    key = {"bench_frames": frames, "weights_sha256": {name: weights_id(folder) for name, folder in members.items()}}
    if len(members) < 2 or (saved and all(saved.get(k) == v for k, v in key.items())):
        return saved
    models = [MFCHGNet.load(folder) for folder in members.values()]
    per_part = {part: committee_errors(models, labelled, open_run(run).fidelity)
                for part in ("md", "hull_fe", "hull_mnfe", "ev", "neb") if (labelled := bench.labelled(part))}
    out = key | {"parts": {part: {"frames": len(v["force_error_eV_A"])} | {k: float(np.median(a)) for k, a in v.items()}
                           for part, v in per_part.items()}}
    pooled = {k: np.concatenate([v[k] for v in per_part.values()]) for k in next(iter(per_part.values()))}
    out["spearman"] = {"forces": float(spearmanr(pooled["force_deviation_eV_A"], pooled["force_error_eV_A"])[0]),
                       "energy": float(spearmanr(pooled["energy_spread_meV_atom"], pooled["energy_error_meV_atom"])[0]),
                       "frames": len(pooled["force_error_eV_A"])}
    write_json(path, out)
    return out


def calibration_lines(arm: str, index: int, calib: dict) -> list[str]:
    lines = [f"Committee of `{arm}` round {index} on the benchmark frames (medians over each part's frames): what "
             "it can see of its errors.", "",
             "| part | frames | max atomic force deviation (eV/Å) | max atomic force error of member 0 (eV/Å) | "
             "energy spread (meV/atom) | energy error of member 0 (meV/atom) |", "|---|---|---|---|---|---|"]
    for part, v in calib["parts"].items():
        lines.append(f"| {part} | {v['frames']} | {v['force_deviation_eV_A']:.3f} | {v['force_error_eV_A']:.3f} | "
                     f"{v['energy_spread_meV_atom']:.2f} | {v['energy_error_meV_atom']:.2f} |")
    rank = calib["spearman"]
    return lines + ["", f"Rank correlation over all {rank['frames']} frames (Spearman): force deviation with force "
                        f"error {rank['forces']:.2f}, energy spread with energy error {rank['energy']:.2f}.", ""]


def values(member: dict) -> list[float | None]:
    """One member's numbers in the table's column order: test forces and energy, the targets, Li_x(Mn½Fe½)PO4
    formation-energy MAE."""
    test = next(iter(member["test"].values()), {})
    mnfe = member["workflow_bench"]["parts"].get("hull_mnfe", {}).get("ef_mae_meV_fu")
    return [test.get("f_mae"), test.get("e_mae"), *(value for _, value, _, _ in member["targets"]), mnfe]


def seed_values(result: dict) -> list[list[float | None]]:
    """``values`` of every member scored on the same benchmark frames as member 0, member 0 first."""
    first = result["members"]["m0"]
    same = [m for name, m in result["members"].items()
            if name != "m0" and m.get("bench_frames") == first.get("bench_frames")]
    return [values(first)] + [values(m) for m in same]


def cell(column: list[float | None]) -> str:
    """Member 0's value, with the range over the seeds where more than one has it."""
    if column[0] is None:
        return "–"
    known = [v for v in column if v is not None]
    spread = f" ({min(known):.3g}–{max(known):.3g})" if len(known) > 1 else ""
    return f"{column[0]:.3g}{spread}"


def row(arm: str, result: dict) -> list[str]:
    seeds = seed_values(result)
    return [arm, str(result["round"]), str(len(seeds)), str(result["labelled_frames"]),
            f"{result['dft_core_hours']:.1f}", *(cell(list(column)) for column in zip(*seeds))]


def table(results: dict[str, list[dict]]) -> str:
    """Markdown table: one row per arm and round, the issue-30 targets as columns (limits in the header)."""
    first = next(r for rows in results.values() for r in rows)["members"]["m0"]
    header = ["arm", "round", "seeds", "gpaw_afm frames added", "DFT core-h", "test forces (meV/Å)",
              "test energy (meV/atom)"]
    header += [f"{name} {limit}" for name, _, limit, _ in first["targets"]]
    header += ["Li_x(Mn½Fe½)PO4 orderings: formation-energy MAE (meV/fu)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row(arm, r)) + " |" for arm, rows in results.items() for r in rows]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, list[dict]], path: Path) -> None:
    """Test forces and each target against the gpaw_afm frames added, one line per arm (member 0) with the range
    over the seeds as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(r for rows in results.values() for r in rows)["members"]["m0"]
    titles = ["test split: force MAE (meV/Å)"] + [f"{name} {limit}" for name, _, limit, _ in first["targets"]]
    columns = [0] + [2 + k for k in range(len(first["targets"]))]
    width = (len(titles) + 1) // 2
    fig, axes = plt.subplots(2, width, figsize=(4 * width, 7))
    for ax, title, k in zip(axes.ravel(), titles, columns):
        for shift, (arm, rows) in enumerate(results.items()):
            points = [(r["labelled_frames"] + 0.15 * shift, [v[k] for v in seed_values(r) if v[k] is not None])
                      for r in rows if values(r["members"]["m0"])[k] is not None]
            if points:
                x, seeds = zip(*points)
                y = [s[0] for s in seeds]
                bars = [[a - min(s) for a, s in zip(y, seeds)], [max(s) - a for a, s in zip(y, seeds)]]
                ax.errorbar(x, y, yerr=bars, fmt="o-", capsize=3, label=arm)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("gpaw_afm frames added", fontsize=8)
    for ax in axes.ravel()[len(titles):]:
        ax.set_visible(False)
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=RUNS, help="folder of the arms' run folders")
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    args = ap.parse_args(argv)
    frames = bench_frames()
    results = {arm: [score_round(args.runs / arm, index, frames) for index, _ in round_models(args.runs / arm)]
               for arm in args.arms if (args.runs / arm / "learn.json").is_file()}
    results = {arm: rows for arm, rows in results.items() if rows}
    if not results:
        raise SystemExit(f"no trained round model under {args.runs} for arms {args.arms}")
    calibrations = [calibration_lines(arm, index, calib) for arm in results for index, _ in
                    round_models(args.runs / arm) if (calib := calibration(args.runs / arm, index, frames))]
    text = ("# What active learning bought (issue 30)\n\nRound r = the model trained on the base data and the "
            "labels of rounds < r; targets of the DFT workflow benchmark (issue 30, section 3). A cell is committee "
            "member 0 with, in brackets, the range over the round's members (seeds) scored on the same frames.\n\n"
            + table(results) + "\n![targets per round](summary.png)\n\n"
            + "\n".join(line for lines in calibrations for line in lines))
    (args.runs / "SUMMARY.md").write_text(text)
    plot(results, args.runs / "summary.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

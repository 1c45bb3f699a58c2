"""What active learning bought: every arm's round models scored side by side on the DFT workflow benchmark and the
fixed test split, against the DFT they cost.

    python benchmarks/active_learning_report.py     # -> benchmarks/active_learning/runs/SUMMARY.md, summary.png

Row "round r" of an arm is its round-r model (committee member 0, ``round_RR/committee/m0/best``): the starting
data plus every frame labelled in rounds < r, so round 0 is the loop's baseline. Each model is scored on the
benchmark frames labelled so far (``benchmarks/workflow_bench_report.py``: the issue-30 default-model targets)
and on the run's ``evaluate`` files; the scores go to ``round_RR/scores.json`` beside the model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "active_learning" / "runs"
ARMS = ("finetune_committee", "finetune_random", "mf_committee")


def round_models(run: Path) -> list[tuple[int, Path]]:
    """(round, member-0 model folder) of every round whose model is trained, in order."""
    from mf_calc.learn.loop import round_dir

    out, index = [], 0
    while (round_dir(run, index) / "committee" / "m0" / "best" / "config.json").is_file():
        out.append((index, round_dir(run, index) / "committee" / "m0" / "best"))
        index += 1
    return out


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


def score_model(run: Path, index: int, model_dir: Path) -> dict:
    """Benchmark and test-split scores of one round's model, written to ``round_RR/scores.json``."""
    import workflow_bench_report as bench

    from mf_calc.atomic import write_json
    from mf_calc.data import read_frames
    from mf_calc.learn.loop import open_run, round_dir
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
    result = {"round": index, "model": name, "test": test, "workflow_bench": scores,
              "targets": bench.target_checks(scores), **spent_before(run, index)}
    write_json(round_dir(run, index) / "scores.json", result)
    report = [f"# Round {index} model on the DFT workflow benchmark", "",
              f"`{name}`: the base data and {result['labelled_frames']} frames labelled in rounds < {index} "
              f"({result['dft_core_hours']:.1f} DFT core-hours); `python benchmarks/active_learning_report.py`.", "",
              *bench.targets_table(result["targets"]), "", "Per part (meV/Å, meV/atom, meV/fu, GPa, eV):", "",
              "```json", json.dumps(scores["parts"], indent=1), "```", ""]
    (round_dir(run, index) / "workflow_bench.md").write_text("\n".join(report))
    return result


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


def calibration(run: Path, index: int) -> dict | None:
    """How well round ``index``'s committee knows its errors on the benchmark frames: per part the medians of
    ``committee_errors``, and over all parts the rank correlation (Spearman) of deviation with error. Needs every
    member (kept in ``round_RR/calibration.json``; members other than 0 are not committed)."""
    import numpy as np
    import workflow_bench_report as bench
    from scipy.stats import spearmanr

    from mf_calc.atomic import write_json
    from mf_calc.learn.loop import open_run, round_dir
    from mf_calc.model.mfchgnet import MFCHGNet

    path = round_dir(run, index) / "calibration.json"
    members = sorted((round_dir(run, index) / "committee").glob("m*/best/config.json"))
    if len(members) < 2:
        return json.loads(path.read_text()) if path.is_file() else None
    models = [MFCHGNet.load(m.parent) for m in members]
    per_part = {part: committee_errors(models, frames, open_run(run).fidelity)
                for part in ("md", "hull_fe", "hull_mnfe", "ev", "neb") if (frames := bench.labelled(part))}
    out = {"parts": {part: {"frames": len(v["force_error_eV_A"])} | {k: float(np.median(a)) for k, a in v.items()}
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


def row(arm: str, result: dict) -> list[str]:
    test = next(iter(result["test"].values()), {})
    cells = [arm, str(result["round"]), str(result["labelled_frames"]), f"{result['dft_core_hours']:.1f}",
             *(f"{test[k]:.1f}" if k in test else "–" for k in ("f_mae", "e_mae"))]
    cells += ["–" if value is None else f"{value:.3g}" for _, value, _, _ in result["targets"]]
    mnfe = result["workflow_bench"]["parts"].get("hull_mnfe", {}).get("ef_mae_meV_fu")
    return cells + ["–" if mnfe is None else f"{mnfe:.3g}"]


def table(results: dict[str, list[dict]]) -> str:
    """Markdown table: one row per arm and round, the issue-30 targets as columns (limits in the header)."""
    first = next(r for rows in results.values() for r in rows)
    header = ["arm", "round", "gpaw_afm frames added", "DFT core-h", "test forces (meV/Å)", "test energy (meV/atom)"]
    header += [f"{name} {limit}" for name, _, limit, _ in first["targets"]]
    header += ["Li_x(Mn½Fe½)PO4 orderings: formation-energy MAE (meV/fu)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row(arm, r)) + " |" for arm, rows in results.items() for r in rows]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, list[dict]], path: Path) -> None:
    """Each target against the gpaw_afm frames added, one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(r for rows in results.values() for r in rows)
    names = [name for name, _, _, _ in first["targets"]]
    fig, axes = plt.subplots(2, (len(names) + 1) // 2, figsize=(4 * ((len(names) + 1) // 2), 7))
    for ax, k in zip(axes.ravel(), range(len(names))):
        for arm, rows in results.items():
            points = [(r["labelled_frames"], r["targets"][k][1]) for r in rows if r["targets"][k][1] is not None]
            if points:
                ax.plot(*zip(*points), "o-", label=arm)
        ax.set_title(f"{names[k]} {first['targets'][k][2]}", fontsize=8)
        ax.set_xlabel("gpaw_afm frames added", fontsize=8)
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=RUNS, help="folder of the arms' run folders")
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    args = ap.parse_args(argv)
    results = {arm: [score_model(args.runs / arm, index, model) for index, model in round_models(args.runs / arm)]
               for arm in args.arms if (args.runs / arm / "learn.json").is_file()}
    results = {arm: rows for arm, rows in results.items() if rows}
    if not results:
        raise SystemExit(f"no trained round model under {args.runs} for arms {args.arms}")
    calibrations = [calibration_lines(arm, index, calib) for arm in results for index, _ in
                    round_models(args.runs / arm) if (calib := calibration(args.runs / arm, index))]
    text = ("# What active learning bought (issue 30)\n\nRound r = the model trained on the base data and the "
            "labels of rounds < r; targets of the DFT workflow benchmark (issue 30, section 3).\n\n"
            + table(results) + "\n![targets per round](summary.png)\n\n"
            + "\n".join(line for lines in calibrations for line in lines))
    (args.runs / "SUMMARY.md").write_text(text)
    plot(results, args.runs / "summary.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

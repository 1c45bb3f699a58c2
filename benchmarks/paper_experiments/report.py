"""Tables, plots, findings and README.md of a sweep, all computed from the aggregated rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mf_calc.train.dataset import TARGETS
from mf_calc.train.metrics import REPORT

from .aggregate import aggregate, find, write_tables
from .plan import BAR, METHOD_NAMES, STATS, Run, Scale, count_text
from .runs import RunStore


def label_text(label: str, math_text: bool = False) -> str:
    """Display name: methods by name, ablation variants as letters (C̄ as $\\bar{C}$ in plots)."""
    if label in METHOD_NAMES:
        return METHOD_NAMES[label]
    if label.endswith(BAR) and math_text:
        return rf"$\bar{{\mathrm{{{label[0]}}}}}$"
    return label


def measured_targets(rows: list[dict]) -> list[str]:
    """The targets (of e, f, s, m) with a finite MAE in at least one row: DFT data without stress gets no
    stress panel."""
    return [t for t in TARGETS if any(math.isfinite(mae(r, t)) for r in rows)]


def targets_measured(rows: list[dict]) -> str:
    """'the three targets measured' (four with stress) for the findings."""
    count = len(measured_targets(rows))
    return f"the {({1: 'one', 2: 'two', 3: 'three', 4: 'four'}).get(count, count)} targets measured"


def lower_on(row: dict, other: dict, rows: list[dict]) -> str:
    """The targets where ``row`` has the lower MAE than ``other``: 'energy, forces of the three targets measured'
    (or 'none of ...'; ``rows`` tell which targets were measured)."""
    wins = [REPORT[t][0] for t in TARGETS if mae(row, t) < mae(other, t)]
    return (", ".join(wins) if wins else "none") + " of " + targets_measured(rows)


def _panels(title: str, targets: list[str]):
    """One panel per target, side by side; returns pyplot, the figure and a list of axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(targets), figsize=(4 * len(targets), 3.8), squeeze=False)
    fig.suptitle(title, fontsize=10)
    return plt, fig, list(axes[0])


def plot_curves(rows: list[dict], x_key: str, series_key: str, path: Path, title: str, xlabel: str,
                stat: str = "mae", logx: bool = True) -> None:
    """A panel per measured target (e, f, s, m): ``stat`` vs ``x_key`` per series, error bars = std over
    seeds, log y."""
    targets = measured_targets(rows)
    plt, fig, axes = _panels(title, targets)
    series = list(dict.fromkeys(r[series_key] for r in rows))
    ticks = sorted({float(r[x_key]) for r in rows if r[x_key] is not None})
    for ax, t in zip(axes, targets):
        name, unit = REPORT[t][:2]
        for s in series:
            pts = sorted((r[x_key], r[f"{t}_{stat}_mean"], r[f"{t}_{stat}_std"]) for r in rows
                         if r[series_key] == s and r[x_key] is not None and math.isfinite(r[f"{t}_{stat}_mean"]))
            if not pts:
                continue
            x, y, err = (np.array(v, dtype=float) for v in zip(*pts))
            ax.errorbar(x, y, yerr=np.nan_to_num(err), marker="o", capsize=3, label=label_text(str(s), True))
        if logx:
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
        ax.set_yscale("log")
        plain = plt.FuncFormatter(lambda v, _: f"{v:.3g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{name} {stat.upper()} ({unit})")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_bars(rows: list[dict], path: Path, title: str, colours: dict[str, str], rotate: bool = False) -> None:
    """A bar panel per measured target (e, f, s, m MAE) over the variants of ``rows``, error bars = std over
    seeds; ``colours``: label -> colour (others C0)."""
    targets = measured_targets(rows)
    plt, fig, axes = _panels(title, targets)
    labels = [r["label"] for r in rows]
    for ax, t in zip(axes, targets):
        name, unit = REPORT[t][:2]
        mean = np.array([r[f"{t}_mae_mean"] for r in rows], dtype=float)
        std = np.nan_to_num(np.array([r[f"{t}_mae_std"] for r in rows], dtype=float))
        ax.bar(range(len(rows)), np.nan_to_num(mean), yerr=std, capsize=3,
               color=[colours.get(lab, "C0") for lab in labels])
        ax.set_xticks(range(len(rows)), [label_text(lab, True) for lab in labels], rotation=60 if rotate else 0,
                      ha="right" if rotate else "center", fontsize=7 if rotate else None)
        ax.set_ylabel(f"{name} MAE ({unit})")
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_plots(rows: list[dict], out: Path, scale: Scale) -> list[str]:
    """The PNGs of the experiments present in ``rows``; returns their file names."""
    written = []
    lo, hi, tag = scale.low, scale.high, f"  ({scale.labels_short})"

    def of(experiment):
        return [r for r in rows if r["experiment"] == experiment and r["n_seeds"]]

    if of("lc"):
        for stat in STATS:
            plot_curves(of("lc"), "n_high_frames", "label", out / f"lc_{stat}.png",
                        f"Learning curves, test {stat.upper()} at {hi}{tag}", f"{hi} training frames N", stat)
            written.append(f"lc_{stat}.png")
    if of("lf"):
        lf = [{**r, "series": f"N = {r['n_high']}"} for r in of("lf")]
        plot_curves(lf, "n_low_frames", "series", out / "lf_mae.png",
                    f"MF-CHGNet vs number of low-fidelity ({lo}) frames, test MAE at {hi}{tag}",
                    f"{lo} training frames (0 = single-fidelity)", logx=False)
        written.append("lf_mae.png")
    if of("ablation"):
        plot_bars(of("ablation"), out / "ablation_mae.png",
                  f"Ablation of the fidelity-dependent modules at N = {of('ablation')[0]['n_high']}, test MAE{tag}",
                  {"N": "0.6", "F": "C1"})
        written.append("ablation_mae.png")
    if of("levers"):
        plot_bars(of("levers"), out / "levers_mae.png",
                  f"Levers on the {lo} frames in a warm start at N = {of('levers')[0]['n_high']}, test MAE{tag}",
                  {"finetune": "0.6", "finetune, trunk frozen": "0.6"}, rotate=True)
        written.append("levers_mae.png")
    if of("tl"):
        plot_curves(of("tl"), "n_high_frames", "label", out / "tl_mae.png",
                    f"MF-CHGNet vs transfer learning vs Δ-learning, test MAE at {hi}{tag}", f"{hi} training frames N")
        written.append("tl_mae.png")
    return written


# ====================================================================== README: tables and findings

def cell(row: dict, t: str, stat: str) -> str:
    mean, std = row[f"{t}_{stat}_mean"], row[f"{t}_{stat}_std"]
    if mean is None or not math.isfinite(mean):
        return "–"
    return f"{mean:.3g}" if std is None or not math.isfinite(std) else f"{mean:.3g} ± {std:.2g}"


def markdown_table(rows: list[dict], first: Sequence[tuple[str, str]]) -> str:
    """One markdown table: the ``first`` (key, header) columns, then MAE and RMSE of e, f, s, m."""
    head = [h for _, h in first] + [f"{REPORT[t][0]} {stat.upper()} ({REPORT[t][:2][1]})"
                                    for t in TARGETS for stat in STATS] + ["seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        values = [label_text(str(r[k])) if r[k] != "" else "none" for k, _ in first]
        values += [cell(r, t, s) for t in TARGETS for s in STATS]
        lines.append("| " + " | ".join(values + [str(r["n_seeds"])]) + " |")
    return "\n".join(lines)


TABLE_COLUMNS = {
    "lc": [("n_high", "N"), ("label", "method")],
    "lf": [("n_high", "N"), ("n_low", "n_low"), ("label", "method")],
    "ablation": [("label", "variant"), ("modules", "modules")],
    "tl": [("n_high", "N"), ("label", "method")],
    "levers": [("n_high", "N"), ("label", "variant")],
}


TABLE_TITLES = {
    "lc": "Learning curves (paper Fig. 2)", "lf": "Low-fidelity size sweep (paper Fig. 3)",
    "ablation": "Ablation of the fidelity-dependent modules (paper Fig. 4)",
    "tl": "MF-CHGNet vs transfer learning vs Δ-learning (paper Fig. 5)",
    "levers": "Levers on the low-fidelity frames in a warm start from CHGNet 0.3.0 (issue 13)",
}


def ordered(rows: list[dict], experiment: str) -> list[dict]:
    return [r for r in rows if r["experiment"] == experiment]


def mae(row: dict | None, t: str) -> float:
    value = None if row is None else row.get(f"{t}_mae_mean")
    return float("nan") if value is None else float(value)


def scatter_note(a: dict, b: dict, t: str) -> str:
    """' (within the seed scatter)' when the means differ by less than the sum of the stds."""
    sa, sb = a.get(f"{t}_mae_std"), b.get(f"{t}_mae_std")
    if sa is None or sb is None or not (math.isfinite(sa) and math.isfinite(sb)):
        return ""
    return " (within the seed scatter)" if abs(mae(a, t) - mae(b, t)) < sa + sb else ""


def compare(better: str, a: dict, other: str, b: dict, t: str, where: str) -> str:
    """'A beats B on forces at X by r× (a vs b unit)' or 'A does not beat B ...', computed from the rows."""
    name, unit = REPORT[t][:2]
    ratio = mae(b, t) / mae(a, t)
    on = f"on {name} {where}".strip()
    verdict = f"beats {other} {on} by {ratio:.2f}×" if ratio > 1 else f"does not beat {other} {on}"
    numbers = f"{mae(a, t):.3g} vs {mae(b, t):.3g} {unit}" + ("" if ratio > 1 else f", {ratio:.2f}×")
    return f"{better} {verdict}: {numbers}{scatter_note(a, b, t)}"


def lc_findings(rows: list[dict]) -> list[str]:
    single = [r for r in rows if r["label"] == "single" and r["n_seeds"]]
    mf = [r for r in rows if r["label"] == "mf" and r["n_seeds"]]
    ns = [r["n_high"] for r in single if find(mf, n_high=r["n_high"])]
    if not ns:
        return []
    out = []
    for n in dict.fromkeys((ns[0], ns[-1])):
        s, m = find(single, n_high=n), find(mf, n_high=n)
        out.append(compare("MF", m, "single-fidelity", s, "f", f"at N={n}") + "; MF has the lower MAE on "
                   + lower_on(m, s, rows) + " there.")
    for label, series in (("single-fidelity", single), ("MF", mf)):
        first, last = series[0], series[-1]
        if first is not last:
            out.append(f"{label}: force MAE {mae(first, 'f'):.3g} → {mae(last, 'f'):.3g} meV/Å from N={first['n_high']} "
                       f"to N={last['n_high']} ({'falls' if mae(last, 'f') < mae(first, 'f') else 'does not fall'}).")
    return out + warm_findings(rows)


def warm_findings(rows: list[dict]) -> list[str]:
    """MF warm-started from CHGNet 0.3.0 vs plain fine-tuning of CHGNet 0.3.0 on the high fidelity, per N:
    what multi-fidelity data buy a user who would otherwise fine-tune the pretrained model."""
    tuned = [r for r in rows if r["label"] == "finetune" and r["n_seeds"]]
    warm = [r for r in rows if r["label"] == "mf-warm" and r["n_seeds"]]
    out = []
    for ft in tuned:
        mw = find(warm, n_high=ft["n_high"])
        if mw is not None:
            out.append(compare("MF from CHGNet 0.3.0", mw, "fine-tuned CHGNet 0.3.0", ft, "f", f"at N={ft['n_high']}")
                       + "; lower MAE on " + lower_on(mw, ft, rows) + ".")
    return out


def lf_findings(rows: list[dict]) -> list[str]:
    out = []
    for n in dict.fromkeys(r["n_high"] for r in rows):
        series = [r for r in rows if r["n_high"] == n and r["n_seeds"]]
        if len(series) < 2:
            continue
        first, last = series[0], series[-1]
        f = [mae(r, "f") for r in series]
        monotone = all(b <= a for a, b in zip(f, f[1:]))
        out.append(f"At N={n}, going from {first['n_low_frames']} to {last['n_low_frames']} low-fidelity frames changes "
                   f"the force MAE from {f[0]:.3g} to {f[-1]:.3g} meV/Å ({f[0] / f[-1]:.2f}×), "
                   f"{'monotonically' if monotone else 'not monotonically'}; energy MAE "
                   f"{mae(first, 'e'):.3g} → {mae(last, 'e'):.3g} meV/atom.")
    return out


def ablation_score(row: dict, ref: dict) -> float:
    """Mean over the measured targets of MAE / MAE of N (the paper's 'comprehensive accuracy'; < 1 = better than N)."""
    ratios = [mae(row, t) / mae(ref, t) for t in TARGETS if math.isfinite(mae(row, t) / mae(ref, t))]
    return float(np.mean(ratios)) if ratios else float("nan")


def ablation_findings(rows: list[dict]) -> list[str]:
    ref = find(rows, label="N")
    rows = [r for r in rows if r["n_seeds"]]
    if ref is None or not ref["n_seeds"] or len(rows) < 2:
        return []
    scores = {r["label"]: ablation_score(r, ref) for r in rows if r["label"] != "N"}
    ranking = sorted(scores, key=scores.get)
    better = [v for v in ranking if scores[v] < 1]
    out = [f"Mean MAE ratio to N over {targets_measured(rows)} (lower is better): "
           + ", ".join(f"{v} {scores[v]:.2f}" for v in ranking) + ".",
           f"Better than N on that score: {', '.join(better) if better else 'none'}; "
           f"worse: {', '.join(v for v in ranking if v not in better) or 'none'}; best: {ranking[0]}"
           + (" (F, all modules, as in the paper)." if ranking[0] == "F" else " (not F, unlike the paper).")]
    full = find(rows, label="F")
    for v in ("C" + BAR, "E" + BAR):
        other = find(rows, label=v)
        if full and other:
            out.append(compare("F", full, v, other, "e", "") + ".")
    return out


def tl_findings(rows: list[dict]) -> list[str]:
    out = []
    ns = list(dict.fromkeys(r["n_high"] for r in rows if r["n_seeds"]))
    for t in ("f", "m"):
        best = []
        for n in ns:
            cand = [r for r in rows if r["n_high"] == n and r["n_seeds"] and math.isfinite(mae(r, t))]
            if cand:
                best.append((n, min(cand, key=lambda r: mae(r, t))["label"]))
        if best:
            wins = [n for n, lab in best if lab == "mf"]
            out.append(f"Lowest {REPORT[t][0]} MAE: " + ", ".join(f"N={n}: {METHOD_NAMES[lab]}" for n, lab in best)
                       + f" (MF best at {len(wins)} of {len(best)} N).")
    if ns:
        mf, tr = find(rows, n_high=ns[0], label="mf"), find(rows, n_high=ns[0], label="transfer")
        if mf and tr and mf["n_seeds"] and tr["n_seeds"]:
            out.append(compare("MF", mf, "transfer learning", tr, "m", f"at N={ns[0]}") + ".")
    return out


def levers_findings(rows: list[dict]) -> list[str]:
    """Each MF lever against plain fine-tuning of CHGNet 0.3.0 on the same N high-fidelity frames."""
    tuned = find(rows, label="finetune")
    if tuned is None or not tuned["n_seeds"]:
        return []
    out = []
    for row in rows:
        if row["method"] == "mf" and row["n_seeds"]:
            out.append(compare(row["label"], row, "fine-tuned CHGNet 0.3.0", tuned, "f", f"at N={row['n_high']}")
                       + "; lower MAE on " + lower_on(row, tuned, rows) + ".")
    return out


FINDINGS = {"lc": lc_findings, "lf": lf_findings, "ablation": ablation_findings, "tl": tl_findings,
            "levers": levers_findings}


def caveats(rows: list[dict], scale: Scale, synthetic: bool) -> list[str]:
    out = []
    if synthetic:
        out.append("**This output was made on synthetic development data labelled by a random tiny MF-CHGNet, not on "
                   "the benchmark data: its numbers mean nothing.**")
    if scale.name == "smoke":
        out.append("Smoke scale: a tiny model trained for a few steps on a handful of frames; it only exercises the "
                   "code, and the comparisons below are noise.")
    seeds = {r["n_seeds"] for r in rows}
    if seeds and min(seeds) < 2:
        out.append("Some configurations have fewer than 2 finished seeds: no scatter is available for them, so "
                   "differences may be noise.")
    missing = sum(1 for r in rows if r["n_seeds"] == 0)
    if missing:
        out.append(f"{missing} configuration(s) have no finished run yet (shown as –).")
    return out


def readme_text(rows: list[dict], scale: Scale, meta: dict, plots: list[str], synthetic: bool) -> str:
    model = ", ".join(f"{k}={v}" for k, v in scale.model.items()) or "paper sizes (64 features, 4 convolutions, 31+31 bases)"
    parts = [
        f"# MF-CHGNet training experiments — scale `{scale.name}`", "",
        scale.labels, "",
        f"Written by `benchmarks/experiments.py` on {meta['written']}. Exact command of this report:", "",
        f"    {meta['command']}", "",
        "All commands that wrote into this folder (`commands.txt`; training runs are resumed and shared, "
        "so each run was trained by one of them):", "",
        *[f"    {line}" for line in meta["commands"]], "",
        f"Scale `{scale.name}`: {scale.about}. Model from scratch: {model}; {meta['epochs']} epochs"
        + (f" ({scale.warm_epochs} for warm starts)" if scale.warm_epochs else "")
        + (f"; MF runs on a fresh random {scale.low_fraction:.0%} of their {scale.low} frames per epoch"
           if scale.low_fraction else "") + "; paper Table 1 "
        f"optimisation (Adam, lr 0.005, cosine, batch 4, Huber, efsm 1:1:0.1:0.1); seeds {meta['seeds']} (the "
        f"seeds column says how many finished); experiments {meta['experiments']}; N values: "
        + "; ".join(f"{name} {list(values)}" for name, values in (("lc", scale.lc_n), ("lf", scale.lf_n_high),
                                                                  ("tl", scale.tl_n), ("ablation", [scale.ablation_n]),
                                                                  ("levers", [scale.levers_n]))
                    if name in meta["experiments"]) + "; "
        f"low-fidelity frames in lc/ablation/tl runs: {count_text(scale.n_low)}; 10 % of each fidelity's frames "
        f"held out for best-epoch selection. Data: `{meta['data']}` "
        f"({', '.join(f'{k} {v}' for k, v in meta['sizes'].items())} frames). Test: the {scale.high} test split "
        f"({meta['sizes'].get('test')} frames) at fidelity {scale.high}. Device: {meta['device']}.", "",
        "Errors are mean ± sample std over seeds (one seed: mean only). Units: energy meV/atom, forces meV/Å "
        "(per component), stress GPa (per 3×3 component), magmoms μB. Δ-learning predicts no magmoms (–). "
        "In the lf sweep n_low = 0 is the single-fidelity model.", "",
        "## What we see", "",
    ]
    notes = caveats(rows, scale, synthetic)
    for name in FINDINGS:
        notes += [f"*{name}*: {s}" for s in FINDINGS[name](ordered(rows, name))]
    parts += [f"- {n}" for n in notes] or ["- no finished runs yet"]
    for name, title in TABLE_TITLES.items():
        if ordered(rows, name):
            parts += ["", f"## {title}", "", markdown_table(ordered(rows, name), TABLE_COLUMNS[name])]
    if plots:
        parts += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    parts += ["", "## Files", "",
              "`runs/<run>.json`: one training run each (config, data hashes, frame counts, test metrics, time); "
              "`results.csv` / `results.json`: the tables above; `work/`: training folders (best models; not tracked). "
              "Rerunning the command skips finished runs; `--report-only` rebuilds this report.", ""]
    return "\n".join(parts)


def report(plan: list[Run], out: Path, scale: Scale, meta: dict, synthetic: bool) -> list[dict]:
    """results.csv / results.json, the plots and README.md from the finished runs of ``plan``."""
    rows = aggregate(plan, RunStore(out))
    write_tables(rows, out, meta)
    plots = make_plots(rows, out, scale)
    (out / "README.md").write_text(readme_text(rows, scale, meta, plots, synthetic))
    return rows

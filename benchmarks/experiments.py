"""The paper's training experiments (sections 3.1-3.3) in one resumable command.

    python benchmarks/experiments.py --scale smoke|cpu|paper|dft|dft-cpu [--experiments lc,lf,ablation,tl,levers]
        [--seeds 0 1 2] [--data benchmarks/data or benchmarks/data/dft] [--out benchmarks/results/experiments_<scale>]
        [--device auto] [--epochs E] [--n-high 50,100] [--threads T] [--dry-run] [--report-only] [--verbose]

Experiments (every configuration once per seed; the seed picks the frame subsets, the initial weights,
the validation split and the batch order):

- ``lc``  learning curves (Fig. 2): single-fidelity "N" (plain CHGNet on N r2scan frames) vs MF-CHGNet
  (modules EMRC, fidelities pbe_u → r2scan, the low-fidelity frames + N r2scan frames).
- ``lf``  low-fidelity size sweep (Fig. 3): MF at fixed N with n_low low-fidelity frames
  (n_low = 0 is the single-fidelity model: no low-fidelity data).
- ``ablation`` (Fig. 4) at one N: N, F (=EMRC), C, E, M, R, C̄ (=EMR), Ē (=MRC), M̄ (=ERC), R̄ (=EMC).
- ``tl``  MF vs transfer learning (Fig. 5) vs Δ-learning across N. Transfer: plain CHGNet pre-trained on
  the low-fidelity frames, fine-tuned on N r2scan frames with embeddings and convolutions frozen.
  Δ: the same low-fidelity model + a Δ model trained on min(N, 200) paired structures (both
  fidelities); Δ predicts no magmoms. The low-fidelity model is trained once per (seed, n_low) and
  shared by transfer and Δ.
- ``levers`` (scales dft, dft-cpu; issue 13) at one N, all warm-started from CHGNet 0.3.0: what sets how much the
  low-fidelity frames pull the model. MF-CHGNet with 5 %, 25 % or all of its low-fidelity frames per epoch (the
  loss weight of the low fidelity, in effect: a share p weights its gradient by p on average, at p of its cost), MF with
  its trunk frozen (embeddings and convolutions fixed, as in transfer learning: only the fidelity embedding,
  readouts and compositions learn), next to fine-tuning CHGNet 0.3.0 with and without that frozen trunk. Runs
  equal to learning-curve runs (fine-tuning; MF at the scale's own share) are shared with them.

Models start from random weights (``init="scratch"``, the paper's setting) with the scale's size, except the
warm-started runs of the dft scales (below), which start from CHGNet 0.3.0 with its size;
optimisation follows the paper's Table 1 (``TrainConfig`` defaults: Adam, lr 0.005, cosine, batch 4,
Huber, efsm weights 1:1:0.1:0.1). N counts all r2scan frames given to a run; 10 % of each fidelity's
frames are held out for best-epoch selection (on r2scan), for every method alike. Errors are measured
on the fixed r2scan test split at fidelity r2scan: MAE and RMSE of energy (meV/atom), forces (meV/Å,
per component), stress (GPa, per 3×3 component) and magmoms (μB).

The code is the package ``benchmarks/paper_experiments`` (plan, data, runs, aggregate, report); this file
is its command line.

Outputs in ``--out``: ``runs/<run>.json`` per training run (written when it finishes; a rerun skips
finished runs, and an interrupted run resumes from its last epoch checkpoint in ``work/``),
``results.csv`` / ``results.json`` (mean ± std over seeds), ``*.png`` plots and ``README.md``.
Identical training runs are shared between experiments (e.g. MF at N=100 is in lc, ablation and tl).
Processes that train disjoint seeds may share one ``--out`` (e.g. ``--seeds 0``, ``--seeds 1`` and
``--seeds 2`` side by side on one GPU); afterwards ``--report-only --seeds 0 1 2`` writes the joint report.

Scales (the command prints its plan and a time estimate first; ``--dry-run`` stops there). Estimates for
the full data (1720 r2scan / 1736 pbe_u / 191 test / 200 paired frames):
- ``smoke``: tiny model, 2 epochs, N ∈ {4, 8}, ≤ 12 low-fidelity frames, 16 test frames, 1 seed, all four
  experiments (18 runs): about a minute on 2 CPU cores on the ``make_data.py --scale smoke`` data.
- ``cpu``: lc (N ∈ {50, 100, 400}) + ablation (N = 100), 32 features / 3 convolutions, 6 epochs,
  200 low-fidelity frames, 3 seeds (42 runs): ≈ 6 h at ≈ 4 structures/s (1 thread, shared 2-core machine).
- ``paper``: 64 features / 4 convolutions, 60 epochs, all N and all low-fidelity frames, 3 seeds, all four
  experiments (114 runs + 3 low-fidelity models): ≈ 37 h on one H200 at ≈ 60 structures/s, hence the
  seed-parallel processes above.
- ``dft``: the real-DFT data of issue 13, paper sizes, 60 epochs, N ∈ {10, 25, 50, 100, all}, 3 seeds, all four
  experiments with the warm-started series (102 runs for 90 gpaw_afm / 300 gpaw_nonmag training frames):
  ≈ 6 h on one H200 at ≈ 60 structures/s, ≈ 120 h on 2 CPU cores.
- ``dft-cpu``: the same data and series sized for this 2-core machine: scratch runs with the ``cpu`` scale's
  reduced model for 40 epochs, warm starts of CHGNet 0.3.0 (its own size) for 15, MF runs on a fresh random 25 %
  of the gpaw_nonmag frames each epoch (TrainConfig.fidelity_fraction), lc + ablation + levers (N = 25), 3 seeds:
  per seed ≈ 1.8 h (lc) + 1.9 h (ablation) + 0.7 h (levers) on one core at the reference speeds (10 / 2.7
  structures/s), lf 0.3 h, tl 1.3 h.

Data (``--data``): scales smoke, cpu and paper read the teacher-labelled LMFP benchmark files written by
``benchmarks/make_data.py`` (labels from CHGNet 0.3.0 = pbe_u and CHGNet r2scan = r2scan, not from DFT).
Scale ``dft`` reads the real-DFT files of ``benchmarks/make_dft_data.py --collect`` in ``benchmarks/data/dft``
(low fidelity gpaw_nonmag, high fidelity gpaw_afm, its fixed 30-frame test split; the paired structures
are those labelled at both). It adds two learning-curve series, plain fine-tuning of pretrained CHGNet
0.3.0 on gpaw_afm ("finetune") and MF-CHGNet warm-started from CHGNet 0.3.0 ("mf-warm"), and runs its
ablation warm-started at N = 50 and the levers at N = 25 (issue 13).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from paper_experiments.data import load_data
from paper_experiments.plan import EXPERIMENTS, SCALES, build_plan, restrict_n, unique_runs
from paper_experiments.report import report
from paper_experiments.runs import Context, RunStore, describe_plan, fmt_duration, resolved_device, run_pending

from mf_calc.train.metrics import REPORT

HERE = Path(__file__).resolve().parent


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python benchmarks/experiments.py", description=__doc__.split("\n\n")[0],
        epilog="Scales: " + "; ".join(f"{s.name}: {s.about}" for s in SCALES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", required=True, choices=list(SCALES))
    p.add_argument("--experiments", help=f"comma-separated of {','.join(EXPERIMENTS)} (default: the scale's)")
    p.add_argument("--seeds", type=int, nargs="+", help="default: the scale's (smoke 0; cpu, paper 0 1 2)")
    p.add_argument("--data", help="folder of the data files (default: the scale's, benchmarks/data or benchmarks/data/dft)")
    p.add_argument("--out", help="output folder (default benchmarks/results/experiments_<scale>)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--epochs", type=int, help="override the scale's epochs (use a new --out)")
    p.add_argument("--n-high", help="comma-separated N values kept from the scale's lc/lf/tl sizes, e.g. 50,100 "
                                    "(runs are shared, so a later run without it only adds the rest)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (1 is fastest on a busy 2-core machine)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the estimate, train nothing")
    p.add_argument("--report-only", action="store_true", help="train nothing; rebuild tables, plots and README")
    p.add_argument("--verbose", action="store_true", help="per-epoch progress of every training run")
    args = p.parse_args(argv)
    if args.experiments:
        args.experiments = [e.strip() for e in args.experiments.split(",") if e.strip()]
        unknown = sorted(set(args.experiments) - set(EXPERIMENTS))
        if unknown:
            p.error(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}")
    if args.n_high:
        try:
            args.n_high = tuple(int(x) for x in args.n_high.split(",") if x.strip())
        except ValueError:
            p.error(f"--n-high must be comma-separated integers, got {args.n_high!r}")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    """Plan, train what is not finished, report. Returns {"trained", "skipped", "out", "rows"}."""
    command = "python benchmarks/experiments.py " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    args = parse_args(argv)
    scale = SCALES[args.scale]
    if args.epochs:
        scale = replace(scale, epochs=args.epochs)
    if args.n_high:
        scale = restrict_n(scale, args.n_high)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    experiments = args.experiments or list(scale.experiments)
    seeds = tuple(args.seeds) if args.seeds else scale.seeds
    out = Path(args.out) if args.out else HERE / "results" / f"experiments_{scale.name}"
    try:
        data = load_data(args.data or HERE / scale.data, scale, paired="tl" in experiments)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    plan = build_plan(experiments, scale, seeds, data.sizes)
    store = RunStore(out)
    ctx = Context(work_dir=out / "work", device=args.device, progress=args.verbose)
    pending = [r for r in unique_runs(plan) if not store.finished(r, scale, data, args.device)]
    print(describe_plan(plan, pending, scale, data, args.device, ctx), flush=True)
    if args.dry_run:
        return {"trained": 0, "skipped": len(unique_runs(plan)) - len(pending), "out": out, "rows": []}
    out.mkdir(parents=True, exist_ok=True)
    (out / ".gitignore").write_text("work/\n")
    with open(out / "commands.txt", "a") as fh:  # every command that wrote into this folder, in order
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {command}\n")
    start = time.perf_counter()
    trained = 0 if args.report_only else run_pending(pending, data, scale, ctx, store)
    meta = {"scale": scale.name, "command": command, "experiments": experiments, "seeds": list(seeds),
            "epochs": scale.epochs, "warm_epochs": scale.warm_epochs, "low_fraction": scale.low_fraction,
            "model": scale.model, "data": str(data.root), "sizes": data.sizes,
            "synthetic_data": data.synthetic, "device": resolved_device(args.device),
            "written": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(),
            "commands": (out / "commands.txt").read_text().splitlines(),
            "units": {t: unit for t, (_, unit, _) in REPORT.items()}, "labels": scale.labels.strip("*")}
    rows = report(plan, out, scale, meta, data.synthetic)
    print(f"{trained} run(s) trained in {fmt_duration(time.perf_counter() - start)}, "
          f"{len(unique_runs(plan)) - len(pending)} skipped (finished before); results in {out}", flush=True)
    return {"trained": trained, "skipped": len(unique_runs(plan)) - len(pending), "out": out, "rows": rows}


if __name__ == "__main__":
    main()

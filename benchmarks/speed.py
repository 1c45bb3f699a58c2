"""Speed of MFCalculator vs chgnet's CHGNetCalculator on the same weights (CHGNet 0.3.0), in one run.

For 56- and 224-atom LMFP cells: single-point energy+forces+stress+magmoms, forces only (a calculator never asked
for stress, as in NVT MD), NVT (Nose-Hoover chain) and NPT (MTK, anisotropic) MD steps/s, peak memory (max RSS of a fresh
process per case), and the largest difference between the two calculators' results.

    python benchmarks/speed.py [--steps 200] [--threads 2] [--rounds 3] [--out benchmarks/results/speed.md]
    python benchmarks/speed.py --check 3.0      # before a release: exit 1 when a speed-up is below 3.0x

Quote the ratios (ours / chgnet), which are measured in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing as mp
import platform
import resource
import sys
import time

import numpy as np

CELLS = {56: (1, 1, 2), 224: (2, 2, 2)}
SECONDS_PER_CALL, STEPS_PER_S = ("efsm_s", "f_s"), ("nvt_steps_per_s", "npt_steps_per_s")


def _make_calc(kind: str):
    if kind == "chgnet":
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator

        with contextlib.redirect_stdout(io.StringIO()):
            return CHGNetCalculator(CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False), use_device="cpu")
    from mf_calc import MFCalculator, load_model

    return MFCalculator(load_model("chgnet-0.3.0"))


def _atoms(n_atoms: int):
    from mf_calc import lmfp

    atoms = lmfp(x_li=1.0, y_mn=0.5, supercell=CELLS[n_atoms], seed=0)
    atoms.rattle(0.02, seed=1)
    return atoms


def _case(kind: str, n_atoms: int, steps: int, threads: int, queue) -> None:
    import torch
    from ase import units
    from ase.calculators.calculator import all_changes
    from ase.md.nose_hoover_chain import MTKNPT, NoseHooverChainNVT
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    torch.set_num_threads(threads)
    calc = _make_calc(kind)
    atoms = _atoms(n_atoms)
    res = {}

    def per_call(props, reps):
        """Median seconds per call (a median: one call slowed by the machine does not move it)."""
        calc.calculate(atoms, props, all_changes)  # warm-up
        times = []
        for _ in range(reps):
            atoms.positions[0, 0] += 1e-4
            t0 = time.perf_counter()
            calc.calculate(atoms, props, all_changes)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    reps = 30 if n_atoms < 100 else 7
    res["efsm_s"] = per_call(["energy", "forces", "stress", "magmoms"], reps)
    res["pred"] = {k: np.array(calc.results[k]) for k in ("energy", "forces", "stress", "magmoms")}
    calc = _make_calc(kind)  # one never asked for stress (MFCalculator adds the stress to every force call after that)
    res["f_s"] = per_call(["forces"], reps)

    for name, make in {
        "nvt": lambda a: NoseHooverChainNVT(a, 1 * units.fs, temperature_K=300, tdamp=100 * units.fs),
        "npt": lambda a: MTKNPT(a, 1 * units.fs, temperature_K=300, pressure_au=0.0, tdamp=100 * units.fs,
                                pdamp=1000 * units.fs),
    }.items():
        md_atoms = _atoms(n_atoms)
        md_atoms.calc = _make_calc(kind)
        MaxwellBoltzmannDistribution(md_atoms, temperature_K=300, rng=np.random.default_rng(0))
        dyn = make(md_atoms)
        dyn.run(3)  # warm-up
        t0 = time.perf_counter()
        dyn.run(steps)
        res[f"{name}_steps_per_s"] = steps / (time.perf_counter() - t0)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(res)


def _voigt(stress):
    from ase.stress import full_3x3_to_voigt_6_stress

    stress = np.asarray(stress)
    return full_3x3_to_voigt_6_stress(stress) if stress.shape == (3, 3) else stress


def alternating(n_atoms, steps, threads, rounds):
    """(ours, chgnet): each calculator run ``rounds`` times, alternating, each metric the median over its rounds
    (a shared machine's slow spells then fall on both sides); results and peak memory from the first round."""
    runs = [[run_case(kind, n_atoms, steps, threads) for kind in ("ours", "chgnet")] for _ in range(rounds)]
    medians = []
    for k in range(2):
        res = dict(runs[0][k])
        for key in SECONDS_PER_CALL + STEPS_PER_S:
            res[key] = float(np.median([run[k][key] for run in runs]))
        medians.append(res)
    return medians


def run_case(kind, n_atoms, steps, threads):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_case, args=(kind, n_atoms, steps, threads, queue))
    proc.start()
    res = queue.get()
    proc.join()
    summary = {k: round(v, 4) for k, v in res.items() if isinstance(v, float)}
    print(f"[{kind} {n_atoms} atoms] {summary}", flush=True)
    return res


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="MD steps per integrator (default 200)")
    parser.add_argument("--steps-large", type=int, default=None, help="MD steps for 224 atoms (default: --steps)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[56, 224])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per calculator (median; default 3)")
    parser.add_argument("--out", default="benchmarks/results/speed.md")
    parser.add_argument("--check", type=float, default=None, metavar="RATIO",
                        help="exit with status 1 when a single-point or MD speed-up is below RATIO")
    args = parser.parse_args(argv)

    rows = []
    for n in args.sizes:
        steps = args.steps if n < 100 else (args.steps_large or args.steps)
        ours, ref = alternating(n, steps, args.threads, args.rounds)
        diff = {
            "energy (eV/atom)": abs(ours["pred"]["energy"] - ref["pred"]["energy"]) / n,
            "forces (eV/Å)": np.abs(ours["pred"]["forces"] - ref["pred"]["forces"]).max(),
            "stress (eV/Å³)": np.abs(_voigt(ours["pred"]["stress"]) - _voigt(ref["pred"]["stress"])).max(),
            "magmoms (μB)": np.abs(ours["pred"]["magmoms"] - ref["pred"]["magmoms"]).max(),
        }
        rows.append((n, steps, ours, ref, diff))

    speedups = {(n, key): (ref[key] / ours[key] if key in SECONDS_PER_CALL else ours[key] / ref[key])
                for n, _, ours, ref, _ in rows for key in SECONDS_PER_CALL + STEPS_PER_S}
    lines = [
        "# MFCalculator vs CHGNetCalculator (same CHGNet 0.3.0 weights)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, torch threads = {args.threads}; "
        f"command: `python benchmarks/speed.py --steps {args.steps}"
        + (f" --steps-large {args.steps_large}" if args.steps_large else "") + f" --threads {args.threads}"
        f" --rounds {args.rounds}`.",
        f"Each calculator ran {args.rounds} time(s) in fresh processes, alternating with the other; times are medians "
        "over the rounds (single points: the median call of each round). Ratios are ours/chgnet speed from the same "
        "run (higher is better).",
        "",
        "| atoms | metric | chgnet | mf_calc | speed-up |",
        "|---|---|---|---|---|",
    ]
    for n, steps, ours, ref, diff in rows:
        for key, label, inverse in [
            ("efsm_s", "single point e+f+s+m (s/call)", True),
            ("f_s", "forces only (s/call)", True),
            ("nvt_steps_per_s", f"NVT MD, {steps} steps (steps/s)", False),
            ("npt_steps_per_s", f"NPT MD (MTK, anisotropic), {steps} steps (steps/s)", False),
            ("peak_rss_mb", "peak memory, whole process (MB)", True),
        ]:
            ratio = ref[key] / ours[key] if inverse else ours[key] / ref[key]
            lines.append(f"| {n} | {label} | {ref[key]:.4g} | {ours[key]:.4g} | {ratio:.2f}× |")
        diffs = ", ".join(f"{k}: {v:.1e}" for k, v in diff.items())
        lines.append(f"| {n} | max difference of results | {diffs} | | |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as fh:
        fh.write(text)
    if args.check is not None:
        slow = {k: v for k, v in speedups.items() if v < args.check}
        for (n, key), ratio in slow.items():
            print(f"FAIL: {n} atoms, {key}: {ratio:.2f}x < {args.check}x", file=sys.stderr)
        if slow:
            sys.exit(1)
        print(f"check passed: every speed-up >= {args.check}x")


if __name__ == "__main__":
    main()

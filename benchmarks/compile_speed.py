"""MD speed of MFCalculator with and without ``compile=True`` (torch.compile), in one process, alternating.

    python benchmarks/compile_speed.py [--threads 1] [--rounds 3] [--device cpu] [--out benchmarks/results/compile_speed.md]

lmfp-mf in float32, ASE Langevin NVT at 300 K, 1 fs, Li0.5(Mn0.5Fe0.5)PO4 cells of 52 and 208 atoms. The compiled
calculator's first steps compile (reported); then each round runs the eager and the compiled calculator in turn
on their own copies of the cell, so both see the same machine load. Quote the ratio.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

CELLS = {52: ((1, 1, 2), 20), 208: ((2, 2, 2), 5)}  # atoms: (supercell, MD steps per round)


def md_seconds(atoms, steps: int) -> float:
    from ase import units
    from ase.md.langevin import Langevin

    dyn = Langevin(atoms, 1.0 * units.fs, temperature_K=300, friction=0.01, rng=np.random.default_rng(0))
    start = time.perf_counter()
    dyn.run(steps)
    return time.perf_counter() - start


def compare(n_atoms: int, args) -> dict:
    """Compile time (s) and NVT steps/s of the eager and the compiled calculator at ``n_atoms``."""
    from mf_calc import MFCalculator, lmfp, load_model

    supercell, steps = CELLS[n_atoms]
    model = load_model("lmfp-mf")
    cell = lmfp(x_li=0.5, y_mn=0.5, supercell=supercell, seed=0)
    cell.rattle(0.02, seed=1)
    eager, compiled = cell.copy(), cell.copy()
    eager.calc = MFCalculator(model, device=args.device)
    compiled.calc = MFCalculator(model, device=args.device, compile=True)
    compile_s = md_seconds(compiled, 2)  # the first steps compile
    md_seconds(eager, 2)
    seconds = {"eager": 0.0, "compiled": 0.0}
    for _ in range(args.rounds):
        seconds["eager"] += md_seconds(eager, steps)
        seconds["compiled"] += md_seconds(compiled, steps)
    rates = {name: args.rounds * steps / s for name, s in seconds.items()}
    return {"atoms": n_atoms, "compile_s": compile_s, **rates, "ratio": rates["compiled"] / rates["eager"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results/compile_speed.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for n in CELLS:
        rows.append(compare(n, args))
        print(rows[-1], flush=True)
    lines = [f"# torch.compile: MD speed of lmfp-mf with and without `compile=True` ({args.device})", "",
             f"{platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
             f"{datetime.date.today().isoformat()}; command: `python benchmarks/compile_speed.py "
             + " ".join(sys.argv[1:]) + "`. float32, ASE Langevin NVT 300 K; eager and compiled alternate, "
             f"{args.rounds} rounds. The first call compiles (the second size reuses the compiled code).", "",
             "| atoms | first 2 steps, compiled (s) | eager (steps/s) | compiled (steps/s) | speed-up |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['atoms']} | {r['compile_s']:.1f} | {r['eager']:.3g} | {r['compiled']:.3g} | "
                     f"{r['ratio']:.2f}× |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

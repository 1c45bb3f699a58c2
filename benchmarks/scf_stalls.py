"""How long GPAW SCFs go without halving their density error: the evidence for ``--give-up N`` (mf_calc.label.stall).

    python benchmarks/scf_stalls.py "benchmarks/data/dft/workflow_bench/raw/*/logs/*.txt" [more globs]

Reads GPAW text logs (the label pipeline's ``logs/``), splits them into SCFs (an iteration number that does not
grow starts one) and prints, per SCF, the iterations, the longest stretch of iterations in which the density error
did not halve (what ``GiveUpStalled`` counts) and the last density error (log10, per valence electron); then the
longest stretch among SCFs that converged (the last error below GPAW's default 1e-4), which a give-up window must
exceed.
"""

from __future__ import annotations

import argparse
import glob
import math
import re
import sys

ITERATION = re.compile(r"\|iter:\s*(\d+)\|")


def scfs(path: str) -> list[list[float]]:
    """The log10 density errors of every SCF in a GPAW log, in order (an iteration number that does not grow
    starts the next SCF; iterations without a density error, such as the first, are skipped)."""
    out: list[list[float]] = []
    previous = math.inf
    with open(path, errors="ignore") as fh:
        for line in fh:
            match = ITERATION.match(line)
            if not match:
                continue
            iteration = int(match.group(1))
            if iteration <= previous:
                out.append([])
            previous = iteration
            density = line.split("|")[5].strip().rstrip("c")  # columns: iter, time, energy, eigst, dens
            if density:
                out[-1].append(float(density))
    return [errors for errors in out if errors]


def longest_stall(log10_errors: list[float]) -> int:
    """Longest run of iterations without the density error halving from the best so far."""
    best, since, longest = math.inf, 0, 0
    for value in log10_errors:
        if 10**value < best / 2:
            best, since = 10**value, 0
        else:
            since += 1
        longest = max(longest, since)
    return longest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", help="globs of GPAW text logs")
    args = ap.parse_args(argv)
    converged = []
    print("| log | SCF | iterations | longest stretch without halving | last log10 density error |\n|---|---|---|---|---|")
    for path in sorted({p for pattern in args.logs for p in glob.glob(pattern)}):
        for k, errors in enumerate(scfs(path)):
            stall = longest_stall(errors)
            print(f"| {path} | {k} | {len(errors)} | {stall} | {errors[-1]:+.2f} |")
            if errors[-1] < -4:
                converged.append(stall)
    if converged:
        print(f"\nLongest stretch in the {len(converged)} converged SCFs: {max(converged)} iterations")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The graph pipeline's neighbour search (vesin, ``mf_calc.model.device_graph.candidate_pairs``) against pymatgen's
``find_points_in_spheres`` (what chgnet uses, and this package used before 2026-12-07), side by side in one run:
the same unordered pairs within cutoff + skin, and the time of one search. Li0.5(Mn0.5Fe0.5)PO4 cells.

    python benchmarks/neighbor_search.py [--device cuda] [--threads 1]   # -> benchmarks/results/neighbor_search.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pymatgen.optimization.neighbors import find_points_in_spheres
from vesin_torch import NeighborList

from mf_calc import lmfp
from mf_calc.model.device_graph import candidate_pairs

CELLS = {104: (1, 2, 2), 832: (2, 4, 4), 6656: (4, 8, 8)}
RADIUS = 7.0  # Å: the shipped models' cutoff (6 Å) + the calculator's skin (1 Å)


def pymatgen_search(positions: np.ndarray, cell: np.ndarray):
    """Every directed pair within RADIUS: i, j, image, distance."""
    return find_points_in_spheres(positions, positions, r=RADIUS, pbc=np.ones(3, dtype=np.int64), lattice=cell,
                                  tol=1e-8)


def unordered(i, j, images) -> set:
    """{(i, j, image)} with i < j, or i == j and the image's first non-zero component positive (an atom with
    itself, which pymatgen lists, left out)."""
    keys = {_key(*row) for row in zip(i.tolist(), j.tolist(), np.asarray(images).astype(int).tolist())}
    return {k for k in keys if k[0] != k[1] or any(k[2:])}


def _key(i: int, j: int, image) -> tuple:
    first = next((c for c in image if c != 0), 0)
    if i > j or (i == j and first < 0):
        return (j, i, *(-c for c in image))
    return (i, j, *image)


def best_of(fn, reps: int) -> float:
    """Shortest of ``reps`` calls, ms."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def measure(n_atoms: int, device: str, reps: int) -> dict:
    atoms = lmfp(x_li=0.5, y_mn=0.5, supercell=CELLS[n_atoms], seed=0)
    positions, cell = atoms.positions, atoms.cell.array
    search = NeighborList(cutoff=RADIUS, full_list=False, n_threads=torch.get_num_threads())
    args = (torch.as_tensor(positions, device=device), torch.as_tensor(cell, device=device),
            torch.ones(3, dtype=torch.bool, device=device))

    def vesin():
        out = candidate_pairs(search, *args)
        if device != "cpu":
            torch.cuda.synchronize()
        return out

    i, j, img = (t.cpu().numpy() for t in vesin())
    same = unordered(i, j, img) == unordered(*pymatgen_search(positions, cell)[:3])
    return {"atoms": n_atoms, "pairs": len(i), "same": same, "vesin_ms": best_of(vesin, reps),
            "pymatgen_ms": best_of(lambda: pymatgen_search(positions, cell), reps)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/neighbor_search.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [measure(n, args.device, args.reps) for n in CELLS]
    lines = [f"# Neighbour search within {RADIUS} Å: vesin ({args.device}) vs pymatgen (CPU)", "",
             f"`python benchmarks/neighbor_search.py {' '.join(sys.argv[1:])}`; {args.threads} thread(s), best of "
             f"{args.reps}; vesin returns each pair once, pymatgen both ways.", "",
             "| atoms | unordered pairs | same pairs | vesin (ms) | pymatgen (ms) |", "|---|---|---|---|---|"]
    lines += [f"| {r['atoms']:,} | {r['pairs']:,} | {r['same']} | {r['vesin_ms']:.1f} | {r['pymatgen_ms']:.1f} |"
              for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0 if all(r["same"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

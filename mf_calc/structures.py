"""Structures in: the olivine Li_x Mn_y Fe_(1-y) PO4 (LMFP) builder, and reading structure files with errors
that name the file (:func:`read_structure`, :func:`read_structures`).

Cells are built with :func:`ase.spacegroup.crystal` in space group Pnma
(No. 62, standard setting); the Li channels run along b ([010]).
All lengths are in Angstrom.
"""

from __future__ import annotations

import math
from numbers import Integral
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.spacegroup import crystal

# LiFePO4 experimental lattice (Angstrom), Janssen et al. (2013).
LFP_A, LFP_B, LFP_C = 10.3244, 6.0064, 4.6901
# LiMnPO4 experimental lattice (Angstrom), approximate literature values
# (e.g. Yamada et al., J. Electrochem. Soc. 2001, Li(Mn_y Fe_1-y)PO4 series).
LMP_A, LMP_B, LMP_C = 10.45, 6.10, 4.74

# Wyckoff positions of LiFePO4 in Pnma (No. 62, standard setting).
OLIVINE_SYMBOLS = ("Li", "Fe", "P", "O", "O", "O")
OLIVINE_BASIS = (
    (0.0, 0.0, 0.0),  # Li  4a
    (0.282, 0.25, 0.975),  # Fe  4c
    (0.095, 0.25, 0.418),  # P   4c
    (0.097, 0.25, 0.743),  # O1  4c
    (0.457, 0.25, 0.206),  # O2  4c
    (0.166, 0.046, 0.285),  # O3  8d
)
_ORDER = {"Li": 0, "Mn": 1, "Fe": 1, "P": 2, "O": 3}


def olivine_cell(a: float = LFP_A, b: float = LFP_B, c: float = LFP_C) -> Atoms:
    """Return the 28-atom orthorhombic LiFePO4 unit cell (a, b, c in Angstrom).

    Atoms are grouped by element: Li, Fe, P, O.
    """
    atoms = crystal(
        OLIVINE_SYMBOLS,
        basis=OLIVINE_BASIS,
        spacegroup=62,
        cellpar=[a, b, c, 90.0, 90.0, 90.0],
        primitive_cell=False,
    )
    atoms.pbc = True
    return atoms


def _count(name: str, frac: float, n_sites: int, what: str) -> int:
    """Convert a site fraction into an exact integer count, or raise ValueError."""
    frac = float(frac)
    if not (0.0 <= frac <= 1.0):
        raise ValueError(f"{name}={frac:g} must be in [0, 1]")
    n = frac * n_sites
    k = round(n)
    if abs(n - k) > 1e-6:
        lo, hi = math.floor(n) / n_sites, math.ceil(n) / n_sites
        raise ValueError(
            f"{name}={frac:g} is not representable with {n_sites} {what} sites; "
            f"nearest: {lo:g} or {hi:g}"
        )
    return int(k)


def check_supercell(supercell) -> tuple[int, int, int]:
    """The repetitions (a sequence or array of three positive integers) as a tuple of ints; ValueError else."""
    values = np.ravel(supercell).tolist() if isinstance(supercell, np.ndarray) else supercell
    if (
        not isinstance(values, (tuple, list))
        or len(values) != 3
        or not all(isinstance(n, Integral) and not isinstance(n, bool) and n > 0 for n in values)
    ):
        raise ValueError(f"supercell must be three positive integers, got {supercell!r}")
    return tuple(int(n) for n in values)


def lmfp(
    x_li: float = 1.0,
    y_mn: float = 0.0,
    supercell=(1, 1, 2),
    seed: int | None = 0,
    lattice: str = "vegard",
) -> Atoms:
    """Build an olivine Li_x Mn_y Fe_(1-y) PO4 supercell.

    Parameters
    ----------
    x_li : fraction of Li sites kept (the rest are removed: delithiation).
    y_mn : fraction of transition-metal sites occupied by Mn (the rest Fe).
        Both fractions must give an exact integer number of sites.
    supercell : 3-tuple of positive ints, repetitions along a, b, c.
    seed : seed for ``numpy.random.default_rng`` choosing the Mn and Li sites.
    lattice : ``"vegard"`` interpolates a, b, c (Angstrom) linearly in y_mn
        between LiFePO4 and LiMnPO4; ``"lfp"`` always uses LiFePO4.

    The lattice is not adjusted for delithiation; relax the cell afterwards.
    Atoms are grouped as Li, Mn/Fe (in site order), P, O; ``pbc=True``.
    """
    supercell = check_supercell(supercell)
    if lattice not in ("vegard", "lfp"):
        raise ValueError(f"lattice must be 'vegard' or 'lfp', got {lattice!r}")

    n_cells = supercell[0] * supercell[1] * supercell[2]
    n_sites = 4 * n_cells  # Li sites == transition-metal sites
    n_mn = _count("y_mn", y_mn, n_sites, "transition-metal")
    n_li = _count("x_li", x_li, n_sites, "Li")

    y = float(y_mn) if lattice == "vegard" else 0.0
    a, b, c = (lfp + y * (lmp - lfp) for lfp, lmp in
               ((LFP_A, LMP_A), (LFP_B, LMP_B), (LFP_C, LMP_C)))
    atoms = olivine_cell(a, b, c).repeat(supercell)
    rank = [_ORDER[s] for s in atoms.get_chemical_symbols()]
    atoms = atoms[np.argsort(rank, kind="stable")]

    rng = np.random.default_rng(seed)
    tm = np.flatnonzero(atoms.numbers == 26)
    li = np.flatnonzero(atoms.numbers == 3)
    mn_sites = np.sort(rng.choice(tm, size=n_mn, replace=False))
    keep_li = rng.choice(li, size=n_li, replace=False)
    atoms.numbers[mn_sites] = 25
    del atoms[np.setdiff1d(li, keep_li)]

    atoms.pbc = True
    atoms.info.update(
        x_li=float(x_li),
        y_mn=float(y_mn),
        supercell=list(supercell),
        seed=None if seed is None else int(seed),
    )
    return atoms


def read_structure(path, index=-1) -> Atoms:
    """Read one structure (the last frame by default) with ``ase.io.read``.

    Raises FileNotFoundError when the file is missing and ValueError (naming the file) when ASE
    cannot parse it or it holds no atoms.
    """
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"structure file {str(path)!r} not found")
    try:
        atoms = read(path, index=index)
    except Exception as exc:  # ase raises many different types for bad files
        raise ValueError(f"cannot read structure file {str(path)!r}: {type(exc).__name__}: {exc}") from None
    if isinstance(atoms, list):
        atoms = atoms[-1] if atoms else None
    if atoms is None or len(atoms) == 0:
        raise ValueError(f"structure file {str(path)!r} holds no atoms")
    if not all(atoms.pbc) or atoms.cell.rank < 3:
        raise ValueError(f"structure in {str(path)!r} is not a periodic 3-D crystal (pbc={atoms.pbc.tolist()})")
    return atoms


def read_structures(path) -> list[Atoms]:
    """All frames of a trajectory file (.traj, .extxyz, ...), with the same error rules as read_structure."""
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trajectory file {str(path)!r} not found")
    try:
        frames = read(path, index=":")
    except Exception as exc:
        raise ValueError(f"cannot read trajectory file {str(path)!r}: {type(exc).__name__}: {exc}") from None
    if not frames:
        raise ValueError(f"trajectory file {str(path)!r} holds no frames")
    return list(frames)

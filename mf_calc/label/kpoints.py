"""k-points of a supercell at the k-point density of the cell a spec's Monkhorst-Pack grid was chosen for.

A spec's grid (``settings["kpts"] = {"size": [n1, n2, n3]}``, optionally ``"gamma": true``) belongs to one cell,
e.g. the 28-atom olivine cell. A frame that is an (m1, m2, m3) supercell of that cell (``atoms.info["supercell"]``)
is labelled with the grid's points folded into the supercell's Brillouin zone, K = m·k (mod 1): the supercell
then samples exactly the primitive points k = (K + j)/m, so a perfect supercell has the energy per atom of the
cell, at half (or less) the cost of reusing the grid. Where m_i does not divide n_i the folded set samples a
superset of the grid's points along that axis (denser than the cell's labels there, never sparser): labels of
another k-point convention (``folds_exactly`` says which).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase.dft.kpoints import monkhorst_pack

from mf_calc.structures import check_supercell


def _size(kpts: dict) -> np.ndarray:
    """The grid size of a GPAW ``{"size": ..., "gamma": ...}`` Monkhorst-Pack setting; ValueError for others."""
    unknown = set(kpts) - {"size", "gamma"}
    if unknown or "size" not in kpts:
        raise ValueError(f"supercell k-points need a Monkhorst-Pack setting {{'size': [n1, n2, n3], 'gamma': bool}}, "
                         f"got {kpts!r}")
    return np.array(kpts["size"], dtype=int)


def _grid(kpts: dict) -> np.ndarray:
    """The scaled k-points of a GPAW Monkhorst-Pack setting."""
    size = _size(kpts)
    points = monkhorst_pack(size)
    if kpts.get("gamma", False):  # GPAW's gamma=True shifts even grids onto Γ
        points = points + (size % 2 == 0) / (2.0 * size)
    return points


def _wrap(points: np.ndarray) -> np.ndarray:
    """Scaled k-points in [0, 1), rounded so that equal points compare equal."""
    return np.round(points % 1.0, 10) % 1.0


def folded_kpoints(kpts: dict, supercell: Sequence[int]) -> np.ndarray:
    """The scaled k-points (shape (nk, 3)) of an (m1, m2, m3) ``supercell`` that sample the Monkhorst-Pack
    ``kpts`` of its cell."""
    repeat = np.array(check_supercell(supercell))
    folded = _wrap(_grid(kpts) * repeat)
    unique = np.unique(folded, axis=0)
    return (unique + 0.5) % 1.0 - 0.5


def folds_exactly(kpts: dict, supercell: Sequence[int]) -> bool:
    """Whether the ``supercell``'s folded points sample exactly the cell's grid (each m_i divides n_i), so its
    labels are those of the cell's convention."""
    return all(n % m == 0 for n, m in zip(_size(kpts).tolist(), check_supercell(supercell)))


def sampled_cell_kpoints(points: np.ndarray, supercell: Sequence[int]) -> np.ndarray:
    """The scaled k-points of the cell that supercell ``points`` sample: (K + j)/m for j in 0..m-1 per axis."""
    repeat = np.array(supercell, dtype=int)
    shifts = np.stack(np.meshgrid(*(np.arange(m) for m in repeat), indexing="ij"), -1).reshape(-1, 3)
    cell_points = (points[:, None, :] + shifts[None]) / repeat
    return np.unique(_wrap(cell_points.reshape(-1, 3)), axis=0)


def frame_supercell(atoms) -> tuple[int, int, int] | None:
    """``atoms.info["supercell"]`` as three positive ints, None where the frame does not say."""
    value = atoms.info.get("supercell")
    return None if value is None else check_supercell(value)


def supercell_settings(settings: dict, supercell: Sequence[int] | None) -> dict:
    """GPAW ``settings`` with ``kpts`` folded for ``supercell`` (unchanged for None or (1, 1, 1))."""
    if supercell is None or tuple(int(m) for m in supercell) == (1, 1, 1) or "kpts" not in settings:
        return settings
    return dict(settings) | {"kpts": folded_kpoints(settings["kpts"], supercell)}

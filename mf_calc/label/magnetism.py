"""Initial magnetic moments (μB per atom) for spin-polarised DFT: the magnetic start of a labelling spec.

- ``afm-olivine``: the antiferromagnetic order of olivine LiMPO4 (Santoro & Newnham 1967): a transition-metal
  site in the lower half of each olivine cell along b (fractional y < 1/2 of that cell) points up, the
  others down. Cells repeated along b are recognised from the b length (≈ 6.0 Å per olivine cell).
- ``ferro``: every transition-metal site up.
- ``none``: no moments (non-spin-polarised run).
- ``input``: the frame's own ``initial_magmoms`` (e.g. set with ``atoms.set_initial_magnetic_moments``).

High-spin magnitudes: Fe 4, Mn 5 (as in the paper's set-up), Co 3, Ni 2 μB.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

HIGH_SPIN = {"Fe": 4.0, "Mn": 5.0, "Co": 3.0, "Ni": 2.0}
OLIVINE_B = 6.0  # Å, olivine b lattice parameter (LiFePO4 6.01, LiMnPO4 6.10)
MAGNETIC_STARTS = ("afm-olivine", "ferro", "none", "input")


def initial_magmoms(atoms: Atoms, start: str) -> np.ndarray | None:
    """Initial moments for ``start`` (one of ``MAGNETIC_STARTS``), or None for a non-spin-polarised run."""
    if start not in MAGNETIC_STARTS:
        raise ValueError(f"unknown magnetic start {start!r}; choose one of {list(MAGNETIC_STARTS)}")
    if start == "none":
        return None
    if start == "input":
        moments = atoms.get_initial_magnetic_moments()
        if not np.any(moments):
            raise ValueError("magnetic start 'input' needs non-zero initial_magmoms on the frame")
        return moments
    size = np.array([HIGH_SPIN.get(symbol, 0.0) for symbol in atoms.get_chemical_symbols()])
    if not size.any():
        raise ValueError(f"magnetic start {start!r}: no magnetic element ({sorted(HIGH_SPIN)}) in "
                         f"{atoms.get_chemical_formula()}")
    if start == "ferro":
        return size
    n_b = max(1, round(atoms.cell.lengths()[1] / OLIVINE_B))
    y_in_cell = (atoms.get_scaled_positions(wrap=True)[:, 1] * n_b) % 1.0
    return np.where(y_in_cell < 0.5, size, -size)

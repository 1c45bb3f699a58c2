"""A labelled structure of one fidelity: the unit the readers produce.

Units (ASE conventions throughout):

* energy  -- total energy of the cell, eV
* forces  -- eV/Å, shape (n_atoms, 3)
* stress  -- eV/Å^3, shape (6,), ASE sign (positive = tensile, i.e. the
  negative of VASP's "pressure" sign) and Voigt order xx yy zz yz xz xy
* magmoms -- μB per atom, shape (n_atoms,)

A label that is absent from the source data is ``None`` -- never zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import ase
import numpy as np
from ase.stress import full_3x3_to_voigt_6_stress

from mf_calc.constants import MAX_Z

#: Largest atomic number CHGNet's atom embedding covers (Pu).


class DataError(ValueError):
    """User data cannot be turned into valid frames; the message names the
    file (and frame, as ``path:index``) and the problem."""


@dataclass
class Frame:
    """One structure with its (possibly partial) DFT labels.

    Attributes:
        atoms: structure only; no calculator is attached (a calculator on the
            given object is dropped by taking a copy).
        fidelity: name of the DFT fidelity (e.g. ``"pbe_u"``, ``"r2scan"``).
        energy: total energy, eV, or None.
        forces: (n_atoms, 3) array, eV/Å, or None.
        stress: (6,) array, eV/Å^3, ASE sign, Voigt order xx yy zz yz xz xy,
            or None. A (3, 3) tensor is converted to Voigt on construction.
        magmoms: (n_atoms,) array of magnetic moments, μB, or None.
        source: ``"path:frame_index"``, used in error messages.
    """

    atoms: ase.Atoms
    fidelity: str
    energy: float | None
    forces: np.ndarray | None
    stress: np.ndarray | None
    magmoms: np.ndarray | None
    source: str

    def __post_init__(self) -> None:
        """Normalise types: drop any calculator, labels to float arrays,
        3x3 stress to Voigt 6. Shapes and values are checked by validate()."""
        if self.atoms.calc is not None:
            self.atoms = self.atoms.copy()  # Atoms.copy() does not copy calc
        try:
            if self.energy is not None:
                self.energy = float(np.asarray(self.energy).item())
            for name in ("forces", "stress", "magmoms"):
                value = getattr(self, name)
                if value is not None:
                    setattr(self, name, np.array(value, dtype=float))
        except (TypeError, ValueError) as err:
            raise DataError(f"{self.source}: non-numeric label: {err}") from err
        if self.stress is not None and self.stress.shape == (3, 3):
            self.stress = full_3x3_to_voigt_6_stress(self.stress)

    def validate(self) -> Frame:
        """Raise DataError naming ``source`` for an invalid frame; return self.

        Checks: non-empty structure, atomic numbers in 1..94 (CHGNet's
        embedding), finite positions/cell, label shapes, finite labels and a
        non-empty fidelity name.
        """
        n = len(self.atoms)

        def fail(problem: str) -> None:
            raise DataError(f"{self.source}: {problem}")

        if n == 0:
            fail("empty structure (0 atoms)")
        z = self.atoms.numbers
        bad = sorted(set(z[(z < 1) | (z > MAX_Z)].tolist()))
        if bad:
            fail(f"unknown element(s) with atomic number {bad} (allowed 1..{MAX_Z})")
        if not (np.isfinite(self.atoms.positions).all() and np.isfinite(self.atoms.cell.array).all()):
            fail("non-finite positions or cell")
        if not isinstance(self.fidelity, str) or not self.fidelity:
            fail(f"fidelity must be a non-empty string, got {self.fidelity!r}")
        if self.energy is not None and not np.isfinite(self.energy):
            fail(f"non-finite energy {self.energy}")
        for name, shape in (("forces", (n, 3)), ("stress", (6,)), ("magmoms", (n,))):
            value = getattr(self, name)
            if value is None:
                continue
            if value.shape != shape:
                fail(f"{name} has shape {value.shape}, expected {shape}")
            if not np.isfinite(value).all():
                fail(f"non-finite {name}")
        return self

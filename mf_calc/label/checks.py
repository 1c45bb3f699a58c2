"""Label checks: are a calculator's forces and stress the derivatives of its force-consistent free energy?

Central finite differences with ASE's ``calculate_numerical_forces`` / ``calculate_numerical_stress``
(``force_consistent=True``) on one frame. A calculator whose analytic stress disagrees with the finite
differences (e.g. a plane-wave code with a Hubbard U term missing from its stress) should have its stress
masked for that fidelity: set ``"stress": false`` in the spec.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

from mf_calc.constants import EV_A3_TO_GPA
from mf_calc.label.spec import LabelSpec
from mf_calc.label.u_ramp import ramp_scf


def finite_difference_check(atoms: Atoms, spec: LabelSpec, atom_indices: Sequence[int] = (0,),
                            eps_displacement: float = 0.01, eps_strain: float = 0.002,
                            stress: bool = True) -> dict:
    """Analytic vs central-difference forces (for ``atom_indices``, all 3 directions; displacement
    ``eps_displacement`` Å) and stress (strain ``eps_strain``) of ``spec``'s calculator on ``atoms``.

    Costs 1 + 6 len(atom_indices) (+ 12 with stress) calculations on one calculator, each starting from
    the previous state (the first one a whole Hubbard-U ramp where the spec has one). Returns the arrays
    (eV/Å, GPa) and the largest absolute differences.
    """
    if len(atoms) == 0:
        raise ValueError("finite_difference_check needs a structure with atoms")
    bad = [i for i in atom_indices if not 0 <= i < len(atoms)]
    if bad:
        raise ValueError(f"atom indices {bad} are outside 0..{len(atoms) - 1}")
    prepared = spec.prepare(atoms)
    prepared.calc = spec.build()
    start = time.perf_counter()
    if spec.u_ramp is not None:  # check the solution the labels come from; the displacements continue from it
        ramp_scf(prepared, spec.calculator_settings(), spec.u_ramp)
    forces = prepared.get_forces()[list(atom_indices)]
    analytic_stress = prepared.get_stress(voigt=True) if stress else None
    numeric_forces = calculate_numerical_forces(prepared, eps=eps_displacement, iatoms=list(atom_indices),
                                                force_consistent=True)
    result = {"atom_indices": list(atom_indices), "eps_displacement_A": eps_displacement,
              "forces_analytic_eV_A": forces, "forces_numeric_eV_A": numeric_forces,
              "forces_max_abs_diff_eV_A": float(np.abs(forces - numeric_forces).max())}
    if stress:
        numeric_stress = calculate_numerical_stress(prepared, eps=eps_strain, voigt=True, force_consistent=True)
        result.update(eps_strain=eps_strain, stress_analytic_GPa=analytic_stress * EV_A3_TO_GPA,
                      stress_numeric_GPa=numeric_stress * EV_A3_TO_GPA,
                      stress_max_abs_diff_GPa=float(np.abs(analytic_stress - numeric_stress).max() * EV_A3_TO_GPA))
    result["seconds"] = time.perf_counter() - start
    return result

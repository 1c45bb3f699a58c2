"""Hubbard-U ramp for GPAW DFT+U: labels that do not depend on the frame's history, in the low-energy solution.

DFT+U has several self-consistent solutions for ions whose partly filled d shell is orbitally degenerate (Fe2+
d6, Mn3+ d4): which d orbital the odd electron ends up in depends on where the SCF starts. The ramp (Meredig et
al., Phys. Rev. B 82, 195128 (2010)) converges the SCF at a fraction of U first (U = 0: the occupations follow the
crystal field), then raises U in steps, each SCF starting from the previous converged state, and ends at the full
U of the spec. What it changed on the project's frames: ``benchmarks/data/dft/SITTINGS.md`` (sittings 4-6).

A spec asks for it with ``"u_ramp": [0.0, 1.0]`` (fractions of every Hubbard U in ``settings["setups"]``,
increasing, ending at 1). ``"u_ramp_convergence"`` (GPAW convergence criteria) loosens the SCFs before the last
one: they only choose the solution, the labels come from the last. Only GPAW (Hubbard U given in its setups
strings, e.g. ``{"Fe": ":d,4.3"}``) is supported: the U of the running calculation is changed in place, so the
wave functions and density carry over.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ase import Atoms
from ase.units import Ha


def check_u_ramp(fractions: Sequence[float]) -> list[float]:
    """The ramp as a list of floats; ValueError unless it has >= 2 increasing fractions in [0, 1] ending at 1."""
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence):
        raise ValueError(f"spec 'u_ramp' must be a list of fractions of U such as [0, 1], got {fractions!r}")
    values = [float(f) for f in fractions]
    if len(values) < 2 or values[-1] != 1.0 or any(b <= a for a, b in zip(values, values[1:])) or values[0] < 0:
        raise ValueError(f"spec 'u_ramp' {values} must hold >= 2 increasing fractions of U from >= 0 up to 1")
    return values


def hubbard_u(settings: dict) -> dict:
    """Element -> (setup type, GPAW ``HubbardU``, U in Hartree) of the setups in ``settings``; ValueError when
    they give no Hubbard U."""
    from gpaw.hubbard import parse_hubbard_string

    setups = settings.get("setups")
    found = {}
    if isinstance(setups, dict):
        for key, value in setups.items():
            if isinstance(value, str) and ":" in value:
                if not isinstance(key, str):
                    raise ValueError(f"u_ramp: Hubbard U of atom {key!r}: give it per element instead")
                found[key] = parse_hubbard_string(value)
    if not found:
        raise ValueError(f"u_ramp needs a Hubbard U in the GPAW settings' setups (e.g. {{'Fe': ':d,4.3'}}), "
                         f"got setups={setups!r}")
    return found


def scaled_settings(settings: dict, fraction: float) -> dict:
    """A copy of GPAW ``settings`` whose Hubbard U values are ``fraction`` of those given."""
    setups = dict(settings["setups"])
    for element, (kind, u) in hubbard_u(settings).items():
        prefix = "" if kind == "paw" else kind
        terms = (f"{'spdf'[ell]},{value * Ha * fraction:.10g},{int(scale)}"
                 for ell, value, scale in zip(u.l, u.U, u.scale))
        setups[element] = f"{prefix}:{';'.join(terms)}"
    return dict(settings) | {"setups": setups}


def ramp_scf(atoms: Atoms, settings: dict, fractions: Sequence[float]) -> list[dict]:
    """Converge ``atoms.calc`` (a GPAW calculator built from ``scaled_settings(settings, fractions[0])``, maybe
    with looser convergence criteria: a spec's ``u_ramp_convergence``) at each fraction of the Hubbard U in turn;
    the last SCF is at the full U and to the convergence criteria of ``settings``. Returns one record per step:
    fraction, free energy (eV), SCF iterations, seconds."""
    from gpaw.new.scf import create_convergence_criteria

    calc, full = atoms.calc, hubbard_u(settings)
    steps = []
    for k, fraction in enumerate(fractions):
        if k:
            for setup in calc.dft.setups:
                if setup.symbol in full:
                    setup.hubbard_u.U = [value * fraction for value in full[setup.symbol][1].U]
            if k == len(fractions) - 1:  # new criteria: a force criterion must not compare with the last U
                calc.dft.scf_loop.convergence = create_convergence_criteria(settings.get("convergence") or {})
            # what GPAW does between MD steps, at the same positions: potential of the current density with the
            # new U, a fresh mixer history (the old one stalls the SCF), results cleared; then it converges again
            calc.dft.move_atoms(calc.dft.atoms)
        start = time.perf_counter()
        energy = atoms.get_potential_energy(force_consistent=True)
        steps.append({"fraction": float(fraction), "energy": float(energy),
                      "scf_iterations": int(calc.get_number_of_iterations()),
                      "seconds": time.perf_counter() - start})
    # a later rebuild (a cell change) keeps the full U and the criteria of the labels
    calc.params.setups = dict(settings["setups"])
    calc.params.convergence = dict(settings.get("convergence") or {})
    return steps

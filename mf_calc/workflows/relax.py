"""Relaxation of positions and (optionally) the cell, with a summary a battery researcher reads first."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import ase.optimize
import numpy as np
from ase import Atoms

from mf_calc.constants import EV_A3_TO_GPA as GPA
from mf_calc.workflows.io import fidelity_of, lattice_dict
from mf_calc.workflows.oxidation import format_oxidation, oxidation_summary

OPTIMIZERS = ("FIRE", "BFGS", "LBFGS", "BFGSLineSearch", "LBFGSLineSearch", "MDMin", "GPMin")


def optimizer_class(name):
    """The ASE optimizer class called ``name`` (any case), or ``name`` itself when it is a class."""
    if not isinstance(name, str):
        return name  # an optimizer class
    for opt in OPTIMIZERS:
        if opt.lower() == name.lower():
            return getattr(ase.optimize, opt)
    raise ValueError(f"unknown optimizer {name!r}; choose from {list(OPTIMIZERS)}")


@dataclass(frozen=True)
class RelaxSettings:
    """How to relax. fmax: eV/Å; with the cell filter the stress enters the same criterion as stress × volume
    / N (ASE's FrechetCellFilter convention: fmax = 0.05 eV/Å ≈ 0.75 GPa for 28-atom LiFePO4 — use 0.01-0.02
    for accurate lattices). relax_cell: the cell too (``FrechetCellFilter``), at ``pressure_GPa`` (external,
    hydrostatic). optimizer: a name of OPTIMIZERS. fix_symmetry: symmetrise the start (``refine_symmetry``) and
    add ``ase.constraints.FixSymmetry`` (spglib, ``symprec`` Å) so the space group is kept. steps: at most."""

    fmax: float = 0.05
    steps: int = 500
    relax_cell: bool = True
    optimizer: str = "FIRE"
    fix_symmetry: bool = False
    pressure_GPa: float = 0.0
    symprec: float = 1e-3

    def __post_init__(self):
        optimizer_class(self.optimizer)  # an unknown name fails here


def relax(atoms: Atoms, calc, settings: RelaxSettings = RelaxSettings(), trajectory=None,
          logfile=None) -> tuple[Atoms, dict]:
    """Relax positions (and the cell) as ``settings`` say; ``atoms`` is not modified.

    Returns a relaxed copy with ``calc`` attached, and a summary dict: energy (eV, eV/atom), lattice (a, b, c
    Å, angles, volume Å³), max_force (eV/Å, atoms only), max_stress_GPa, steps, converged, fidelity, magmoms
    and oxidation states (Fe/Mn), time_s. trajectory: optional .traj of the optimisation; logfile: the
    optimizer's log (None: none, "-": stdout).
    """
    from ase.filters import FrechetCellFilter

    opt_cls, symprec = optimizer_class(settings.optimizer), settings.symprec
    atoms = atoms.copy()
    atoms.calc = calc
    if settings.fix_symmetry:
        from ase.constraints import FixSymmetry
        from ase.spacegroup.symmetrize import refine_symmetry

        refine_symmetry(atoms, symprec=symprec)  # make the start exactly symmetric first
        atoms.set_constraint(FixSymmetry(atoms, symprec=symprec))
    target = FrechetCellFilter(atoms, scalar_pressure=settings.pressure_GPa / GPA) if settings.relax_cell else atoms
    t0 = time.perf_counter()
    opt = opt_cls(target, logfile=logfile, trajectory=str(trajectory) if trajectory else None)
    with warnings.catch_warnings():
        # FrechetCellFilter's matrix log warns about 1e-13 inaccuracies: harmless noise
        warnings.filterwarnings("ignore", message="logm result may be inaccurate")
        converged = bool(opt.run(fmax=settings.fmax, steps=settings.steps))
    elapsed = time.perf_counter() - t0
    atoms.constraints = []  # FixSymmetry is not meaningful downstream (MD, phonons)
    return atoms, relax_summary(atoms, steps=opt.nsteps, converged=converged, time_s=elapsed,
                                fmax=settings.fmax)


def relax_summary(atoms: Atoms, **extra) -> dict:
    """Energy, lattice, forces, stress, magmoms and oxidation states of a structure with a calculator."""

    energy = float(atoms.get_potential_energy())
    forces = atoms.get_forces()
    out = {
        "formula": atoms.get_chemical_formula(),
        "n_atoms": len(atoms),
        "fidelity": fidelity_of(atoms.calc),
        "energy_eV": energy,
        "energy_per_atom_eV": energy / len(atoms),
        "lattice": lattice_dict(atoms),
        "max_force_eV_per_A": float(np.linalg.norm(forces, axis=1).max()),
    }
    try:
        stress = atoms.get_stress()
        out["stress_GPa"] = (stress * GPA).tolist()
        out["max_stress_GPa"] = float(np.abs(stress).max() * GPA)
        out["pressure_GPa"] = float(-stress[:3].mean() * GPA)
    except Exception:  # calculator without stress
        pass
    try:
        magmoms = atoms.get_magnetic_moments()
    except Exception:
        magmoms = None
    if magmoms is not None:
        out["magmoms"] = np.asarray(magmoms, dtype=float).tolist()
        if {"Fe", "Mn"} & set(atoms.get_chemical_symbols()):
            out["oxidation"] = oxidation_summary(atoms, magmoms)
    out.update(extra)
    return out


def format_summary(s: dict) -> str:
    """Human-readable multi-line summary of :func:`relax_summary` output."""

    lat = s["lattice"]
    lines = [
        f"{s['formula']} ({s['n_atoms']} atoms) [{s.get('fidelity')}]: E = {s['energy_eV']:.4f} eV "
        f"({s['energy_per_atom_eV']:.4f} eV/atom)",
        f"  a={lat['a']:.4f} b={lat['b']:.4f} c={lat['c']:.4f} Å  "
        f"α={lat['alpha']:.2f} β={lat['beta']:.2f} γ={lat['gamma']:.2f}°  V={lat['volume']:.2f} Å³",
        f"  max|F| = {s['max_force_eV_per_A']:.4f} eV/Å"
        + (f", max|σ| = {s['max_stress_GPa']:.3f} GPa" if "max_stress_GPa" in s else "")
        + (f", steps = {s['steps']}, converged = {s['converged']}" if "steps" in s else "")
        + (f", {s['time_s']:.1f} s" if "time_s" in s else ""),
    ]
    if "oxidation" in s:
        lines.append("  oxidation: " + format_oxidation(s["oxidation"]))
    return "\n".join(lines)

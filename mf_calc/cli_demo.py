"""``mf-calc demo``: a short tour of the default model on a delithiated LMFP supercell."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def register(sub) -> None:
    p = sub.add_parser("demo", help="short demo on the default model (a few minutes on 2 CPU cores)")
    p.add_argument("--model", default=None, help="model name or folder (default: the shipped default)")
    p.add_argument("--out", default="demo_output", help="output folder")
    p.add_argument("--x-li", type=float, default=0.5, help="Li fraction kept (default 0.5)")
    p.add_argument("--y-mn", type=float, default=0.5, help="Mn fraction on transition-metal sites (default 0.5)")
    p.add_argument("--steps", type=int, default=50, help="optimiser steps (default 50)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ase.filters import FrechetCellFilter
    from ase.io import write
    from ase.optimize import FIRE

    from mf_calc import MFCalculator, lmfp, load_model

    model = load_model(args.model)
    print(f"model: {model.metadata.get('name', args.model)} — {model.metadata.get('description', '')}")
    print(f"fidelities: {list(model.fidelities)}; modules: {model.config.modules or 'none'}")
    atoms = lmfp(x_li=args.x_li, y_mn=args.y_mn, supercell=(1, 1, 2), seed=0)
    print(f"structure: {atoms.get_chemical_formula()} ({len(atoms)} atoms)")
    calc = MFCalculator(model)
    for name in model.fidelities:
        calc.fidelity = name
        atoms.calc = calc
        e = atoms.get_potential_energy() / len(atoms)
        print(f"  [{name}] E = {e:.4f} eV/atom, max|F| = {np.abs(atoms.get_forces()).max():.3f} eV/Å, "
              f"P = {-atoms.get_stress()[:3].mean() * 160.21766:.3f} GPa")
    calc.fidelity = None
    atoms.calc = calc
    t0 = time.perf_counter()
    FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=0.1, steps=args.steps)
    a, b, c = atoms.cell.lengths()
    print(f"relaxed at [{calc.fidelity}] in {time.perf_counter() - t0:.1f} s: a={a:.3f} b={b:.3f} c={c:.3f} Å, "
          f"V={atoms.get_volume():.2f} Å^3, E={atoms.get_potential_energy() / len(atoms):.4f} eV/atom")
    mags = atoms.get_magnetic_moments()
    for el in ("Fe", "Mn"):
        sel = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == el]
        if sel:
            print(f"  {el} magmoms (μB): " + " ".join(f"{m:.2f}" for m in mags[sel]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write(out / "relaxed.extxyz", atoms)
    print(f"wrote {out / 'relaxed.extxyz'}")
    return 0

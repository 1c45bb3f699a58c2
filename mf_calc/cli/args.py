"""Command-line arguments the workflow commands share, and what they build: one place for the LMFP builder
options, the model and fidelity options (and the calculator they make), and the set-up of the fidelity-sweep
commands (hull, neb)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_structure_args(p: argparse.ArgumentParser, *, supercell=(1, 1, 2), x_li: float | None = 1.0) -> None:
    """A positional structure file and the LMFP builder used without one; ``x_li=None``: the builder makes the
    lithiated host (no ``--x-li``: commands that remove Li themselves)."""
    def said(text):  # a parser that prints every default itself needs no "(default ...)" in the help
        return "" if issubclass(p.formatter_class, argparse.ArgumentDefaultsHelpFormatter) else f" (default {text})"

    p.add_argument("structure", nargs="?", default=None,
                   help="structure file (CIF, POSCAR, extxyz, traj; last frame). Default: build LMFP")
    g = p.add_argument_group("LMFP builder (used when no structure file is given)")
    if x_li is not None:
        g.add_argument("--x-li", type=float, default=x_li, help="Li fraction" + said(x_li))
    g.add_argument("--y-mn", "--mn-fraction", type=float, default=0.0, help="Mn fraction on TM sites" + said(0))
    g.add_argument("--supercell", type=int, nargs=3, default=list(supercell), metavar=("NA", "NB", "NC"),
                   help="repetitions of the 28-atom cell" + said(" ".join(map(str, supercell))))
    g.add_argument("--seed", type=int, default=0, help="seed for the Li/Mn site choice" + said(0))


def add_model_args(p: argparse.ArgumentParser, *, several_fidelities: bool = False) -> None:
    """``--model`` and ``--fidelity`` (repeatable, or 'all', with ``several_fidelities``; else with ``--compile``)."""
    p.add_argument("--model", default=None, help="model name or folder (default: the shipped default model)")
    if several_fidelities:
        p.add_argument("--fidelity", action="append", default=None,
                       help="fidelity name or index, repeatable, or 'all' (default: the highest)")
    else:
        p.add_argument("--fidelity", default=None, help="fidelity name or index (default: the highest)")
        p.add_argument("--compile", action="store_true",
                       help="run the model through torch.compile: the first steps compile (a minute or two on a "
                       "CPU), later ones are faster; for long runs")


def add_sweep_args(p: argparse.ArgumentParser, quick: dict, out: str) -> None:
    """``--quick`` (the ``quick`` values replace those arguments; see :func:`fidelity_sweep_setup`) and ``--out``
    of the fidelity-sweep commands."""
    said = ", ".join(f"{key.replace('_', '-')} {value}" for key, value in quick.items())
    p.add_argument("--quick", action="store_true", help=f"a smaller, faster run: {said}")
    p.add_argument("--out", default=out, help="output folder")


def structure_from_args(args):
    """The structure file's last frame, or the LMFP cell of the builder options (x_Li = 1 without ``--x-li``)."""
    from mf_calc.structures import lmfp, read_structure

    if args.structure:
        return read_structure(args.structure)
    return lmfp(x_li=getattr(args, "x_li", 1.0), y_mn=args.y_mn, supercell=tuple(args.supercell), seed=args.seed)


def calculator_from_args(args):
    """An MFCalculator of ``--model`` (float64 when ``--precision`` says so) at ``--fidelity``, compiled with
    ``--compile``; an unknown fidelity raises ValueError listing the known names."""
    from mf_calc import MFCalculator, load_model

    model = load_model(args.model)
    if getattr(args, "precision", "float32") == "float64":
        model = model.double()
    return MFCalculator(model, fidelity=args.fidelity, compile=getattr(args, "compile", False))


def fidelity_sweep_setup(args, quick: dict):
    """Shared start of the commands that compare fidelities on one lithiated host (``hull``, ``neb``): apply
    ``--quick`` (the ``quick`` values replace those arguments), read or build the structure, load ``--model``,
    resolve the repeatable ``--fidelity`` and create ``--out`` — all before any work. Returns (atoms, model,
    fidelity names, output folder)."""
    from mf_calc.hub import load_model
    from mf_calc.workflows.io import fidelity_names

    if args.quick:
        for key, value in quick.items():
            setattr(args, key, list(value) if isinstance(value, tuple) else value)
    atoms = structure_from_args(args)
    model = load_model(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return atoms, model, fidelity_names(model, args.fidelity), out

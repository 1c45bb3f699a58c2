"""Structures in, calculators out: the small plumbing every workflow shares.

- :func:`read_structure` reads CIF / POSCAR / extxyz / ASE traj (anything ``ase.io.read`` knows) and fails
  with a clear ``FileNotFoundError`` / ``ValueError`` naming the file.
- :func:`resolve_calculator` turns ``model`` (None, name, folder, ``MFCHGNet``, or any ASE calculator) and
  ``fidelity`` into a calculator, checking the fidelity *before* any work is done.
"""

from __future__ import annotations

from pathlib import Path

from ase import Atoms
from ase.calculators.calculator import Calculator


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


def resolve_calculator(model=None, fidelity=None) -> Calculator:
    """Return a calculator for ``model`` at ``fidelity``.

    model: None (default shipped model), a model name or folder, an ``MFCHGNet``, an ``MFCalculator``
    or any other ASE calculator (then ``fidelity`` must be None unless it has a ``fidelity`` attribute).
    An unknown fidelity raises ValueError listing the known names (from ``MFCalculator``).
    """
    if isinstance(model, Calculator):
        if fidelity is not None:
            if not hasattr(model, "fidelity"):
                raise ValueError(f"calculator {type(model).__name__} has no fidelities; got fidelity={fidelity!r}")
            model.fidelity = fidelity
        return model

    from mf_calc.calculator import MFCalculator

    return MFCalculator(model, fidelity=fidelity)


def fidelity_names(model, wanted=None) -> list[str]:
    """Fidelity names of ``model`` (an ``MFCHGNet``) for command-line choices: None -> the default (highest),
    ['all'] -> every fidelity, otherwise each name or index in ``wanted``."""
    wanted = wanted or [None]
    if wanted == ["all"]:
        return list(model.fidelities.names)
    return [model.fidelities.name(f) for f in wanted]


def fidelity_sweep_setup(args, quick: dict):
    """Shared start of the commands that compare fidelities on one lithiated host (``hull``, ``neb``): apply
    ``--quick`` (the ``quick`` values replace those arguments), read the structure file or build LMFP at
    x_Li = 1 from ``--y-mn --supercell --seed``, load ``--model``, resolve the repeatable ``--fidelity``
    and create ``--out`` — all before any work. Returns (atoms, model, fidelity names, output folder)."""
    from mf_calc.hub import load_model
    from mf_calc.structures import lmfp

    if args.quick:
        for key, value in quick.items():
            setattr(args, key, list(value) if isinstance(value, tuple) else value)
    atoms = read_structure(args.structure) if args.structure else \
        lmfp(x_li=1.0, y_mn=args.y_mn, supercell=tuple(args.supercell), seed=args.seed)
    model = load_model(args.model)
    fidelities = fidelity_names(model, args.fidelity)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return atoms, model, fidelities, out


def fidelity_of(calc) -> str | None:
    """Fidelity name of a calculator (None for calculators without fidelities)."""
    return getattr(calc, "fidelity", None)


def lattice_dict(atoms: Atoms) -> dict:
    """a, b, c (Å), alpha, beta, gamma (deg), volume (Å³) and volume per atom."""
    a, b, c, al, be, ga = atoms.cell.cellpar()
    v = float(atoms.get_volume())
    return {"a": float(a), "b": float(b), "c": float(c), "alpha": float(al), "beta": float(be), "gamma": float(ga),
            "volume": v, "volume_per_atom": v / len(atoms)}

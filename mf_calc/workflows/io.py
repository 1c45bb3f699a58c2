"""Calculators out: the small plumbing every workflow shares (structures come in through
:mod:`mf_calc.structures`).

- :func:`resolve_calculator` turns ``model`` (None, name, folder, ``MFCHGNet``, or any ASE calculator) and
  ``fidelity`` into a calculator, checking the fidelity *before* any work is done.
"""

from __future__ import annotations

from ase import Atoms
from ase.calculators.calculator import Calculator


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


def fidelity_of(calc) -> str | None:
    """Fidelity name of a calculator (None for calculators without fidelities)."""
    return getattr(calc, "fidelity", None)


def lattice_dict(atoms: Atoms) -> dict:
    """a, b, c (Å), alpha, beta, gamma (deg), volume (Å³) and volume per atom."""
    a, b, c, al, be, ga = atoms.cell.cellpar()
    v = float(atoms.get_volume())
    return {"a": float(a), "b": float(b), "c": float(c), "alpha": float(al), "beta": float(be), "gamma": float(ga),
            "volume": v, "volume_per_atom": v / len(atoms)}

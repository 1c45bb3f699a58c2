"""Oxidation states of Fe and Mn from magnetic moments, and the charge-balance check.

High-spin olivine transition metals carry a moment that changes by about 1 μB per electron removed (Fe2+ d6 → Fe3+
d5 goes *up*; Mn2+ d5 → Mn3+ d4 → Mn4+ d3 goes *down*). ``ox_from_magmom`` assigns a state by comparing |m| with
the thresholds of a *magmom scale* (``THRESHOLDS``): the labels a model's magmom head learned from (``pbe_u``:
CHGNet 0.3.0; ``r2scan``: CHGNet r2scan; ``gpaw_afm``: the project's GPAW PBE+U data, moments integrated in the
PAW spheres). Each threshold is the midpoint of the gap between neighbouring ions on its scale;
``MFCalculator.magmom_scale`` tells which scale a model is on (model metadata ``magmom_scale``). The reference
moments behind each threshold are in ``docs/magmom_scales.md``. Moments between two ions' ranges (a hole or an
electron shared by several ions) get no correct state; the charge balance then shows it. Read oxidation states
after relaxing or from MD frames: the moments of a freshly delithiated cell hardly move.

Charge balance for phosphates Li_x M PO4: with Li+ , P5+, O2- the transition metals must carry
``2 n_O − 5 n_P − n_Li`` (= 3 n_P − n_Li for PO4); ``charge_balance`` returns the excess charge.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

#: Thresholds in μB per magmom scale (their reference moments: docs/magmom_scales.md).
THRESHOLDS = {
    "pbe_u": {"Fe2+/Fe3+": 4.13, "Mn2+/Mn3+": 4.27, "Mn3+/Mn4+": 3.4},
    "r2scan": {"Fe2+/Fe3+": 3.91, "Mn2+/Mn3+": 4.12, "Mn3+/Mn4+": 3.4},
    "gpaw_afm": {"Fe2+/Fe3+": 3.92, "Mn2+/Mn3+": 4.30, "Mn3+/Mn4+": 3.4},
}
DEFAULT_SCALE = "pbe_u"
FIXED = {"Li": 1, "Na": 1, "P": 5, "O": -2}
#: The oxidation states the thresholds tell apart, per transition metal.
STATES = {"Fe": (2, 3), "Mn": (2, 3, 4)}


def thresholds(scale: str | None = None) -> dict[str, float]:
    """The thresholds of a magmom scale (None: ``pbe_u``); an unknown scale raises ValueError."""
    scale = DEFAULT_SCALE if scale is None else scale
    if scale not in THRESHOLDS:
        raise ValueError(f"unknown magmom scale {scale!r}; known: {sorted(THRESHOLDS)}")
    return THRESHOLDS[scale]


def scale_of(atoms) -> str:
    """The magmom scale of the calculator attached to ``atoms`` (``pbe_u`` when it does not say)."""
    return getattr(atoms.calc, "magmom_scale", None) or DEFAULT_SCALE


def ox_from_magmom(symbol: str, magmom: float, scale: str | None = None) -> int | None:
    """Oxidation state of one Fe or Mn ion from its magnetic moment (μB; sign ignored) on a magmom scale."""
    m = abs(float(magmom))
    t = thresholds(scale)
    if symbol == "Fe":
        return 2 if m < t["Fe2+/Fe3+"] else 3
    if symbol == "Mn":
        if m > t["Mn2+/Mn3+"]:
            return 2
        return 3 if m > t["Mn3+/Mn4+"] else 4
    return FIXED.get(symbol)


def oxidation_states(atoms, magmoms=None, scale: str | None = None) -> list[int | None]:
    """Oxidation state per atom: Fe/Mn from magmoms, Li +1, P +5, O −2, None for anything else.

    magmoms: μB per atom; default ``atoms.get_magnetic_moments()`` (needs a calculator with magmoms).
    scale: magmom scale of the thresholds; default that of ``atoms.calc`` (see ``scale_of``).
    """
    if magmoms is None:
        magmoms = atoms.get_magnetic_moments()
    scale = scale_of(atoms) if scale is None else scale
    magmoms = np.asarray(magmoms, dtype=float).reshape(-1)
    if len(magmoms) != len(atoms):
        raise ValueError(f"need one magmom per atom: got {len(magmoms)} for {len(atoms)} atoms")
    return [ox_from_magmom(s, m, scale) for s, m in zip(atoms.get_chemical_symbols(), magmoms)]


def charge_balance(atoms, ox=None) -> int | None:
    """Total formal charge (0 = balanced); None when an atom has no assigned oxidation state."""
    ox = oxidation_states(atoms) if ox is None else ox
    if any(o is None for o in ox):
        return None
    return int(sum(ox))


def oxidation_summary(atoms, magmoms=None, scale: str | None = None) -> dict:
    """Counts like {"Fe2+": 4, "Fe3+": 4}, mean/min/max magmom per TM element, charge balance.

    ``balanced`` is True when n_Li + Σ ox(TM) equals 2 n_O − 5 n_P (= 3 n_P for a phosphate).
    scale: magmom scale of the thresholds; default that of ``atoms.calc``.
    """
    if magmoms is None:
        magmoms = atoms.get_magnetic_moments()
    scale = scale_of(atoms) if scale is None else scale
    magmoms = np.abs(np.asarray(magmoms, dtype=float).reshape(-1))
    symbols = np.array(atoms.get_chemical_symbols())
    ox = oxidation_states(atoms, magmoms, scale)
    counts = Counter(f"{s}{o}+" for s, o in zip(symbols, ox) if s in STATES)
    mags = {}
    for el in STATES:
        sel = symbols == el
        if sel.any():
            m = magmoms[sel]
            mags[el] = {"mean": float(m.mean()), "min": float(m.min()), "max": float(m.max())}
    excess = charge_balance(atoms, ox)
    return {
        "counts": dict(sorted(counts.items())),
        "magmoms": mags,
        "charge_excess": excess,
        "balanced": None if excess is None else excess == 0,
        "magmom_scale": scale,
        "thresholds_muB": dict(thresholds(scale)),
    }


def format_oxidation(summary: dict) -> str:
    """One short line, e.g. ``Fe2+:4 Fe3+:4 Mn2+:8 | Fe 4.12 Mn 4.62 μB | balanced``."""
    counts = " ".join(f"{k}:{v}" for k, v in summary["counts"].items()) or "no Fe/Mn"
    mags = " ".join(f"{el} {d['mean']:.2f}" for el, d in summary["magmoms"].items())
    bal = summary["balanced"]
    tag = "balanced" if bal else ("n/a" if bal is None else f"charge {summary['charge_excess']:+d}")
    return f"{counts} | {mags} μB | {tag}" if mags else f"{counts} | {tag}"


def oxidation_columns(symbols) -> list[str]:
    """Names of the :func:`oxidation_record` fields for a structure of these chemical symbols: per Fe/Mn
    element present ``magmom_El`` and ``n_El{q}`` for each state q, then ``charge_excess``; [] without Fe/Mn."""
    present = [el for el in STATES if el in set(symbols)]
    cols = []
    for el in present:
        cols += [f"magmom_{el}"] + [f"n_{el}{q}" for q in STATES[el]]
    return cols + ["charge_excess"] if present else []


def oxidation_record(atoms, magmoms=None, scale: str | None = None) -> dict:
    """One flat record per frame (for MD logs), the fixed columns of :func:`oxidation_columns` taken from
    :func:`oxidation_summary`: mean |magmom| (μB) and the count of each oxidation state per Fe/Mn element
    present, and the formal-charge excess (None when an atom has no assigned state); {} without Fe/Mn."""
    summary = oxidation_summary(atoms, magmoms, scale)
    rec = {}
    for el, stats in summary["magmoms"].items():
        rec[f"magmom_{el}"] = stats["mean"]
        rec.update({f"n_{el}{q}": summary["counts"].get(f"{el}{q}+", 0) for q in STATES[el]})
    if rec:
        rec["charge_excess"] = summary["charge_excess"]
    return rec


def format_oxidation_record(rec: dict) -> str:
    """``Fe 4.12μB 2+:4 3+:4 Mn 4.62μB 2+:8 3+:0 4+:0`` from an :func:`oxidation_record` (or a log row); '' without Fe/Mn."""
    parts = []
    for el, states in STATES.items():
        if f"magmom_{el}" in rec:
            counts = " ".join(f"{q}+:{rec[f'n_{el}{q}']}" for q in states)
            parts.append(f"{el} {rec[f'magmom_{el}']:.2f}μB {counts}")
    return " ".join(parts)

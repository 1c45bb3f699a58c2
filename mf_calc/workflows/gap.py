"""Fidelity gap: how much the fidelities of one model disagree on a structure.

For a multi-fidelity model the heads share almost everything; where the low fidelities differ strongly
from the highest one, the model's high-fidelity prediction rests on little high-fidelity data of that
kind. Ranking frames by this gap is a cheap signal for which frames are worth a high-fidelity DFT
calculation (it is not an error estimate: two fidelities can agree and both be wrong).
"""

from __future__ import annotations

import numpy as np

from mf_calc import load_model
from mf_calc.calculator import model_of
from mf_calc.model.mfchgnet import MFCHGNet

SORT_KEYS = ("energy", "force_rms", "force_max")


def fidelity_gap(atoms_list, model=None, reference=None, sort_by: str = "force_rms", batch_size: int = 8) -> list[dict]:
    """Per structure and fidelity f: E_f − E_ref (meV/atom), RMS and max |F_f − F_ref| (eV/Å).

    atoms_list: ase.Atoms or a list of them (e.g. MD frames); model: ``MFCHGNet``, model name/folder,
    or an ``MFCalculator`` (its model is used); reference: fidelity compared against (default the
    highest). Returns one dict per structure, sorted by the largest gap (``sort_by``: "energy" = max
    |ΔE|, "force_rms" or "force_max" over fidelities), each with ``index`` (position in the input),
    ``formula``, ``n_atoms``, ``gaps`` {fidelity: {dE_meV_per_atom, dF_rms, dF_max}} and ``score``.
    A single-fidelity model raises ValueError (there is nothing to compare).
    """

    if sort_by not in SORT_KEYS:
        raise ValueError(f"sort_by must be one of {SORT_KEYS}, got {sort_by!r}")
    model = model_of(model) or model
    if not isinstance(model, MFCHGNet):
        model = load_model(model)
    names = list(model.fidelities.names)
    ref = model.fidelities.name(reference)
    if len(names) < 2:
        raise ValueError(f"model has a single fidelity {names}; a fidelity gap needs at least two")
    if not isinstance(atoms_list, (list, tuple)):
        atoms_list = [atoms_list]
    preds = {f: model.predict(list(atoms_list), fidelity=f, task="ef", batch_size=batch_size) for f in names}
    rows = []
    for i, atoms in enumerate(atoms_list):
        n = len(atoms)
        e_ref, f_ref = float(preds[ref][i]["energy"]), np.asarray(preds[ref][i]["forces"])
        gaps = {}
        for f in names:
            if f == ref:
                continue
            df = np.asarray(preds[f][i]["forces"]) - f_ref
            norms = np.linalg.norm(df, axis=1)
            gaps[f] = {
                "dE_meV_per_atom": (float(preds[f][i]["energy"]) - e_ref) / n * 1000.0,
                "dF_rms": float(np.sqrt((df**2).mean())),
                "dF_max": float(norms.max()),
            }
        key = {"energy": lambda g: abs(g["dE_meV_per_atom"]), "force_rms": lambda g: g["dF_rms"],
               "force_max": lambda g: g["dF_max"]}[sort_by]
        rows.append({"index": i, "formula": atoms.get_chemical_formula(), "n_atoms": n, "reference": ref,
                     "gaps": gaps, "score": max(key(g) for g in gaps.values()), "sort_by": sort_by})
    rows.sort(key=lambda r: r["score"], reverse=True)
    return rows


def format_gap_table(rows: list[dict], top: int | None = None) -> str:
    """A plain-text ranking table."""
    lines = [f"{'rank':>4} {'index':>5} {'formula':<16} {'fidelity':<12} {'dE meV/at':>10} {'dF rms':>8} {'dF max':>8}"]
    for rank, r in enumerate(rows[:top] if top else rows, 1):
        for f, g in r["gaps"].items():
            lines.append(f"{rank:>4} {r['index']:>5} {r['formula']:<16} {f:<12} {g['dE_meV_per_atom']:>10.2f} "
                         f"{g['dF_rms']:>8.4f} {g['dF_max']:>8.4f}")
    return "\n".join(lines)

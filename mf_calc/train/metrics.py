"""Validation errors per fidelity: MAE and RMSE over the frames that carry each label.

Reported units: energy meV/atom, forces meV/Å (per component), stress GPa (per 3×3 component),
magmoms μB; ``<t>_n`` counts labelled frames (e, s) or atoms (f, m). Sums are accumulated in one
(n_fidelities, 4 targets, 5) tensor so that several processes can add theirs with a single all-reduce.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict

import torch
from torch import Tensor

from mf_calc.train.dataset import ATOM_LEVEL, TARGETS, FrameDataset, GraphSet, Labels
from mf_calc.train.loss import in_label_units

REPORT = {"e": ("energy", "meV/atom", 1000.0), "f": ("forces", "meV/Å", 1000.0), "s": ("stress", "GPa", 1.0),
          "m": ("magmoms", "μB", 1.0)}


class Errors(TypedDict):
    """Errors of one fidelity: ``<t>_mae`` / ``<t>_rmse`` / ``<t>_mean`` (mean signed error, model − label: the
    bias an MAE hides) in the ``REPORT`` units (NaN without labels) and ``<t>_n`` labelled frames (e, s) or atoms
    (f, m), for t in e (energy), f (forces), s (stress), m (magmoms)."""

    e_mae: float
    e_rmse: float
    e_mean: float
    e_n: int
    f_mae: float
    f_rmse: float
    f_mean: float
    f_n: int
    s_mae: float
    s_rmse: float
    s_mean: float
    s_n: int
    m_mae: float
    m_rmse: float
    m_mean: float
    m_n: int


class ErrorSums:
    """Σ|err|, Σerr², Σerr, labelled elements and labelled rows (frames or atoms) per fidelity and target."""

    def __init__(self, n_fidelities: int, device=None):
        self.sums = torch.zeros(n_fidelities, len(TARGETS), 5, dtype=torch.float64, device=device)

    def add(self, pred: dict[str, Tensor], labels: Labels, structure_fidelity: Tensor, atom_owner: Tensor) -> None:
        atom_fidelity = structure_fidelity.index_select(0, atom_owner)
        for k, t in enumerate(TARGETS):
            mask = labels.masks[t]
            if t not in pred or not bool(mask.any()):
                continue
            err = (pred[t].detach()[mask] - labels.values[t][mask]).double() * REPORT[t][2]
            err = err.reshape(len(err), -1)
            rows = (atom_fidelity if t in ATOM_LEVEL else structure_fidelity)[mask]
            per_row = torch.stack([err.abs().sum(1), err.square().sum(1), err.sum(1),
                                   torch.full_like(err[:, 0], err.shape[1]), torch.ones_like(err[:, 0])], 1)
            self.sums[:, k].index_add_(0, rows, per_row)

    def report(self, names: Sequence[str]) -> dict[str, Errors]:
        """{fidelity: {"e_mae", "e_rmse", "e_n", ...}} for fidelities with any label; NaN where a label is absent."""
        sums = self.sums.cpu().numpy()
        out = {}
        for f, name in enumerate(names):
            if sums[f, :, 4].sum() == 0:
                continue
            row: Errors = {}  # type: ignore[typeddict-item]  # filled below, every key
            for k, t in enumerate(TARGETS):
                abs_sum, sq_sum, signed_sum, n, rows = sums[f, k].tolist()
                row[f"{t}_mae"] = abs_sum / n if n else float("nan")
                row[f"{t}_rmse"] = math.sqrt(sq_sum / n) if n else float("nan")
                row[f"{t}_mean"] = signed_sum / n if n else float("nan")
                row[f"{t}_n"] = int(rows)
            out[name] = row
        return out


def accumulate_errors(model, graphs: GraphSet, indices: Sequence[int], targets: str, batch_size: int,
                      sums: ErrorSums) -> ErrorSums:
    """Add the model's errors on frames ``indices`` to ``sums`` (model in eval mode, no second-order graph)."""
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(indices), batch_size):
            batch, labels = graphs.batch(indices[start : start + batch_size], model.dtype)
            batch, labels = batch.to(model.device), labels.to(model.device)
            out = model(batch, task=targets, create_graph=False)
            sums.add(in_label_units(out), labels, batch.fidelity, batch.atom_owner)
    finally:
        model.train(was_training)
    return sums


def evaluate(model, graphs: GraphSet, targets: str = "efsm", batch_size: int = 16) -> dict[str, Errors]:
    """MAE/RMSE per fidelity of ``model`` on all frames of ``graphs`` (single process)."""
    sums = accumulate_errors(model, graphs, list(range(len(graphs))), targets, batch_size,
                             ErrorSums(len(model.fidelities), model.device))
    return sums.report(model.fidelities.names)


def grouped_errors(model, frames: Sequence, fidelity: str, key: str, batch_size: int = 16) -> dict[str, dict]:
    """Per value of ``info[key]`` of the ``Frame``s (missing: "-"): frames, errors (``evaluate``) and mean signed
    energy error (``e_mean``, meV/atom; None without energy labels)."""
    groups: dict[str, list] = {}
    for frame in frames:
        groups.setdefault(str(frame.atoms.info.get(key, "-")), []).append(frame)
    out = {}
    for value, members in sorted(groups.items()):
        errors = evaluate(model, FrameDataset(members).graphs(model), batch_size=batch_size).get(fidelity, {})
        bias = errors.get("e_mean", float("nan"))
        out[value] = {"frames": len(members), "errors": errors,
                      "energy_bias_meV_atom": None if math.isnan(bias) else bias}
    return out


def format_report(report: dict[str, dict[str, float]]) -> str:
    """A text table of a per-fidelity report (targets without labels are left out)."""
    lines = [f"{'fidelity':<12} {'target':<8} {'unit':<9} {'n':>7} {'MAE':>10} {'RMSE':>10}"]
    for name, row in report.items():
        for t in TARGETS:
            if row[f"{t}_n"]:
                label, unit, _ = REPORT[t]
                lines.append(f"{name:<12} {label:<8} {unit:<9} {row[f'{t}_n']:>7} {row[f'{t}_mae']:>10.4g} "
                             f"{row[f'{t}_rmse']:>10.4g}")
    return "\n".join(lines)

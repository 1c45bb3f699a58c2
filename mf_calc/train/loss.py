"""Masked multi-target Huber loss (chgnet's CombinedLoss without its silent fallbacks).

Each target t contributes weight_t * Σ huber(pred − label) / n_t over the elements that carry a
label, where n_t is the number of labelled elements in the *global* batch (all processes). With
that normaliser, summing the per-process gradients gives exactly the single-process gradient of the
same global batch. A target without labels in the batch contributes an exact 0.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mf_calc.train.dataset import EV_A3_TO_GPA, Labels


def in_label_units(out: dict[str, Tensor]) -> dict[str, Tensor]:
    """Model output in label units: e eV/atom, f eV/Å, s GPa (3×3), m μB."""
    pred = {"e": out["energy_per_atom"]}
    if "forces" in out:
        pred["f"] = out["forces"]
    if "stress" in out:
        pred["s"] = out["stress"] * EV_A3_TO_GPA
    if "magmoms" in out:
        pred["m"] = out["magmoms"]
    return pred


def model_task(targets: str, labels: Labels) -> str:
    """Letters the model must compute for a batch: the targets that have a label in it (always e)."""
    return "".join(t for t in targets if t == "e" or bool(labels.masks[t].any()))


def loss_terms(pred: dict[str, Tensor], labels: Labels, counts: dict[str, int], weights: dict[str, float],
               delta: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Total weighted loss and its unweighted terms (each Σ huber / global count)."""
    zero = pred["e"].new_zeros(())
    terms: dict[str, Tensor] = {}
    total = zero
    for t, weight in weights.items():
        mask = labels.masks[t]
        if weight == 0 or not bool(mask.any()):
            terms[t] = zero
            continue
        terms[t] = F.huber_loss(pred[t][mask], labels.values[t][mask], reduction="sum", delta=delta) / counts[t]
        total = total + weight * terms[t]
    return total, terms

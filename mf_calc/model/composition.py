"""Per-fidelity composition model E_c^f = sum_a w_{a,f} n_a (paper eq. 10), in eV.

The weights are per-element reference energies (eV/atom), one row per copy (one per fidelity
when the ``C`` switch is on, else one shared row). They are fitted by least squares, not by
gradient descent, and are stored as a buffer so optimisers leave them alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mf_calc.constants import MAX_Z
from mf_calc.model.fidelity import FidelityRows
from mf_calc.model.graph import check_elements


def element_counts(numbers_list: Sequence[Sequence[int]]) -> np.ndarray:
    """(n_structures, 94) matrix of element counts."""
    counts = np.zeros((len(numbers_list), MAX_Z))
    for row, numbers in enumerate(numbers_list):
        numbers = np.asarray(numbers, dtype=np.int64)
        check_elements(numbers)
        counts[row] = np.bincount(numbers - 1, minlength=MAX_Z)
    return counts


class CompositionModel(nn.Module):
    """Reference energies per element and copy: ``weight[copy, Z-1]`` in eV/atom."""

    def __init__(self, n_copies: int = 1):
        super().__init__()
        self.register_buffer("weight", torch.zeros(n_copies, MAX_Z))

    def forward(self, numbers: torch.Tensor, atom_copy: FidelityRows, atom_owner: torch.Tensor,
                n_structures: int) -> torch.Tensor:
        """Composition energy of each structure (eV), from per-atom reference energies of each atom's copy."""
        site = self.weight.view(-1).index_select(0, atom_copy.flat_index(numbers - 1, MAX_Z))
        # scatter_add_, not index_add_: torch.compile's CPU code generator fails on index_add_ into a (1,) tensor
        return site.new_zeros(n_structures).scatter_add_(0, atom_owner, site)

    @torch.no_grad()
    def fit(self, numbers_list: Sequence[Sequence[int]], energies: Sequence[float], copy: int = 0,
            predicted: Sequence[float] | None = None) -> np.ndarray:
        """Least-squares fit of total energies (eV) on element counts for one copy; with ``predicted`` (a whole
        model's energies of the same structures, eV, this composition model included) the fit corrects that
        model instead: least squares of ``energies - predicted``, added to the current weights.

        Rank-deficient data (an element absent, or fixed ratios such as P:O = 1:4 in a phosphate)
        is handled by fitting the minimum-norm *change* to the current weights: elements absent from
        the data, and directions the data cannot resolve, keep their previous values.
        Returns the new weights of that copy (eV/atom, indexed by Z-1).
        """
        energies = np.asarray(energies, dtype=float)
        if len(energies) != len(numbers_list) or len(energies) == 0:
            raise ValueError("fit_composition needs one energy per structure and at least one structure")
        if not np.all(np.isfinite(energies)):
            raise ValueError("fit_composition: energies contain NaN or infinite values")
        counts = element_counts(numbers_list)
        current = self.weight[copy].double().cpu().numpy()
        baseline = counts @ current if predicted is None else np.asarray(predicted, dtype=float)
        if baseline.shape != energies.shape:
            raise ValueError(f"fit_composition: {len(baseline)} predicted energies for {len(energies)} structures")
        delta, *_ = np.linalg.lstsq(counts, energies - baseline, rcond=None)
        present = counts.any(axis=0)
        new = current + np.where(present, delta, 0.0)
        self.weight[copy] = torch.as_tensor(new, dtype=self.weight.dtype)
        return new

"""The fidelity idea in one place.

A fidelity is a level of theory (e.g. ``pbe_u`` or ``r2scan``), addressed by name or index.
Four parts of MF-CHGNet may depend on it (paper section 2), each switched by one letter:

- ``E`` embedding: v_i^0 = X_Z + X_f                       -> ``FidelityBias`` on the atom embedding
- ``M`` message passing: [W, W_F][a; onehot(f)] + b        -> ``FidelityBias`` on the first linear layer
  of every gated MLP (core and gate) in AtomConv, BondConv and AngleUpdate
- ``R`` readout: one readout MLP per fidelity              -> ``n_copies(modules, "R", n_F)`` copies
- ``C`` composition model: per-fidelity reference energies -> ``n_copies(modules, "C", n_F)`` rows
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

MODULE_LETTERS = "EMRC"


class Fidelities:
    """Ordered fidelity names; index 0 is the lowest, the last the highest fidelity."""

    def __init__(self, names: Sequence[str]):
        names = tuple(str(n) for n in names)
        if not names:
            raise ValueError("a model needs at least one fidelity name")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate fidelity names in {names}")
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __repr__(self) -> str:
        return f"Fidelities({list(self.names)})"

    def index(self, fidelity: str | int | None) -> int:
        """Index of a fidelity given by name or index (also as text, e.g. "1" from a command line, unless a
        fidelity has that name); None means the highest (last) one."""
        if fidelity is None:
            return len(self.names) - 1
        if isinstance(fidelity, bool):
            raise ValueError(f"unknown fidelity {fidelity!r}; known: {list(self.names)}")
        if isinstance(fidelity, str) and fidelity not in self.names and fidelity.lstrip("-").isdigit():
            fidelity = int(fidelity)
        if isinstance(fidelity, int) or (hasattr(fidelity, "__index__") and not isinstance(fidelity, str)):
            idx = int(fidelity)
            if 0 <= idx < len(self.names):
                return idx
            raise ValueError(
                f"fidelity index {idx} out of range; known fidelities: "
                + ", ".join(f"{k}={n}" for k, n in enumerate(self.names))
            )
        if fidelity in self.names:
            return self.names.index(fidelity)
        raise ValueError(f"unknown fidelity {fidelity!r}; known: {list(self.names)}")

    def name(self, fidelity: str | int | None) -> str:
        return self.names[self.index(fidelity)]


def parse_modules(modules: str) -> str:
    """Normalise a module switch string such as "EMRC", "emr" or "" (plain CHGNet)."""
    letters = str(modules).upper()
    unknown = set(letters) - set(MODULE_LETTERS)
    if unknown:
        raise ValueError(f"unknown fidelity module(s) {sorted(unknown)}; choose from {MODULE_LETTERS!r}")
    return "".join(ch for ch in MODULE_LETTERS if ch in letters)


def n_copies(modules: str, letter: str, n_fidelities: int) -> int:
    """How many copies a per-fidelity part needs: n_F when its switch is on, else 1 (shared)."""
    return n_fidelities if letter in modules else 1


def copy_index(fidelity: torch.Tensor | int, n: int):
    """Map a fidelity (index or per-row tensor) to the copy used by a part with ``n`` copies."""
    if n == 1:
        return 0 if isinstance(fidelity, int) else torch.zeros_like(fidelity)
    return fidelity


class FidelityBias(nn.Module):
    """A learned vector per fidelity, added to a layer's output: the W_F[:, f] of paper eq. 7.

    Starts at zero, so a warm-started model is unchanged until training moves it.
    """

    def __init__(self, n_fidelities: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_fidelities, dim))

    def forward(self, fidelity: torch.Tensor | int) -> torch.Tensor:
        """fidelity: an int (all rows alike, returns (dim,)) or a (rows,) index tensor."""
        if isinstance(fidelity, int):
            return self.weight[fidelity]
        return self.weight.index_select(0, fidelity)

"""The fidelity idea in one place.

A fidelity is a level of theory (e.g. ``pbe_u`` or ``r2scan``), addressed by name or index.
Four parts of MF-CHGNet may depend on it (paper section 2), each switched by one letter:

- ``E`` embedding: v_i^0 = X_Z + X_f                       -> ``FidelityBias`` on the atom embedding
- ``M`` message passing: [W, W_F][a; onehot(f)] + b        -> ``FidelityBias`` on the first linear layer
  of every gated MLP (core and gate) in AtomConv, BondConv and AngleUpdate
- ``R`` readout: one readout MLP per fidelity              -> ``Switches.copies("R")`` copies
- ``C`` composition model: per-fidelity reference energies -> ``Switches.copies("C")`` rows

``Switches`` answers which parts are switched on, ``FidelityRows`` carries the fidelity of the rows of a
batch (one int for a one-fidelity batch, else a per-row tensor) and ``FidelityBias`` / ``FidelityGate`` are
the E and M parameters.
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


class Switches:
    """Which parts of the model depend on the fidelity, from a module string such as "EMRC" (paper section 2).

    A switched-on part has one copy (parameter row, readout, reference-energy row) per fidelity; a
    switched-off part has one copy that every fidelity shares.
    """

    def __init__(self, modules: str, n_fidelities: int):
        self.modules = parse_modules(modules)
        self.n_fidelities = int(n_fidelities)

    def __repr__(self) -> str:
        return f"Switches({self.modules!r}, n_fidelities={self.n_fidelities})"

    def on(self, letter: str) -> bool:
        """Whether part ``letter`` (E, M, R or C) depends on the fidelity."""
        if letter not in MODULE_LETTERS or len(letter) != 1:
            raise ValueError(f"unknown fidelity module {letter!r}; choose from {MODULE_LETTERS!r}")
        return letter in self.modules

    def copies(self, letter: str) -> int:
        """How many copies part ``letter`` has: n_F when it is switched on, else 1 (shared)."""
        return self.n_fidelities if self.on(letter) else 1

    def copy_of(self, letter: str, fidelity: int) -> int:
        """The copy of part ``letter`` that fidelity index ``fidelity`` uses."""
        return int(fidelity) if self.on(letter) else 0


class FidelityRows:
    """The fidelity of each row of a feature table (atoms, bonds or angles of a batch).

    ``value`` is one int when the whole batch has one fidelity (per-fidelity vectors then broadcast, with no
    gather over rows) or a (rows,) index tensor for a mixed batch. Everything that depends on which it is
    lives here.
    """

    __slots__ = ("value",)

    def __init__(self, value: int | torch.Tensor):
        self.value = int(value) if not isinstance(value, torch.Tensor) else value

    def of(self, index: torch.Tensor) -> FidelityRows:
        """The fidelities of rows picked by ``index`` from these rows (e.g. an atom's → its bonds')."""
        return self if isinstance(self.value, int) else FidelityRows(self.value.index_select(0, index))

    def take(self, table: torch.Tensor) -> torch.Tensor:
        """Row f of ``table`` for each row: (dim,) for one fidelity (broadcasts), else (rows, dim)."""
        return table[self.value] if isinstance(self.value, int) else table.index_select(0, self.value)

    def flat_index(self, column: torch.Tensor, width: int) -> torch.Tensor:
        """Index into a flattened (n_copies, width) table of each row's entry ``column``."""
        return self.value * width + column

    def groups(self, n_copies: int):
        """(copy, rows) pairs covering all rows for a part with ``n_copies`` copies; rows None means all."""
        if n_copies == 1 or isinstance(self.value, int):
            yield (0 if n_copies == 1 else self.value), None
            return
        for f in torch.unique(self.value).tolist():
            yield f, torch.nonzero(self.value == f).view(-1)

    def for_copies(self, n_copies: int) -> FidelityRows:
        """The copy each row uses in a part with ``n_copies`` copies (a shared part: copy 0)."""
        return FidelityRows(0) if n_copies == 1 else self


class FidelityBias(nn.Module):
    """A learned vector per fidelity, added to a layer's output: the W_F[:, f] of paper eq. 7.

    Starts at zero, so a warm-started model is unchanged until training moves it.
    """

    def __init__(self, n_fidelities: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_fidelities, dim))

    def forward(self, fidelity: FidelityRows) -> torch.Tensor:
        """The bias of each row's fidelity: (dim,) for a one-fidelity batch, else (rows, dim)."""
        return fidelity.take(self.weight)


class FidelityGate(nn.Module):
    """The M switch for one gated MLP: per-fidelity biases on the first linear layer of its core and gate paths."""

    def __init__(self, n_fidelities: int, hidden: int):
        super().__init__()
        self.core = FidelityBias(n_fidelities, hidden)
        self.gate = FidelityBias(n_fidelities, hidden)

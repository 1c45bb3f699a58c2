"""Shortest interatomic distance per element pair: what a model was trained on, and a warning when a
structure has a closer contact, where the model is extrapolating (its repulsion there is a guess).

The trainer stores the shortest distance of each element pair over its training graphs (within the
model's ``cutoff``) in the model metadata under :data:`METADATA_KEY`; ``MFCalculator`` then warns, once per
pair, when a structure has a pair closer than that, or a pair the training data never had within the
cutoff. A model without the record (a pretrained CHGNet warm start) is not checked.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterable

import numpy as np
from ase.data import chemical_symbols

#: Model metadata key: {"Li-O": 1.87, ...} in Å, the lighter element first.
METADATA_KEY = "shortest_training_distances_A"


class ExtrapolationWarning(UserWarning):
    """A structure lies outside what the model was trained on."""


def edge_distances(graph) -> np.ndarray:
    """Length (Å) of each directed edge of a :class:`~mf_calc.model.graph.Graph`."""
    i, j = graph.edges[:, 0], graph.edges[:, 1]
    return np.linalg.norm(graph.positions[j] + graph.images @ graph.cell - graph.positions[i], axis=1)


def _pair_minima(graph) -> dict[tuple[int, int], float]:
    """Shortest edge per (Z_low, Z_high) pair of one graph."""
    if len(graph.edges) == 0:
        return {}
    z = np.asarray(graph.numbers)[graph.edges]
    pairs = np.sort(z, axis=1)
    keys, inverse = np.unique(pairs, axis=0, return_inverse=True)
    minima = np.full(len(keys), np.inf)
    np.minimum.at(minima, inverse.reshape(-1), edge_distances(graph))
    return {(int(a), int(b)): float(d) for (a, b), d in zip(keys, minima)}


def pair_name(z1: int, z2: int) -> str:
    """``"Li-O"`` for an element pair, the lighter element first."""
    a, b = sorted((int(z1), int(z2)))
    return f"{chemical_symbols[a]}-{chemical_symbols[b]}"


def shortest_distances(graphs: Iterable) -> dict[str, float]:
    """Shortest distance (Å, rounded down to 1 mÅ) per element pair over all edges of ``graphs``."""
    best: dict[tuple[int, int], float] = {}
    for graph in graphs:
        for key, d in _pair_minima(graph).items():
            best[key] = min(d, best.get(key, np.inf))
    return {pair_name(*key): float(np.floor(d * 1000) / 1000) for key, d in sorted(best.items())}


class ContactCheck:
    """Warn (:class:`ExtrapolationWarning`, once per element pair) about contacts closer than the model's
    training data had; ``reference`` is the metadata record (None: nothing is checked).

    Per call this is one table look-up and comparison per edge (the shortest allowed distance of each
    (Z_i, Z_j), +inf for pairs the training data never had, -inf once a pair has been warned about);
    only a structure with a flagged edge is looked at more closely."""

    def __init__(self, reference: dict[str, float] | None):
        self.reference = dict(reference) if reference else None
        self.warned: set[str] = set()
        self.allowed = None
        self._tables: dict = {}  # the table as a torch tensor, per device
        if self.reference is not None:
            self.allowed = np.full((len(chemical_symbols), len(chemical_symbols)), np.inf)
            index = {s: z for z, s in enumerate(chemical_symbols)}
            for name, d in self.reference.items():
                a, b = (index[s] for s in name.split("-"))
                self.allowed[a, b] = self.allowed[b, a] = d

    def check_pairs(self, z_i, z_j, distances) -> None:
        """Check pairs given by atomic numbers and distances (Å), torch tensors on any device (compared there;
        only flagged pairs come to the host)."""
        if self.allowed is None or len(distances) == 0:
            return
        flagged = distances < self._table(distances)[z_i, z_j]
        if not bool(flagged.any()):
            return
        z = np.stack([z_i[flagged].cpu().numpy(), z_j[flagged].cpu().numpy()], 1)
        d = distances[flagged].detach().cpu().numpy()
        keys, inverse = np.unique(np.sort(z, axis=1), axis=0, return_inverse=True)
        minima = np.full(len(keys), np.inf)
        np.minimum.at(minima, inverse.reshape(-1), d)
        for (a, b), shortest in zip(keys, minima):
            self._warn((int(a), int(b)), float(shortest))

    def _table(self, like):
        """The table of shortest allowed distances as a torch tensor on the device and in the dtype of ``like``."""
        if self._tables.get(like.device) is None:
            import torch

            self._tables[like.device] = torch.as_tensor(self.allowed, dtype=like.dtype, device=like.device)
        return self._tables[like.device]

    def _warn(self, key: tuple[int, int], d: float) -> None:
        name = pair_name(*key)
        if name in self.warned:
            return
        ref = self.reference.get(name)
        if ref is None:
            problem = f"the training data never had a {name} pair within the cutoff"
        elif d < ref:
            problem = f"the training data's shortest {name} distance is {ref:.3f} Å"
        else:
            return
        self.warned.add(name)
        self.allowed[key] = self.allowed[key[::-1]] = -np.inf  # warned once is enough
        self._tables.clear()
        warnings.warn(f"a {name} contact of {d:.3f} Å: {problem}, so the model is extrapolating here "
                      "(energies and forces may be unphysical)", ExtrapolationWarning, stacklevel=5)


_CHECKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def contact_check_for(model) -> ContactCheck:
    """The one :class:`ContactCheck` of ``model`` (its metadata record), shared by every calculator of that
    model, so that a NEB band or a hull's many relaxations warn once per element pair, not once per image."""
    reference = model.metadata.get(METADATA_KEY)
    check = _CHECKS.get(model)
    if check is None or check.reference != (dict(reference) if reference else None):  # new or retrained
        check = _CHECKS[model] = ContactCheck(reference)
    return check

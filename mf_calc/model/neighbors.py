"""Verlet-skin reuse of the neighbour search between MD / optimiser steps.

The pair search runs with radius cutoff + skin; later calls only recompute the distances of
those candidate pairs and keep the ones inside the cutoff, which gives exactly the graph a fresh
search would. The search is redone when the candidates may be incomplete: when the bound
2·max|Δr| + Σ_k max|image_k|·|Δcell_k| on how far any pair vector moved reaches the skin,
or when the atoms, their order or the periodicity change.
"""

from __future__ import annotations

import numpy as np

from mf_calc.model.graph import Graph, check_distances, check_structure, directed_from_pairs, neighbor_pairs


class NeighborCache:
    """Builds graphs of successive configurations of one system (Å)."""

    def __init__(self, cutoff: float, bond_cutoff: float, skin: float = 1.0):
        if skin < 0:
            raise ValueError("skin must be >= 0 Å")
        self.cutoff, self.bond_cutoff, self.skin = cutoff, bond_cutoff, skin
        self.n_builds = 0
        self.n_reuses = 0
        self._key = None

    def _stale(self, numbers, positions, cell, pbc) -> bool:
        if self._key is None or self._key[0] != (numbers.tobytes(), tuple(pbc)):
            return True
        _, ref_pos, ref_cell, max_img = self._key
        moved = 2.0 * np.linalg.norm(positions - ref_pos, axis=1).max(initial=0.0)
        strained = float(max_img @ np.linalg.norm(cell - ref_cell, axis=1))
        return moved + strained >= self.skin

    def graph(self, numbers, positions, cell, pbc, fidelity: int = 0) -> Graph:
        numbers = np.asarray(numbers, dtype=np.int64)
        positions = np.asarray(positions, dtype=float)
        cell = np.asarray(cell, dtype=float)
        pbc = tuple(bool(p) for p in np.broadcast_to(pbc, 3))
        check_structure(numbers, positions, cell, pbc)
        if self._stale(numbers, positions, cell, pbc):
            i, j, img, _ = neighbor_pairs(positions, cell, pbc, self.cutoff + self.skin)
            max_img = np.abs(img).max(axis=0) if len(img) else np.zeros(3)
            self._key = ((numbers.tobytes(), pbc), positions.copy(), cell.copy(), max_img.astype(float))
            self._pairs = (i, j, img)
            self.n_builds += 1
        else:
            self.n_reuses += 1
        i, j, img = self._pairs
        dist = np.linalg.norm(positions[j] + img @ cell - positions[i], axis=1)
        keep = dist < self.cutoff
        check_distances(i[keep], j[keep], dist[keep])
        edges, images, dir2und, und2dir, angles = directed_from_pairs(
            len(numbers), i[keep], j[keep], img[keep], dist[keep], self.bond_cutoff
        )
        return Graph(numbers, positions, cell, edges, images, dir2und, und2dir, angles, int(fidelity))

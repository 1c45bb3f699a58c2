"""Crystal graphs of a batch of systems built on the model's device, with Verlet-skin reuse.

The candidate pairs within cutoff + skin come from vesin's neighbour search (:func:`candidate_pairs`, on the
device of the positions: CPU or CUDA), run again only for a system whose atoms may have moved past the skin
(bound in ``DeviceGraphBuilder._stale``) or whose atoms changed. Every
call then computes on the device, for all systems at once: pair distances, the cutoff mask, the
directed edges and undirected map, the angle triplets, the overlap and isolated-atom checks and the
contact check. The same pipeline makes the graphs of training data and batched predictions
(``graph.build_graph``: one system, no skin). Positions in Å, cells with lattice vectors as rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from vesin_torch import NeighborList

from mf_calc.model.graph import MIN_DISTANCE, Batch, check_cells, check_distances, check_numbers


def candidate_pairs(search: NeighborList, positions: Tensor, cell: Tensor, pbc: Tensor) -> tuple[Tensor, ...]:
    """Each unordered pair within the search's cutoff once, on the device of ``positions`` (n, 3) float64 Å:
    atom indices i, j and the integer image (as float64) with |r_j + image·cell − r_i| < cutoff. ``pbc`` (3,)
    bool on the same device. The graph adds each pair's reverse, so it is symmetric by construction."""
    if not bool(pbc.any()):  # the box plays no part; vesin is given a finite one all the same
        span = (positions.max(0).values - positions.min(0).values).max()
        cell = torch.eye(3, dtype=positions.dtype, device=positions.device) * (span + 1.0)
    i, j, shifts = search.compute(positions, cell, pbc, "ijS")
    return i.long(), j.long(), shifts.to(positions.dtype)


def angle_triplets(centers: Tensor, lengths: Tensor, bond_cutoff: float) -> Tensor:
    """(n_ang, 3) centre atom, directed bond a, directed bond b: every ordered pair a != b of directed bonds
    shorter than ``bond_cutoff`` with the same centre."""
    short = torch.nonzero(lengths < bond_cutoff).view(-1)
    if len(short) == 0:
        return torch.zeros((0, 3), dtype=torch.long, device=centers.device)
    order = short[torch.argsort(centers[short], stable=True)]
    _, counts = torch.unique_consecutive(centers[order], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    squares = counts * counts
    group_of = torch.repeat_interleave(torch.arange(len(counts), device=centers.device), squares)
    first = torch.repeat_interleave(torch.cumsum(squares, 0) - squares, squares)
    local = torch.arange(len(group_of), device=centers.device) - first
    k = counts[group_of]
    a_local, b_local = local // k, local % k
    keep = a_local != b_local
    base = starts[group_of][keep]
    a, b = order[base + a_local[keep]], order[base + b_local[keep]]
    return torch.stack([centers[a], a, b], 1)


class DeviceGraphBuilder:
    """Graphs of successive configurations of a batch of systems, as a :class:`Batch` on the device of the
    positions. cutoff, bond_cutoff, skin in Å (skin 0: a fresh search every call)."""

    def __init__(self, cutoff: float, bond_cutoff: float, skin: float = 1.0, contacts=None):
        if skin < 0:
            raise ValueError("skin must be >= 0 Å")
        self.cutoff, self.bond_cutoff, self.skin = cutoff, bond_cutoff, skin
        self.contacts = contacts  # a ContactCheck (or None): warns about contacts closer than the training data's
        self.n_builds = 0  # candidate searches, counted per system
        self.n_reuses = 0
        self._layout = None  # numbers, atoms per system, pbc of the systems searched
        self._pairs: list[tuple[Tensor, Tensor, Tensor]] = []  # per system: i, j (global), image

    def batch(self, numbers: Tensor, positions: Tensor, cells: Tensor, n_atoms: Sequence[int] | Tensor,
              pbc, fidelity, dtype=torch.float32) -> Batch:
        """The batch of systems given by ``n_atoms`` (atoms grouped by system, in order); ``cells`` (B, 3, 3);
        ``fidelity``: an index for all systems or one per system. Raises ValueError naming the problem
        for non-finite positions or cell, overlapping or isolated atoms, or an unknown element."""
        device = positions.device
        n_atoms = torch.as_tensor(n_atoms, dtype=torch.long).cpu()
        pbc = tuple(bool(p) for p in np.broadcast_to(np.asarray(pbc, dtype=bool), 3))
        positions = positions.detach().to(torch.float64)
        cells = cells.detach().to(torch.float64)
        if not bool(torch.isfinite(cells).all()):
            raise ValueError(f"non-finite cell {cells.tolist()}")
        if not bool(torch.isfinite(positions).all()):
            bad = torch.nonzero(~torch.isfinite(positions).all(1)).view(-1).tolist()
            raise ValueError(f"non-finite (NaN or infinite) position(s) of atom(s) {bad[:10]}")
        volumes = torch.abs(torch.linalg.det(cells))
        check_cells(cells, volumes, pbc)
        numbers_np = numbers.detach().cpu().numpy().astype(np.int64) if torch.is_tensor(numbers) else np.asarray(numbers)
        layout = (numbers_np, n_atoms.numpy(), pbc)
        if not self._same_layout(layout):
            self._new_layout(layout, device)  # checks the atoms of each system
        elif all(pbc):
            positions = self._unwrapped(positions, cells)
        i, j, img = self._candidates(positions, cells)
        owner = self._owner
        lengths = torch.linalg.norm(positions[j] + torch.bmm(img.unsqueeze(1), cells[owner[i]]).squeeze(1)
                                    - positions[i], dim=1)
        keep = torch.nonzero(lengths < self.cutoff).view(-1)
        i, j, img, lengths = i[keep], j[keep], img[keep], lengths[keep]
        self._check(i, j, lengths, len(positions))
        und = torch.arange(len(i), device=device)
        edges = torch.stack([torch.cat([i, j]), torch.cat([j, i])], 1)
        fid = torch.as_tensor(fidelity, dtype=torch.long).view(-1).expand(len(n_atoms)).contiguous()
        return Batch(numbers=self._numbers, positions=positions.to(dtype), cells=cells.to(dtype),
                     volumes=volumes.to(dtype), edges=edges,
                     images=torch.cat([img, -img]).to(dtype), dir2und=torch.cat([und, und]), und2dir=und,
                     angles=angle_triplets(edges[:, 0], torch.cat([lengths, lengths]), self.bond_cutoff),
                     atom_owner=owner, n_atoms=self._n_atoms, fidelity=fid.to(device),
                     uniform_fidelity=int(fid[0]) if bool((fid == fid[0]).all()) else None)

    # ------------------------------------------------------------------ candidates
    def _same_layout(self, layout) -> bool:
        old = self._layout
        return (old is not None and old[2] == layout[2] and np.array_equal(old[1], layout[1])
                and np.array_equal(old[0], layout[0]))

    def _new_layout(self, layout, device) -> None:
        """Forget every search: other atoms, another order or other periodicity."""
        numbers_np, n_atoms, pbc = layout
        bounds = np.r_[0, np.cumsum(n_atoms)]
        for a, e in zip(bounds[:-1], bounds[1:]):
            check_numbers(numbers_np[a:e])  # before any state changes: a refused layout leaves the builder as it was
        self._layout, self._bounds = layout, bounds
        self._pbc = torch.tensor(pbc, device=device)
        self._numbers = torch.as_tensor(numbers_np, device=device)
        self._n_atoms = torch.as_tensor(n_atoms, device=device)
        self._owner = torch.repeat_interleave(torch.arange(len(n_atoms), device=device), self._n_atoms)
        self._pairs = [None] * len(n_atoms)
        self._ref_positions = self._ref_cells = None

    def _unwrapped(self, positions: Tensor, cells: Tensor) -> Tensor:
        """Each atom at its periodic image nearest to where it was at the last search, so that wrapping atoms
        into the cell (as TorchSim does) does not force a new search; energies, forces and stress do not
        depend on the image."""
        owner = self._owner
        frac = torch.bmm((positions - self._ref_positions).unsqueeze(1), torch.linalg.inv(cells)[owner]).squeeze(1)
        return positions - torch.bmm(torch.round(frac).unsqueeze(1), cells[owner]).squeeze(1)

    def _stale(self, positions: Tensor, cells: Tensor) -> np.ndarray:
        """Per system: whether its candidate pairs may be incomplete. A pair vector r = d·H (d: fractional,
        H: cell rows) changes since the search by Δd·H + r_ref·(H_ref⁻¹ΔH); no pair farther than cutoff + skin
        then can have come within the cutoff while 2·max|Δs·H| + (cutoff + skin)·‖H_ref⁻¹ΔH‖₂ < skin, where
        Δs·H is each atom's displacement beyond the affine one of the cell change (a barostat's rescaling of
        the positions costs nothing)."""
        if self._ref_positions is None:
            return np.ones(len(self._pairs), dtype=bool)
        owner = self._owner
        eye = torch.eye(3, dtype=cells.dtype, device=cells.device)
        if np.any(self._layout[2]):  # H_ref⁻¹ H: the identity for a fixed cell
            deformation = torch.linalg.solve(self._ref_cells, cells)
        else:  # a molecule: the cell (maybe none) plays no part
            deformation = eye.expand(len(cells), 3, 3)
        affine = torch.bmm(self._ref_positions.unsqueeze(1), deformation[owner]).squeeze(1)
        moved = torch.zeros(len(cells), dtype=positions.dtype, device=positions.device).scatter_reduce(
            0, owner, torch.linalg.norm(positions - affine, dim=1), "amax")
        strain = torch.linalg.matrix_norm(deformation - eye, ord=2)
        return (2.0 * moved + (self.cutoff + self.skin) * strain >= self.skin).cpu().numpy()

    def _candidates(self, positions: Tensor, cells: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Candidate pairs (global atom indices, integer images) within cutoff + skin of every system, searched
        again (``candidate_pairs``) for the stale systems only."""
        stale = self._stale(positions, cells)
        self.n_reuses += int((~stale).sum())
        if stale.any():
            self._search(np.flatnonzero(stale), positions, cells)
        return self._candidate_tensors

    def _search(self, systems: np.ndarray, positions: Tensor, cells: Tensor) -> None:
        rows = torch.as_tensor(systems, device=cells.device)
        search = NeighborList(cutoff=self.cutoff + self.skin, full_list=False, n_threads=torch.get_num_threads())
        for b in systems:
            a, e = self._bounds[b], self._bounds[b + 1]
            i, j, img = candidate_pairs(search, positions[a:e].contiguous(), cells[b].contiguous(), self._pbc)
            self._pairs[b] = (i + int(a), j + int(a), img)
            self.n_builds += 1
        self._candidate_tensors = tuple(torch.cat(parts) for parts in zip(*self._pairs))
        if self._ref_positions is None:
            self._ref_positions, self._ref_cells = positions.clone(), cells.clone()
        else:
            atoms = torch.nonzero(torch.isin(self._owner, rows)).view(-1)
            self._ref_positions[atoms], self._ref_cells[rows] = positions[atoms], cells[rows]

    # ------------------------------------------------------------------ checks
    def _check(self, i: Tensor, j: Tensor, lengths: Tensor, n_total: int) -> None:
        """ValueError for overlapping atoms (closer than MIN_DISTANCE) or atoms without a neighbour within the
        cutoff; then the contact check, from the same distances."""
        close = lengths < MIN_DISTANCE
        seen = torch.zeros(n_total, dtype=torch.bool, device=i.device)
        seen[i], seen[j] = True, True
        if bool(close.any() | ~seen.all()):
            if bool(close.any()):
                check_distances(i[close].cpu().numpy(), j[close].cpu().numpy(), lengths[close].cpu().numpy())
            lonely = torch.nonzero(~seen).view(-1).tolist()
            raise ValueError(f"isolated atom(s) {lonely[:10]}: no neighbour within the cutoff; the model is undefined "
                             "for them (check the cell and positions)")
        if self.contacts is not None:
            self.contacts.check_pairs(self._numbers[i], self._numbers[j], lengths)

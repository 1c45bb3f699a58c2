"""Crystal graphs for MF-CHGNet, built straight from arrays (no pymatgen Structure per call).

The atom graph holds every directed pair within ``cutoff`` (Å); the bond graph holds every
ordered pair of distinct directed bonds that share a centre atom and are both shorter than
``bond_cutoff`` (Å). This is the same graph chgnet's ``CrystalGraphConverter`` builds, made with vectorised
torch (``mf_calc.model.device_graph``, the one graph pipeline) instead of chgnet's per-edge
Python loops; the neighbour search is vesin's (on the CPU or a GPU), checked against a brute-force search in
the tests and against pymatgen's ``find_points_in_spheres`` (the routine chgnet relies on) in
``benchmarks/neighbor_search.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mf_calc.constants import MAX_Z


@dataclass
class Graph:
    """One structure's graph. Positions in Å, cell rows are lattice vectors in Å.

    edges: (n_dir, 2) centre, neighbour atom index; images: (n_dir, 3) integer cell shifts of the
    neighbour; dir2und: (n_dir,) undirected bond of each directed bond; und2dir: (n_und,) one
    directed bond of each undirected bond; angles: (n_ang, 3) centre atom, directed bond a,
    directed bond b.
    """

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    edges: np.ndarray
    images: np.ndarray
    dir2und: np.ndarray
    und2dir: np.ndarray
    angles: np.ndarray
    fidelity: int = 0

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)


def check_elements(numbers: np.ndarray) -> None:
    """Raise ValueError if an atomic number is outside CHGNet's embedding (1..94)."""
    bad = sorted({int(z) for z in numbers if z < 1 or z > MAX_Z})
    if bad:
        raise ValueError(
            f"element(s) with atomic number {bad} are outside the model's embedding (Z = 1..{MAX_Z})"
        )


MIN_DISTANCE = 0.1  # Å: closer atoms are taken as a mistake in the input (two atoms at one position)


def check_numbers(numbers: np.ndarray) -> None:
    """Raise ValueError for a system without atoms or with an element the model cannot describe."""
    if len(numbers) == 0:
        raise ValueError("the structure has no atoms")
    check_elements(numbers)


def check_cells(cells: torch.Tensor, volumes: torch.Tensor, pbc) -> None:
    """Raise ValueError for a periodic direction without a proper cell vector: (B, 3, 3) cells in Å whose
    ``volumes`` (B, Å³, |det|) are below 1e-6 Å³ while some direction is periodic."""
    if not np.any(pbc):
        return
    flat = volumes < 1e-6
    if bool(flat.any()):
        cell = cells[torch.nonzero(flat).view(-1)[0]].tolist()
        raise ValueError(f"periodic structure (pbc={list(pbc)}) with a zero-volume cell {cell}: "
                         "set the cell, or pbc=False for a molecule")


def check_distances(i: np.ndarray, j: np.ndarray, distances: np.ndarray) -> None:
    """Raise ValueError for atoms closer than MIN_DISTANCE (the same atom twice, or a wrong cell)."""
    close = np.flatnonzero(distances < MIN_DISTANCE)
    if len(close):
        k = close[0]
        raise ValueError(f"atoms {int(i[k])} and {int(j[k])} are {float(distances[k]):.3f} Å apart (closer than "
                         f"{MIN_DISTANCE} Å): overlapping atoms; check the positions and the cell"
                         + (f" ({len(close)} such pairs)" if len(close) > 1 else ""))


def build_graph(numbers, positions, cell, pbc, *, cutoff: float, bond_cutoff: float, fidelity: int = 0) -> Graph:
    """Graph of one structure, made by the one graph pipeline (:class:`~mf_calc.model.device_graph.DeviceGraphBuilder`
    on the CPU, no skin). Raises ValueError naming the problem for invalid input (``check_numbers``,
    ``check_cells``, ``check_distances``) and for isolated atoms."""
    from mf_calc.model.device_graph import DeviceGraphBuilder

    numbers = np.asarray(numbers, dtype=np.int64)
    positions = np.asarray(positions, dtype=float)
    cell = np.asarray(cell, dtype=float)
    batch = DeviceGraphBuilder(cutoff, bond_cutoff, skin=0.0).batch(
        torch.from_numpy(numbers), torch.from_numpy(positions), torch.from_numpy(cell)[None], [len(numbers)], pbc,
        fidelity, dtype=torch.float64)
    return Graph(numbers, positions, cell, batch.edges.numpy(), np.rint(batch.images.numpy()).astype(np.int64),
                 batch.dir2und.numpy(), batch.und2dir.numpy(), batch.angles.numpy(), int(fidelity))


def graph_from_atoms(atoms, *, cutoff: float, bond_cutoff: float, fidelity: int = 0) -> Graph:
    """Graph of an ``ase.Atoms`` (no calculator or pymatgen conversion involved)."""
    return build_graph(
        atoms.numbers, atoms.positions, np.asarray(atoms.cell), atoms.pbc,
        cutoff=cutoff, bond_cutoff=bond_cutoff, fidelity=fidelity,
    )


@dataclass
class Batch:
    """Several graphs concatenated, as torch tensors, ready for ``MFCHGNet.forward``.

    ``fidelity`` is per structure; ``atom_owner`` maps atoms to structures. ``uniform_fidelity``
    is the shared fidelity index when all structures have the same one (a fast path), else None.
    """

    numbers: torch.Tensor
    positions: torch.Tensor
    cells: torch.Tensor
    volumes: torch.Tensor
    edges: torch.Tensor
    images: torch.Tensor
    dir2und: torch.Tensor
    und2dir: torch.Tensor
    angles: torch.Tensor
    atom_owner: torch.Tensor
    n_atoms: torch.Tensor
    fidelity: torch.Tensor
    uniform_fidelity: int | None

    @property
    def n_structures(self) -> int:
        return len(self.n_atoms)

    def to(self, device) -> Batch:
        moved = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in self.__dict__.items()}
        return Batch(**moved)


def collate(graphs: list[Graph], dtype=torch.float32) -> Batch:
    """Concatenate graphs with index offsets into one ``Batch``."""
    if len(graphs) == 0:
        raise ValueError("cannot collate an empty list of graphs")
    n_atoms = np.array([g.n_atoms for g in graphs])
    n_dir = np.array([len(g.edges) for g in graphs])
    n_und = np.array([len(g.und2dir) for g in graphs])
    atom_off = np.r_[0, np.cumsum(n_atoms)[:-1]]
    dir_off = np.r_[0, np.cumsum(n_dir)[:-1]]
    und_off = np.r_[0, np.cumsum(n_und)[:-1]]
    offsets = np.array([0, 1, 1])  # angle columns: atom, directed bond, directed bond

    def cat(parts, dt=np.int64):
        return torch.from_numpy(np.concatenate(parts).astype(dt, copy=False))

    cells = np.stack([g.cell for g in graphs])
    fids = [g.fidelity for g in graphs]
    return Batch(
        numbers=cat([g.numbers for g in graphs]),
        positions=cat([g.positions for g in graphs], np.float64).to(dtype),
        cells=torch.from_numpy(cells).to(dtype),
        volumes=torch.from_numpy(np.abs(np.linalg.det(cells))).to(dtype),
        edges=cat([g.edges + a for g, a in zip(graphs, atom_off)]),
        images=cat([g.images for g in graphs], np.float64).to(dtype),
        dir2und=cat([g.dir2und + u for g, u in zip(graphs, und_off)]),
        und2dir=cat([g.und2dir + d for g, d in zip(graphs, dir_off)]),
        angles=cat([g.angles + np.where(offsets == 0, a, d) for g, a, d in zip(graphs, atom_off, dir_off)]).reshape(-1, 3),
        atom_owner=torch.from_numpy(np.repeat(np.arange(len(graphs)), n_atoms)),
        n_atoms=torch.from_numpy(n_atoms),
        fidelity=torch.tensor(fids, dtype=torch.long),
        uniform_fidelity=fids[0] if len(set(fids)) == 1 else None,
    )

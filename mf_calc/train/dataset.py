"""Training data: fidelity-tagged ``Frame``s, their graphs (built once per model layout) and labels.

Label units inside training: energy per atom eV/atom, forces eV/Å, stress GPa as a 3×3 tensor
(ASE sign; frames hold eV/Å³ Voigt), magmoms μB as absolute values (the model predicts |m|).
A missing label is masked, never replaced by zeros.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase.stress import voigt_6_to_full_3x3_stress
from torch import Tensor

from mf_calc.constants import EV_A3_TO_GPA
from mf_calc.data import DataError, Frame
from mf_calc.model.graph import Batch, Graph, collate

TARGETS = "efsm"
ATOM_LEVEL = {"f", "m"}  # labels per atom; e and s are per structure


#: ``info`` keys naming the configuration a frame was made from (first found wins)
GROUP_KEYS = ("config_id", "trajectory")
#: The protocol of ``FrameDataset.split``; a new protocol gets a new name, so records of runs validated the old
#: way (``benchmarks/paper_experiments``) are not taken for runs of the new one
SPLIT_PROTOCOL = "by configuration, each fidelity its own seeded stream"


def _configuration(frame: Frame, index: int):
    """The configuration a frame belongs to: its first ``GROUP_KEYS`` value, else the frame alone."""
    for key in GROUP_KEYS:
        if key in frame.atoms.info:
            return (key, str(frame.atoms.info[key]))
    return ("frame", index)


@dataclass
class Labels:
    """Labels of a batch: ``values[t]`` and boolean ``masks[t]`` (per structure for e, s; per atom for f, m)."""

    values: dict[str, Tensor]
    masks: dict[str, Tensor]

    def to(self, device) -> Labels:
        return Labels({k: v.to(device) for k, v in self.values.items()}, {k: v.to(device) for k, v in self.masks.items()})


def structure_key(atoms, tol: float = 1e-4) -> bytes:
    """Identity of a structure: atomic numbers, positions and cell rounded to ``tol`` Å."""
    coords = np.round(np.r_[atoms.positions.ravel(), atoms.cell.array.ravel()] / tol).astype(np.int64)
    return np.asarray(atoms.numbers, dtype=np.int64).tobytes() + coords.tobytes()


def read_dataset(specs: Sequence[str]) -> FrameDataset:
    """FrameDataset of ``FILE[:FIDELITY]`` specs (a spec naming an existing file is a file alone)."""
    from mf_calc.data import read_frames

    frames = []
    for spec in specs:
        path, fidelity = spec, None
        if not Path(spec).exists() and ":" in spec:
            path, _, fidelity = spec.rpartition(":")
        frames.extend(read_frames(path, fidelity=fidelity or None))
    return FrameDataset(frames)


class FrameDataset:
    """A list of labelled frames; knows its fidelity names (in order of first appearance)."""

    def __init__(self, frames: Iterable[Frame]):
        self.frames = list(frames)
        self._graph_sets: dict[tuple, GraphSet] = {}

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, idx: int) -> Frame:
        return self.frames[idx]

    @property
    def fidelity_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.fidelity for f in self.frames))

    def subset(self, indices: Sequence[int]) -> FrameDataset:
        return FrameDataset([self.frames[i] for i in indices])

    def by_fidelity(self, name: str) -> FrameDataset:
        return FrameDataset([f for f in self.frames if f.fidelity == name])

    def split(self, val_fraction: float, seed: int) -> tuple[FrameDataset, FrameDataset]:
        """Random (train, validation) split by configuration, stratified by fidelity, reproducible from ``seed``:
        frames sharing a configuration (``info`` key of ``GROUP_KEYS``: the MD snapshots and strained copies of
        one relaxed configuration) go to the same side, so validation never sees a sibling of a training frame.
        Whole configurations are drawn until ``val_fraction`` of the fidelity's frames is reached; a frame
        without such a key is a configuration of its own. Each fidelity draws from its own seeded stream, so the
        frames of a fidelity held out at a seed do not depend on which other fidelities are in the data (an MF
        run and a single-fidelity run validate on the same high-fidelity frames)."""
        val: list[int] = []
        for name in self.fidelity_names:
            rng = np.random.default_rng([seed, 1, zlib.crc32(name.encode())])
            groups: dict = {}
            for i, f in enumerate(self.frames):
                if f.fidelity == name:
                    groups.setdefault(_configuration(f, i), []).append(i)
            members = list(groups.values())
            n_frames = sum(len(m) for m in members)
            n_val = int(round(val_fraction * n_frames))
            if val_fraction > 0 and n_val == 0 and len(members) > 1:
                n_val = 1
            taken = 0
            for g in rng.permutation(len(members)):
                if taken >= n_val:
                    break
                val.extend(members[g])
                taken += len(members[g])
        val_set = set(val)
        return self.subset([i for i in range(len(self)) if i not in val_set]), self.subset(sorted(val))

    def fingerprint(self) -> str:
        """SHA-256 over fidelities, atomic numbers, positions (1e-6 Å), cells and energies: detects changed data."""
        h = hashlib.sha256()
        for f in self.frames:
            h.update(f.fidelity.encode())
            h.update(structure_key(f.atoms, 1e-6))
            h.update(np.float64(np.nan if f.energy is None else f.energy).tobytes())
        return h.hexdigest()

    def check_fidelities(self, model_fidelities: Sequence[str]) -> None:
        """Raise ValueError naming the first frame whose fidelity the model does not have."""
        known = tuple(model_fidelities)
        for frame in self.frames:
            if frame.fidelity not in known:
                raise ValueError(
                    f"{frame.source}: fidelity {frame.fidelity!r} is not one of the model's fidelities {list(known)}"
                )

    def graphs(self, model) -> GraphSet:
        """Graphs and label tensors for ``model``'s cutoffs and fidelity order, built once and cached."""
        key = (model.config.cutoff, model.config.bond_cutoff, tuple(model.fidelities.names))
        if key not in self._graph_sets:
            self.check_fidelities(model.fidelities.names)
            self._graph_sets[key] = GraphSet(self.frames, model)
        return self._graph_sets[key]


def _graph(model, frame: Frame) -> Graph:
    try:
        return model.graph(frame.atoms, frame.fidelity)
    except ValueError as exc:
        raise DataError(f"{frame.source}: {exc}") from exc


class GraphSet:
    """Pre-built graphs and per-frame label tensors; ``batch(indices)`` collates a batch."""

    def __init__(self, frames: Sequence[Frame], model):
        self.graphs = [_graph(model, f) for f in frames]
        self.fidelity = np.array([f.fidelity for f in frames], dtype=object)
        self.n_atoms = np.array([g.n_atoms for g in self.graphs], dtype=np.int64)
        self.has = {
            "e": np.array([f.energy is not None for f in frames]),
            "f": np.array([f.forces is not None for f in frames]),
            "s": np.array([f.stress is not None for f in frames]),
            "m": np.array([f.magmoms is not None for f in frames]),
        }
        nan = float("nan")
        self.energy_pa = torch.tensor([nan if f.energy is None else f.energy / len(f.atoms) for f in frames],
                                      dtype=torch.float64)
        self.stress = torch.from_numpy(np.stack([
            np.full((3, 3), nan) if f.stress is None else voigt_6_to_full_3x3_stress(f.stress) * EV_A3_TO_GPA for f in frames
        ]))
        self.forces = [torch.from_numpy(np.full((len(f.atoms), 3), nan) if f.forces is None else f.forces) for f in frames]
        self.magmoms = [torch.from_numpy(np.full(len(f.atoms), nan) if f.magmoms is None else np.abs(f.magmoms))
                        for f in frames]

    def __len__(self) -> int:
        return len(self.graphs)

    def epoch_frames(self, fraction: dict[str, float], seed: int, epoch: int) -> np.ndarray:
        """Sorted indices of the frames trained on in ``epoch``: all of them, except that each fidelity named
        in ``fraction`` contributes a random ``round(share · n)`` (at least 1) of its n frames, drawn from
        (seed, epoch) only, so every process and a resumed run draw the same subset."""
        unknown = sorted(set(fraction) - set(self.fidelity))
        if unknown:
            raise ValueError(f"fidelity_fraction names fidelities without training frames: {unknown}")
        keep = np.ones(len(self), dtype=bool)
        rng = np.random.default_rng([seed, epoch, 7])
        for name, share in sorted(fraction.items()):
            idx = np.flatnonzero(self.fidelity == name)
            n = max(1, round(share * len(idx)))
            keep[idx] = False
            keep[rng.choice(idx, n, replace=False)] = True
        return np.flatnonzero(keep)

    def counts(self, indices: Sequence[int]) -> dict[str, int]:
        """Number of labelled elements per target in ``indices``: the loss normalisers."""
        idx = np.asarray(indices, dtype=np.int64)
        atoms = self.n_atoms[idx]
        return {
            "e": int(self.has["e"][idx].sum()),
            "f": int(3 * atoms[self.has["f"][idx]].sum()),
            "s": int(9 * self.has["s"][idx].sum()),
            "m": int(atoms[self.has["m"][idx]].sum()),
        }

    def batch(self, indices: Sequence[int], dtype=torch.float32) -> tuple[Batch, Labels]:
        """Collated graphs and labels (in ``dtype``) of the frames ``indices``."""
        idx = np.asarray(indices, dtype=np.int64)
        batch = collate([self.graphs[i] for i in idx], dtype)
        tidx = torch.from_numpy(idx)
        values = {
            "e": self.energy_pa.index_select(0, tidx).to(dtype),
            "f": torch.cat([self.forces[i] for i in idx]).to(dtype),
            "s": self.stress.index_select(0, tidx).to(dtype),
            "m": torch.cat([self.magmoms[i] for i in idx]).to(dtype),
        }
        atoms = self.n_atoms[idx]
        masks = {
            t: torch.from_numpy(np.repeat(self.has[t][idx], atoms) if t in ATOM_LEVEL else self.has[t][idx].copy())
            for t in TARGETS
        }
        return batch, Labels(values, masks)

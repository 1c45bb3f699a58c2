"""The benchmark frames by role (high, low, test, paired), their hashes, seeded nested subsets, and a
synthetic file set for tests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .plan import HIGH, LOW, TINY_MODEL, Scale

DATA_FILES = {  # role -> file name in --data
    "high": "lmfp_r2scan_train.extxyz.gz",
    "test": "lmfp_r2scan_test.extxyz.gz",
    "low": "lmfp_pbe_u_train.extxyz.gz",
    "paired_high": "lmfp_paired_r2scan.extxyz.gz",
    "paired_low": "lmfp_paired_pbe_u.extxyz.gz",
}


ROLE_FIDELITY = {"high": HIGH, "test": HIGH, "low": LOW, "paired_high": HIGH, "paired_low": LOW}


SYNTHETIC_MARKER = "SYNTHETIC.json"  # written by write_synthetic_data: the data are not the benchmark's


@dataclass
class Data:
    """The benchmark frames by role, the test set (graphs cached across runs) and the files' SHA-256."""

    high: list
    low: list
    test: object  # FrameDataset
    paired_high: list
    paired_low: list
    files: dict[str, str]  # role -> sha256 of the file
    root: Path
    synthetic: bool

    @property
    def sizes(self) -> dict[str, int]:
        sizes = {"high": len(self.high), "low": len(self.low), "test": len(self.test)}
        return {**sizes, "paired": len(self.paired_high)} if self.paired_high else sizes


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_role(root: Path, role: str) -> list:
    """The frames of one data file, checked to be of the role's fidelity."""
    from mf_calc.data import read_frames

    path = root / DATA_FILES[role]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; write the benchmark data with benchmarks/make_data.py "
                                f"(--scale smoke for a tiny set) or pass --data")
    frames = read_frames(path)
    wrong = [f.source for f in frames if f.fidelity != ROLE_FIDELITY[role]]
    if wrong:
        raise ValueError(f"{wrong[0]}: fidelity is not {ROLE_FIDELITY[role]!r} ({len(wrong)} such frames in {path})")
    return frames


def load_data(root, scale: Scale, paired: bool) -> Data:
    """Read the benchmark files (the paired ones only when ``paired``), the test set capped at ``scale.max_test``."""
    from mf_calc.train import FrameDataset

    root = Path(root)
    roles = [r for r in DATA_FILES if paired or not r.startswith("paired")]
    frames = {role: read_role(root, role) for role in roles}
    if paired and len(frames["paired_high"]) != len(frames["paired_low"]):
        raise ValueError(f"{root}: the paired files hold {len(frames['paired_high'])} r2scan and "
                         f"{len(frames['paired_low'])} pbe_u frames; they must be the same structures in the same order")
    return Data(high=frames["high"], low=frames["low"], test=FrameDataset(frames["test"][: scale.max_test]),
                paired_high=frames.get("paired_high", []), paired_low=frames.get("paired_low", []),
                files={role: file_sha256(root / DATA_FILES[role]) for role in roles}, root=root,
                synthetic=(root / SYNTHETIC_MARKER).is_file())


STREAMS = {"high": 0, "low": 1, "paired": 2}


def pick(n_items: int, n: int | None, seed: int, stream: str) -> list[int]:
    """Indices of a random subset of size n (None: all), nested in n for a fixed seed, in file order."""
    if n is None:
        return list(range(n_items))
    order = np.random.default_rng([seed, STREAMS[stream]]).permutation(n_items)
    return sorted(order[:n].tolist())


def take(frames: Sequence, indices: Iterable[int]) -> list:
    return [frames[i] for i in indices]


def write_synthetic_data(out_dir, n_high: int = 10, n_low: int = 10, n_test: int = 4, n_paired: int = 4,
                         seed: int = 0, supercell=(1, 1, 1)) -> Path:
    """The benchmark file set, labelled by a random tiny MF-CHGNet (not the benchmark teachers): for tests.

    Writes the five ``DATA_FILES`` and ``SYNTHETIC.json``; low fidelity without magmoms, as in the benchmark.
    """
    import ase.io
    import torch
    from ase.calculators.singlepoint import SinglePointCalculator

    from mf_calc.model.mfchgnet import MFCHGNet
    from mf_calc.structures import lmfp
    from mf_calc.train import teacher_frames

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    teacher = MFCHGNet(fidelities=(LOW, HIGH), modules="EMRC", **TINY_MODEL).eval()

    def structures(n, offset):
        atoms = []
        for k in range(offset, offset + n):
            a = lmfp(x_li=(1.0, 0.75, 0.5, 0.25)[k % 4], y_mn=(0.0, 0.25, 0.5, 0.75)[(k // 4) % 4],
                     supercell=supercell, seed=seed + k)
            a.rattle(0.05, seed=seed + k)
            atoms.append(a)
        return atoms

    def write(role, atoms, fidelity):
        frames = teacher_frames(teacher, atoms, fidelity, fidelity, labels="efs" if fidelity == LOW else "efsm")
        images = []
        for f in frames:
            a = f.atoms.copy()
            a.info["fidelity"] = f.fidelity
            a.calc = SinglePointCalculator(a, energy=f.energy, forces=f.forces, stress=f.stress, magmoms=f.magmoms)
            images.append(a)
        ase.io.write(out / DATA_FILES[role], images, format="extxyz")

    paired = structures(n_paired, 3000)
    write("high", structures(n_high, 0), HIGH)
    write("low", structures(n_low, 1000), LOW)
    write("test", structures(n_test, 2000), HIGH)
    write("paired_high", paired, HIGH)
    write("paired_low", paired, LOW)
    (out / SYNTHETIC_MARKER).write_text(json.dumps({"teacher": "random tiny MFCHGNet", "seed": seed}) + "\n")
    return out

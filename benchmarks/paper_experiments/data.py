"""The benchmark frames by role (high, low, test, paired), their hashes, seeded nested subsets, and a
synthetic file set for tests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .plan import HIGH, LOW, TEACHER_FILES, TINY_MODEL, Scale

PAIRED_ROLES = ("paired_high", "paired_low")
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


def role_fidelity(scale: Scale, role: str) -> str:
    """The fidelity the frames of a role carry (high, test, paired_high: the high fidelity)."""
    return scale.low if role in ("low", "paired_low") else scale.high


def read_role(root: Path, role: str, scale: Scale) -> list:
    """The frames of one data file, checked to be of the role's fidelity."""
    from mf_calc.data import read_frames

    path = root / scale.files[role]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; write the benchmark data with benchmarks/make_data.py "
                                f"(--scale smoke for a tiny set), the DFT data with benchmarks/make_dft_data.py "
                                f"--collect, or pass --data")
    frames = read_frames(path)
    want = role_fidelity(scale, role)
    wrong = [f.source for f in frames if f.fidelity != want]
    if wrong:
        raise ValueError(f"{wrong[0]}: fidelity is not {want!r} ({len(wrong)} such frames in {path})")
    return frames


def matched_pairs(high: Sequence, low: Sequence) -> tuple[list, list]:
    """The structures present in both lists (same atoms, positions and cell), in the order of ``high``."""
    from mf_calc.train.dataset import structure_key

    lows = {structure_key(f.atoms): f for f in low}
    both = [(h, lows[structure_key(h.atoms)]) for h in high if structure_key(h.atoms) in lows]
    return [h for h, _ in both], [lo for _, lo in both]


def load_data(root, scale: Scale, paired: bool) -> Data:
    """Read the scale's data files, the test set capped at ``scale.max_test``. With ``paired``: the paired
    files, or (when the scale has none) the structures that are in both the high and the low file."""
    from mf_calc.train import FrameDataset

    root = Path(root)
    own_pairs = all(r in scale.files for r in PAIRED_ROLES)
    roles = [r for r in scale.files if (paired and own_pairs) or r not in PAIRED_ROLES]
    frames = {role: read_role(root, role, scale) for role in roles}
    files = {role: file_sha256(root / scale.files[role]) for role in roles}
    if paired and own_pairs and len(frames["paired_high"]) != len(frames["paired_low"]):
        raise ValueError(f"{root}: the paired files hold {len(frames['paired_high'])} {scale.high} and "
                         f"{len(frames['paired_low'])} {scale.low} frames; they must be the same structures in the "
                         "same order")
    if paired and not own_pairs:
        frames["paired_high"], frames["paired_low"] = matched_pairs(frames["high"], frames["low"])
        files |= {"paired_high": files["high"], "paired_low": files["low"]}
    return Data(high=frames["high"], low=frames["low"], test=FrameDataset(frames["test"][: scale.max_test]),
                paired_high=frames.get("paired_high", []), paired_low=frames.get("paired_low", []),
                files=files, root=root, synthetic=(root / SYNTHETIC_MARKER).is_file())


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
                         seed: int = 0, supercell=(1, 1, 1), low: str = LOW, high: str = HIGH,
                         files: dict | None = None) -> Path:
    """A benchmark file set labelled by a random tiny MF-CHGNet (not the benchmark teachers): for tests.

    ``files`` (role -> name; default the teacher benchmark's) and the fidelity names ``low`` / ``high`` give the
    layout; without paired files the paired structures go into both the high and the low file, as in the DFT
    data. Writes ``SYNTHETIC.json`` too; low fidelity without magmoms, as in the benchmark.
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

    files = dict(TEACHER_FILES if files is None else files)

    def write(role, atoms):
        is_low = role in ("low", "paired_low")
        frames = teacher_frames(teacher, atoms, low if is_low else high, LOW if is_low else HIGH,
                                labels="efs" if is_low else "efsm")
        images = []
        for f in frames:
            a = f.atoms.copy()
            a.info["fidelity"] = f.fidelity
            a.calc = SinglePointCalculator(a, energy=f.energy, forces=f.forces, stress=f.stress, magmoms=f.magmoms)
            images.append(a)
        ase.io.write(out / files[role], images, format="extxyz")

    paired = structures(n_paired, 3000)
    own_pairs = all(r in files for r in PAIRED_ROLES)
    write("high", structures(n_high, 0) + ([] if own_pairs else paired))
    write("low", structures(n_low, 1000) + ([] if own_pairs else paired))
    write("test", structures(n_test, 2000))
    if own_pairs:
        write("paired_high", paired)
        write("paired_low", paired)
    (out / SYNTHETIC_MARKER).write_text(json.dumps({"teacher": "random tiny MFCHGNet", "seed": seed}) + "\n")
    return out

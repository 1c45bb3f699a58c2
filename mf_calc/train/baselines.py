"""Baselines MF-CHGNet is compared with (paper section 3), all on plain CHGNet (one fidelity, modules ""):

- ``train_single_fidelity``: high-fidelity frames only (the paper's "N");
- ``train_transfer``: pre-train on all low-fidelity frames, fine-tune on high-fidelity frames with the
  embeddings and atom/bond/angle convolutions frozen (paper 3.3); the composition model is refitted
  on the high-fidelity training energies before fine-tuning;
- ``train_delta``: a low-fidelity model plus a Δ model of (high − low) energy, forces and stress
  learned on structures labelled at both fidelities; see ``DeltaModel``.

Low and high fidelity default to the first and last of ``config.fidelities`` (else of the data's names).
Each function writes its runs below ``out_dir`` and returns the best-by-validation model(s).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mf_calc.data import Frame
from mf_calc.model.fidelity import Fidelities
from mf_calc.model.mfchgnet import MFCHGNet
from mf_calc.train.config import TrainConfig
from mf_calc.train.dataset import FrameDataset, structure_key
from mf_calc.train.model_setup import TRANSFER_FROZEN, build_model
from mf_calc.train.trainer import Trainer

log = logging.getLogger(__name__)

DELTA = "delta"  # fidelity name of the Δ model


def _levels(data: FrameDataset, config: TrainConfig, low: str | None, high: str | None) -> tuple[str, str]:
    names = config.fidelities or data.fidelity_names
    low, high = low or names[0], high or names[-1]
    if low == high:
        raise ValueError(f"need two fidelities, got low = high = {low!r}")
    return low, high


def train_plain(data: FrameDataset, fidelity: str, config: TrainConfig, out_dir, *, init_state: dict | None = None,
                freeze: Sequence[str] = (), resume: bool = False) -> MFCHGNet:
    """Plain CHGNet (one fidelity, modules "") on the frames of ``fidelity``; returns the best model."""
    frames = data.by_fidelity(fidelity)
    if len(frames) == 0:
        raise ValueError(f"no frames of fidelity {fidelity!r}; the data have {list(data.fidelity_names)}")
    cfg = replace(config, modules="", fidelities=(fidelity,), freeze=tuple(dict.fromkeys((*config.freeze, *freeze))))
    model = build_model(cfg, cfg.fidelities)
    if init_state is not None:
        model.load_state_dict(init_state)
    train, val = frames.split(cfg.val_fraction, cfg.seed)
    trainer = Trainer(model, cfg, out_dir)
    trainer.fit(train, val, resume=resume)
    return trainer.best_model()


def train_multi_fidelity(data: FrameDataset, config: TrainConfig, out_dir, world=None,
                         resume: bool = False) -> Trainer:
    """MF-CHGNet on the frames of every fidelity (what ``mf-calc train`` does): the model of ``config`` with
    fidelities ``config.fidelities`` or the data's (lowest first), validation split by configuration, fitted;
    returns the trainer (``best_model()``, ``history``, ``best_epoch``)."""
    fidelities = config.fidelities or data.fidelity_names
    data.check_fidelities(fidelities)
    train, val = data.split(config.val_fraction, config.seed)
    trainer = Trainer(build_model(config, fidelities), config, out_dir, world=world)
    n_params = sum(p.numel() for p in trainer.params)
    log.info("model: init %s, modules %s, fidelities (low → high) %s, %d trained parameters; %d train / %d "
             "validation frames", config.init, config.modules or "none", list(fidelities), n_params, len(train),
             len(val))
    trainer.fit(train, val, resume=resume)
    return trainer


def train_single_fidelity(frames: Iterable[Frame], config: TrainConfig, out_dir, high: str | None = None,
                          resume: bool = False) -> MFCHGNet:
    """The paper's "N": plain CHGNet on the high-fidelity frames only."""
    data = FrameDataset(frames)
    high = high or (config.fidelities or data.fidelity_names)[-1]
    return train_plain(data, high, config, out_dir, resume=resume)


def train_transfer(frames: Iterable[Frame], config: TrainConfig, out_dir, low: str | None = None,
                   high: str | None = None, resume: bool = False) -> tuple[MFCHGNet, MFCHGNet]:
    """Pre-train on low, fine-tune on high with ``TRANSFER_FROZEN`` parts fixed; returns (pretrained, fine-tuned)."""
    data = FrameDataset(frames)
    low, high = _levels(data, config, low, high)
    out_dir = Path(out_dir)
    pretrained = train_plain(data, low, config, out_dir / "pretrain", resume=resume)
    finetuned = train_plain(data, high, config, out_dir / "finetune", init_state=pretrained.state_dict(),
                            freeze=TRANSFER_FROZEN, resume=resume)
    return pretrained, finetuned


def delta_frames(data: FrameDataset, low: str, high: str) -> list[Frame]:
    """Frames of (high − low) labels for structures present at both fidelities (labels both carry)."""
    lows = {structure_key(f.atoms): f for f in data.frames if f.fidelity == low}
    out = []
    for hi in (f for f in data.frames if f.fidelity == high):
        lo = lows.get(structure_key(hi.atoms))
        if lo is None:
            continue

        def diff(name, hi=hi, lo=lo):
            a, b = getattr(hi, name), getattr(lo, name)
            return None if a is None or b is None else a - b

        out.append(Frame(atoms=hi.atoms, fidelity=DELTA, energy=diff("energy"), forces=diff("forces"),
                         stress=diff("stress"), magmoms=None, source=f"{hi.source} - {lo.source}").validate())
    if not out:
        raise ValueError(f"Δ-learning needs structures labelled at both {low!r} and {high!r}; found none")
    return out


class DeltaModel(torch.nn.Module):
    """High-fidelity prediction = low-fidelity model + Δ model (energy, forces, stress; no magmoms).

    Called on a batch like an ``MFCHGNet`` of the one fidelity ``high``, so ``train.metrics.evaluate``
    measures it as it measures every other model (the two plain models share cutoffs and read fidelity
    index 0 of the batch).
    """

    def __init__(self, low: MFCHGNet, delta: MFCHGNet, high: str):
        super().__init__()
        self.low, self.delta = low, delta
        self.fidelities = Fidelities([high])
        self.config = low.config

    @property
    def dtype(self) -> torch.dtype:
        return self.low.dtype

    @property
    def device(self) -> torch.device:
        return self.low.device

    def graph(self, atoms, fidelity: str | int | None = None):
        """The graph both models read (fidelity index 0: each has one fidelity)."""
        self.fidelities.index(fidelity)  # an unknown fidelity raises
        return self.low.graph(atoms)

    def forward(self, batch, task: str = "efs", create_graph: bool | None = None) -> dict[str, torch.Tensor]:
        """Sum of the two models' energy (per atom too), forces and stress on ``batch`` (``m`` is ignored)."""
        task = task.replace("m", "")
        low = self.low(batch, task=task, create_graph=create_graph)
        delta = self.delta(batch, task=task, create_graph=create_graph)
        return {k: low[k] + delta[k] for k in low}

    def predict(self, atoms_list: Sequence, batch_size: int = 16) -> list[dict[str, np.ndarray]]:
        """Per structure: energy (eV), energy_per_atom (eV/atom), forces (eV/Å), stress (3×3 eV/Å³, ASE sign)."""
        low = self.low.predict(atoms_list, task="efs", batch_size=batch_size)
        delta = self.delta.predict(atoms_list, task="efs", batch_size=batch_size)
        return [{k: a[k] + d[k] for k in ("energy", "energy_per_atom", "forces", "stress")} for a, d in zip(low, delta)]

    def save(self, path) -> None:
        self.low.save(Path(path) / "low")
        self.delta.metadata["delta_of"] = self.fidelities.names[0]
        self.delta.save(Path(path) / "delta")

    @classmethod
    def load(cls, path) -> DeltaModel:
        delta = MFCHGNet.load(Path(path) / "delta")
        return cls(MFCHGNet.load(Path(path) / "low"), delta, delta.metadata.get("delta_of", "high"))


def train_delta(frames: Iterable[Frame], config: TrainConfig, out_dir, low: str | None = None,
                high: str | None = None, resume: bool = False) -> DeltaModel:
    """Low-fidelity model on all low frames + Δ model on the paired frames; saved to ``out_dir/model``."""
    data = FrameDataset(frames)
    low, high = _levels(data, config, low, high)
    out_dir = Path(out_dir)
    low_model = train_plain(data, low, config, out_dir / "low", resume=resume)
    delta_cfg = replace(config, targets=config.targets.replace("m", ""))
    delta_model = train_plain(FrameDataset(delta_frames(data, low, high)), DELTA, delta_cfg, out_dir / "delta",
                              resume=resume)
    model = DeltaModel(low_model, delta_model, high)
    model.save(out_dir / "model")
    return model

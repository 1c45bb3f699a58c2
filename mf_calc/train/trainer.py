"""The training loop: Adam + per-step cosine LR, masked Huber loss, per-fidelity validation, atomic
checkpoints every epoch, exact resume, best-by-validation model, optional data parallelism.

Files in ``out_dir`` (rank 0 only): ``train_config.json``, ``checkpoint.pt``, ``history.json``,
``metrics.csv``, ``best/`` and ``final/`` (model folders, ``MFCHGNet.load``).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mf_calc.atomic import json_safe, write_json
from mf_calc.model.contacts import METADATA_KEY as CONTACTS_KEY
from mf_calc.model.contacts import shortest_distances
from mf_calc.model.io import is_model_folder
from mf_calc.model.mfchgnet import MFCHGNet
from mf_calc.train.checkpoint import TRAIN_CONFIG, load_checkpoint, save_checkpoint, write_history
from mf_calc.train.config import TrainConfig
from mf_calc.train.dataset import TARGETS, FrameDataset, GraphSet
from mf_calc.train.distributed import World, global_batches
from mf_calc.train.loss import in_label_units, loss_terms, model_task
from mf_calc.train.metrics import REPORT, ErrorSums, accumulate_errors
from mf_calc.train.model_setup import freeze

log = logging.getLogger(__name__)

#: Config keys that may differ between an interrupted run and its resumption.
RESUME_FREE_KEYS = {"progress", "device", "eval_batch_size"}


def fit_compositions(model: MFCHGNet, train: FrameDataset, only: Sequence[str] | None = None,
                     residual: bool = False) -> None:
    """Least-squares composition fit on training energies: per fidelity when the model has per-fidelity
    composition models (``C``), else one fit on all training frames. ``only``: fit just these fidelities
    (per-fidelity composition models only; the others keep theirs). ``residual``: fit what the model does not
    predict yet (``MFCHGNet.fit_composition``), for a trained network."""
    frames = [f for f in train.frames if f.energy is not None]
    per_fidelity = model.switches.on("C")
    groups = {f.fidelity for f in frames} if per_fidelity else {None}
    if only is not None:
        groups = groups & set(only) if per_fidelity else set()
    for name in sorted(groups, key=lambda n: -1 if n is None else model.fidelities.index(n)):
        chosen = [f for f in frames if name is None or f.fidelity == name]
        model.fit_composition([f.atoms for f in chosen], [f.energy for f in chosen], name, residual=residual)


def composition_fit_fidelities(config: TrainConfig) -> list[str] | None:
    """Fidelities whose composition model a new run fits: all (None) from scratch or a pretrained CHGNet;
    from a trained model folder only those it adds (``new_fidelities``), the others keep their own."""
    return list(config.new_fidelities) if is_model_folder(config.init) else None


class Trainer:
    """Train ``model`` with ``config``; files go to ``out_dir`` (None: keep everything in memory)."""

    def __init__(self, model: MFCHGNet, config: TrainConfig, out_dir=None, world: World | None = None):
        self.config = config
        self.world = world or World.from_env(config.device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.model = model.to(self.world.device)
        freeze(self.model, config.freeze)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("every model part is frozen: nothing to train")
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = None
        self.history: list[dict] = []
        self.best_score, self.best_epoch, self.best_state = math.inf, None, None

    # ------------------------------------------------------------------ public
    def fit(self, train: FrameDataset, val: FrameDataset | None = None, resume: bool = False) -> list[dict]:
        """Train for ``config.epochs`` epochs (continuing from ``out_dir``'s checkpoint when ``resume``).

        Returns the history: one dict per epoch with the train loss terms and, per fidelity, the
        validation MAE/RMSE (see ``metrics.py`` for units).
        """
        cfg, world = self.config, self.world
        if len(train) == 0:
            raise ValueError("no training frames")
        torch.manual_seed(cfg.seed)
        train_graphs = train.graphs(self.model)
        self.model.metadata[CONTACTS_KEY] = shortest_distances(train_graphs.graphs)
        val_graphs = val.graphs(self.model) if val is not None and len(val) else None
        global_batch = cfg.batch_size * world.size
        steps = math.ceil(len(train_graphs.epoch_frames(cfg.fidelity_fraction, cfg.seed, 0)) / global_batch)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=cfg.epochs * steps, eta_min=cfg.lr * cfg.lr_min_fraction
        )
        data_id = {"train": train.fingerprint(), "val": val.fingerprint() if val is not None else None}
        state = self._previous_run(resume)
        if state is not None:
            self._restore(state, data_id)
        else:
            if cfg.fit_composition:
                # a warm start's network already predicts energies: correct the model, don't refit the totals
                fit_compositions(self.model, train, only=composition_fit_fidelities(cfg),
                                 residual=cfg.init != "scratch")
            if self._writes:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                write_json(self.out_dir / TRAIN_CONFIG, cfg.to_dict())
        for p in self.params:  # gradients exist (zero) for every trainable part, used in a batch or not
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.parallel_model = world.data_parallel(self.model)  # after the composition fit or the resume

        for epoch in range(len(self.history), cfg.epochs):
            start = time.perf_counter()
            row = {"epoch": epoch + 1, **self._train_epoch(train_graphs, epoch)}
            if val_graphs is not None:
                row["val"] = self.validate(val_graphs)
            row["score"] = self._score(row)
            row["time_s"] = time.perf_counter() - start
            self.history.append(row)
            self._log(row)
            if row["score"] < self.best_score:
                self.best_score, self.best_epoch = row["score"], epoch + 1
                self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
                if self._writes:
                    self.best_model().save(self.out_dir / "best")
            self._save_checkpoint(data_id)
        self.model.metadata = self._metadata(best=False)
        if self._writes:
            self.model.save(self.out_dir / "final")
        world.barrier()
        return self.history

    def validate(self, graphs: GraphSet) -> dict[str, dict[str, float]]:
        """Per-fidelity MAE/RMSE on ``graphs``, frames shared out over processes and summed."""
        indices = np.arange(len(graphs))[self.world.rank :: self.world.size]
        sums = ErrorSums(len(self.model.fidelities), self.world.device)
        accumulate_errors(self.model, graphs, indices, self.config.targets, self.config.eval_batch_size, sums)
        self.world.all_reduce_(sums.sums)
        return sums.report(self.model.fidelities.names)

    def best_model(self) -> MFCHGNet:
        """A copy of the model with the best-by-validation weights (the current ones before any epoch)."""
        model = copy.deepcopy(self.model)
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        model.metadata = self._metadata(best=True)
        return model.eval()

    # ------------------------------------------------------------------ one epoch
    def _train_epoch(self, graphs: GraphSet, epoch: int) -> dict[str, float]:
        cfg, world = self.config, self.world
        frames = graphs.epoch_frames(cfg.fidelity_fraction, cfg.seed, epoch)
        batches = [frames[b] for b in global_batches(len(frames), cfg.batch_size * world.size, cfg.seed, epoch)]
        records = torch.zeros(len(batches), 1 + len(TARGETS), dtype=torch.float64, device=world.device)
        self.model.train()
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and world.is_main),
                   leave=False, dynamic_ncols=True)
        for step, global_idx in enumerate(bar):
            records[step] = self._step(graphs, global_idx)
            if world.size == 1 and step % 10 == 0:
                bar.set_postfix(loss=f"{records[: step + 1, 0].mean().item():.4f}")
        world.all_reduce_(records)
        mean = records.mean(0).tolist()
        return {"lr": self.scheduler.get_last_lr()[0], "train_loss": mean[0],
                **{f"train_{t}": v for t, v in zip(TARGETS, mean[1:])}}

    def _step(self, graphs: GraphSet, global_idx: np.ndarray) -> torch.Tensor:
        """One optimiser step on a global batch; returns this process's share of (loss, e, f, s, m)."""
        cfg, world = self.config, self.world
        local, weight = world.shard(global_idx), 1.0
        if not len(local):  # fewer frames than processes in this batch: a zero-weight frame keeps the all-reduce in step
            local, weight = global_idx[:1], 0.0
        self.optimizer.zero_grad(set_to_none=False)
        batch, labels = graphs.batch(local, self.model.dtype)
        batch, labels = batch.to(world.device), labels.to(world.device)
        out = self.parallel_model(batch, task=model_task(cfg.targets, labels), create_graph=True)
        loss, terms = loss_terms(in_label_units(out), labels, graphs.counts(global_idx), cfg.weights, cfg.huber_delta)
        (loss * (weight * world.size)).backward()  # DDP averages over processes: the sum of the shares is wanted
        record = weight * torch.stack([loss.detach(), *(terms[t].detach() for t in TARGETS)]).double()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return record

    def _score(self, row: dict) -> float:
        """Selection score (lower is better): Σ_t weight_t · MAE_t in loss units (eV/atom, eV/Å, GPa, μB)
        of ``select_fidelity`` (default: the highest fidelity with validation frames); train loss without validation."""
        val = row.get("val") or {}
        name = self.config.select_fidelity or next((n for n in reversed(self.model.fidelities.names) if n in val), None)
        if name is None:
            return row["train_loss"]
        if name not in val:
            raise ValueError(f"select_fidelity {name!r} has no validation frames; validated: {sorted(val)}")
        m = val[name]
        return sum(w * m[f"{t}_mae"] / REPORT[t][2] for t, w in self.config.weights.items() if w and m[f"{t}_n"])

    def _log(self, row: dict) -> None:
        """One line per epoch (with the progress bar): train loss and the selected fidelity's MAEs."""
        if not (self.config.progress and self.world.is_main):
            return
        text = f"epoch {row['epoch']}/{self.config.epochs} loss {row['train_loss']:.4g}"
        for name, m in (row.get("val") or {}).items():
            text += f" | {name}: " + " ".join(
                f"{t.upper()} {m[f'{t}_mae']:.3g}" for t in self.config.targets if m[f"{t}_n"]
            )
        tqdm.write(f"{text} | {row['time_s']:.1f} s (MAE: meV/atom, meV/Å, GPa, μB)")

    # ------------------------------------------------------------------ files and resume
    @property
    def _writes(self) -> bool:
        return self.out_dir is not None and self.world.is_main

    def _previous_run(self, resume: bool) -> dict | None:
        if resume and self.out_dir is None:
            raise ValueError("resuming needs the output folder of the interrupted run")
        state = load_checkpoint(self.out_dir) if self.out_dir is not None else None
        if state is not None and not resume:
            raise ValueError(f"{self.out_dir} already holds a training run; resume it or choose another output folder")
        if resume and state is None and self.world.is_main:
            log.info("no checkpoint in %s: starting a new run", self.out_dir)
        return state

    def _restore(self, state: dict, data_id: dict) -> None:
        saved = TrainConfig.with_new_defaults(state["train_config"])
        now = self.config.to_dict()
        differ = sorted(k for k in now if k not in RESUME_FREE_KEYS and saved.get(k) != now[k])
        if differ:
            raise ValueError(f"cannot resume: training config differs from the checkpoint's in {differ}")
        if state["model_config"] != self.model.config.to_dict():
            raise ValueError("cannot resume: the model architecture differs from the checkpoint's")
        if state["data"] != data_id:
            raise ValueError("cannot resume: the training or validation data differ from the checkpoint's")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_torch"])
        self.history = list(state["history"])
        self.best_score, self.best_epoch, self.best_state = state["best_score"], state["best_epoch"], state["best_model"]

    def _save_checkpoint(self, data_id: dict) -> None:
        if not self._writes:
            return
        save_checkpoint(self.out_dir, {
            "epoch": len(self.history),
            "model": self.model.state_dict(),
            "model_config": self.model.config.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng_torch": torch.get_rng_state(),
            "history": self.history,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_model": self.best_state,
            "train_config": self.config.to_dict(),
            "data": data_id,
        })
        write_history(self.out_dir, self.history)

    def _metadata(self, best: bool) -> dict:
        epoch = self.best_epoch if best else len(self.history)
        row = self.history[epoch - 1] if epoch else {}
        trained = {"init": self.config.init, "epochs": epoch, "of_epochs": self.config.epochs,
                   "selection": "best validation score" if best else "final", "val": row.get("val"),
                   "train_loss": row.get("train_loss"), "device": str(self.world.device)}
        description = (f"trained by mf_calc.train from {self.config.init} on fidelities {list(self.model.fidelities)}, "
                       f"modules {self.model.config.modules or 'none'} ({trained['selection']}, epoch {epoch})")
        return {**self.model.metadata, "description": description, "trained": json_safe(trained)}

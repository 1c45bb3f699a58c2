"""Data-parallel training with torch.distributed (torchrun; gloo on CPU, nccl on GPU).

Every process holds the whole dataset and draws the same global batch order from (seed, epoch);
process r takes every size-th frame of each global batch (``global_batch[r::size]``). Gradients are
summed over processes with one all-reduce per step; with the loss normalised by global label counts
(see ``loss.py``) N processes with per-process batch b take exactly the step of one process with
batch N·b. A single process needs no process group: every collective is then a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` → this process's GPU when CUDA is available, else CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(device)


@dataclass
class World:
    """This process's rank, the number of processes and the device it computes on."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this object started the process group (and ends it in ``close``)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "auto") -> World:
        """Join the process group torchrun describes (WORLD_SIZE > 1) or one set up already; else single."""
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        dev = resolve_device(device, local_rank)
        owns = not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", 1)) > 1
        if owns:
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        if dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), dev, owns)
        return cls(0, 1, dev)

    def close(self) -> None:
        """End the process group if ``from_env`` started it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    def shard(self, global_batch: np.ndarray) -> np.ndarray:
        return global_batch[self.rank :: self.size]

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over processes in place."""
        if self.size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Sum the gradients of ``params`` over processes (one flat all-reduce)."""
        if self.size == 1:
            return
        grads = [p.grad for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every process."""
        if self.size == 1:
            return
        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def global_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Frame indices of each global batch of an epoch: a permutation drawn from (seed, epoch) only."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]

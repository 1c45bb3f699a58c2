"""Data-parallel training with torch.distributed (torchrun; gloo on CPU, nccl on GPU).

The model is wrapped in ``torch.nn.parallel.DistributedDataParallel``, which broadcasts rank 0's weights
when it is built and all-reduces (averages) the gradients during ``backward``. Every process holds the whole
dataset and draws the same global batch order from (seed, epoch); process r takes every size-th frame of
each global batch (``global_batch[r::size]``). The loss is normalised by the global batch's label counts
(see ``loss.py``) and multiplied by the number of processes before the averaging all-reduce, so N processes
with per-process batch b take exactly the step of one process with batch N·b.

Batches are drawn here rather than by ``torch.utils.data.DistributedSampler``: the sampler pads the last
batch with repeated frames when the frame count does not divide evenly, which would weight those frames
twice and break the equality with one process. A single process needs no process group: the model is then
not wrapped and every collective is a no-op.
"""

from __future__ import annotations

import os
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

    def data_parallel(self, module: nn.Module) -> nn.Module:
        """``module`` wrapped in DistributedDataParallel (rank 0's weights and buffers copied to every
        process now, gradients averaged in ``backward``); ``module`` itself with one process.

        ``find_unused_parameters``: a batch of one fidelity leaves the other fidelities' readouts and biases
        without gradient, and training without magmom labels the magmom head."""
        if self.size == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def global_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Frame indices of each global batch of an epoch: a permutation drawn from (seed, epoch) only."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]

"""Data-parallel trials (Ray Train's TorchTrainer, DDP): one trial on N workers.

Every worker draws the same global batch (the generators are seeded alike), augments it,
and trains on its own slice ``rank::world``; DDP averages the gradients, so the global
batch and the learning rate are the recipe's whatever the world size (per-worker BN
statistics, as on the paper's 8 GPUs). Only rank 0 writes checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from harness.batches import Batch, BatchSource


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass
class ShardedBatches:
    """A BatchSource whose training batches are this worker's slice of the global batch."""

    inner: BatchSource
    rank: int
    world_size: int

    def __post_init__(self) -> None:
        self.num_classes = self.inner.num_classes
        self.in_chans = self.inner.in_chans
        self.fingerprint = self.inner.fingerprint
        self.iters_per_epoch = self.inner.iters_per_epoch

    def train_epoch(self, epoch: int, generator: torch.Generator) -> Iterator[Batch]:
        for x, y in self.inner.train_epoch(epoch, generator):
            yield x[self.rank::self.world_size], y[self.rank::self.world_size]

    def eval_batches(self) -> Iterator[Batch]:
        return self.inner.eval_batches()


def data_parallel(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Wrap in DistributedDataParallel (gloo on CPU, nccl on CUDA: chosen by Ray Train)."""
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

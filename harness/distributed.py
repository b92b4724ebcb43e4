"""Data-parallel trials (Ray Train's TorchTrainer, DDP): one trial on N workers.

Every worker draws the same random numbers (the generators are seeded alike) but loads,
decodes and augments only its own rows ``rank::world`` of each global batch
(``BatchSource.shard``); DDP averages the gradients, so the global batch and the learning
rate are the recipe's whatever the world size (per-worker BN statistics, as on the paper's
8 GPUs). Evaluation is sharded the same way, on the inner module with rank 0's BN statistics
(:func:`for_evaluation`), and the counts are summed over the workers (:func:`all_sum`,
:func:`all_gather_cat`). Only rank 0 writes checkpoints.
"""
from __future__ import annotations

from typing import Iterator

import torch

from harness.batches import Batch, BatchSource


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_batches(inner: BatchSource, rank: int, world_size: int) -> BatchSource:
    """``inner`` cut to this worker's rows: sources that load or augment per batch shard
    themselves (``inner.shard``); any other source is sliced after the fact."""
    if hasattr(inner, "shard"):
        inner.shard(rank, world_size)
        return inner
    return _SlicedBatches(inner, rank, world_size)


class _SlicedBatches:
    """A BatchSource without ``shard``: this worker's slice of each batch it yields."""

    def __init__(self, inner: BatchSource, rank: int, world_size: int) -> None:
        self.inner, self.rank, self.world_size = inner, rank, world_size
        self.num_classes = inner.num_classes
        self.in_chans = inner.in_chans
        self.fingerprint = inner.fingerprint
        self.iters_per_epoch = inner.iters_per_epoch

    def train_epoch(self, epoch: int, generator: torch.Generator) -> Iterator[Batch]:
        for x, y in self.inner.train_epoch(epoch, generator):
            yield x[self.rank::self.world_size], y[self.rank::self.world_size]

    def eval_batches(self) -> Iterator[Batch]:
        for x, y in self.inner.eval_batches():
            if len(y[self.rank::self.world_size]):
                yield x[self.rank::self.world_size], y[self.rank::self.world_size]


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the data-parallel workers (itself outside torch.distributed)."""
    if world()[1] > 1:
        t = t.clone()
        torch.distributed.all_reduce(t)
    return t


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """The 1-D tensors ``t`` of every worker, concatenated in rank order (lengths may differ)."""
    _, size = world()
    if size == 1:
        return t
    n = torch.tensor([t.numel()], device=t.device)
    counts = [torch.zeros_like(n) for _ in range(size)]
    torch.distributed.all_gather(counts, n)
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros(longest, dtype=t.dtype, device=t.device)
    padded[:t.numel()] = t
    parts = [torch.zeros_like(padded) for _ in range(size)]
    torch.distributed.all_gather(parts, padded)
    return torch.cat([p[:int(c.item())] for p, c in zip(parts, counts)])


def for_evaluation(model: torch.nn.Module) -> torch.nn.Module:
    """The module a worker evaluates: under DDP (compiled or not) the inner module, after
    rank 0's buffers (BN statistics) are broadcast once, so every worker scores the same
    model without a collective per batch (DDP's forward would broadcast buffers on every
    call, and a worker's shard of the last batch may be empty). Else ``model`` itself."""
    ddp = model if isinstance(model, torch.nn.parallel.DistributedDataParallel) else getattr(model, "_orig_mod", None)
    if not isinstance(ddp, torch.nn.parallel.DistributedDataParallel):
        return model
    for buf in ddp.module.buffers():
        torch.distributed.broadcast(buf, 0)
    return ddp.module


def data_parallel(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Wrap in DistributedDataParallel (gloo on CPU, nccl on CUDA: chosen by Ray Train)."""
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

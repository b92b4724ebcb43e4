"""What the detection and segmentation fine-tuning tasks (Sec 6) share: the data source's
bookkeeping and its training batches. Each task adds its model, loss and metric."""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import nn


class FineTuneTask:
    """Binds a task's data source and model; ``loss`` and ``evaluate`` are the task's own."""

    data: Any
    model: nn.Module

    def _bind(self, data: Any, model: nn.Module, device: torch.device) -> None:
        self.data, self.model, self.device = data, model.to(device), device
        self.batch_size = data.batch_size
        self.iters_per_epoch = data.iters_per_epoch
        self.fingerprint = data.fingerprint

    def train_batches(self, epoch: int, gen: torch.Generator) -> Iterator[tuple]:
        return self.data.train_batches(epoch, gen)

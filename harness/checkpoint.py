"""Checkpoints: written atomically (temp file + rename), loaded with ``weights_only=True``.

A checkpoint holds the model, optimizer, grad-scaler and RNG states and the epoch, so a
resumed trial continues exactly where it stopped. Only tensors and plain containers are
stored: ``torch.load(weights_only=True)`` refuses anything that would need unpickling code.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from harness.atomic import atomic_write
from harness.errors import HarnessError


class CheckpointError(HarnessError):
    """A checkpoint that is missing, truncated, corrupt or carries pickled objects."""


def save_atomic(obj: dict[str, Any], path: str | Path) -> Path:
    """torch.save through :func:`harness.atomic.atomic_write` (temp file, fsync, rename)."""
    with atomic_write(path, "wb") as fh:
        torch.save(obj, fh)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True; every failure becomes a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"refused checkpoint {path}: it carries objects that "
                              f"weights_only=True does not allow ({first[:160]})") from None
    except Exception as exc:  # noqa: BLE001 - damaged bytes reach the unpickler's internals
        # (KeyError from a bad memo index, struct.error, UnicodeDecodeError, ...): any of them
        # means the file is not a readable checkpoint
        raise CheckpointError(f"corrupt or truncated checkpoint {path}: "
                              f"{type(exc).__name__}") from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointError(f"not a harness checkpoint: {path} (expected a dict with 'model')")
    return obj

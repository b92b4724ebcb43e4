"""Per-image torchvision.transforms.v2 pipelines for image folders (Sec 2.1).

Same augmentation as ``harness.data.augment.batch_augment`` but per image (PIL or tensor
input), for a ``DataLoader`` over files:

    train: RandomResizedCrop(out, scale=area, ratio) -> RandomHorizontalFlip(p)
           -> ToDtype(float32, [0, 1]) -> HSBJitter (hue/saturation/brightness, U[1-cj, 1+cj])
           -> PCALighting (offset/255 on [0, 1] images) -> Normalize(mean/255, std/255)
    eval:  Resize(eval_resize, shorter side) -> CenterCrop(out) -> ToDtype -> Normalize

The trainer's worker path uses only the geometric part per image (``train_crop_transform``,
``eval_crop_transform``: uint8 out, a quarter of float32's bytes through the workers' pipes
and pinned memory); flip, colour, PCA and normalisation then run batched on the training
device (``harness.data.augment.photometric``).

Working on [0, 1] with mean/255 and std/255 is the paper's 0-255 arithmetic divided by 255.
Randomness comes from torch's global RNG (per DataLoader worker, seeded by the DataLoader).
"""
from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import is_pure_tensor

from harness.data.augment import AugConfig, color_matrices, pca_offsets


def _like(out: torch.Tensor, inpt: Any) -> Any:
    return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.Image) else out


class _ImageOnly(v2.Transform):
    """Base: transform images (tv_tensors.Image or a pure tensor), pass everything else."""

    _transformed_types = (tv_tensors.Image, is_pure_tensor)

    @staticmethod
    def _check_float(inpt: torch.Tensor, name: str) -> None:
        if not inpt.is_floating_point():
            raise TypeError(f"{name} expects a float image in [0, 1] (put it after ToDtype)")


class HSBJitter(_ImageOnly):
    """Sec 2.1 colour jitter: hue, saturation and brightness coefficients ~ U[1-cj, 1+cj].

    Brightness multiplies; saturation blends with the luma grey; hue rotates the YIQ chroma
    plane by (h - 1) * pi. Result clamped to [0, 1]. 1-channel images: brightness only.
    Float [..., C, H, W] images in [0, 1].
    """

    def __init__(self, jitter: float = 0.4) -> None:
        super().__init__()
        self.jitter = float(jitter)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        coef = 1.0 - self.jitter + 2.0 * self.jitter * torch.rand(3, dtype=torch.float64)
        return {"coef": coef}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if self.jitter <= 0:
            return inpt
        self._check_float(inpt, "HSBJitter")
        b, s, h = params["coef"].view(3, 1)
        if inpt.shape[-3] == 3:
            m = color_matrices(b, s, h)[0].to(inpt.dtype)
            out = torch.einsum("ij,...jhw->...ihw", m, inpt)
        else:
            out = inpt * b.to(inpt.dtype)
        return _like(out.clamp(0.0, 1.0), inpt)


class PCALighting(_ImageOnly):
    """Sec 2.1 PCA noise: alpha ~ N(0, std); add sum_j eigvec[c][j] alpha_j eigval[j] / scale
    to channel c. ``scale=255`` for images in [0, 1] (the constants are for 0-255). RGB only:
    other channel counts pass through."""

    def __init__(self, std: float = 0.1, scale: float = 255.0) -> None:
        super().__init__()
        self.std = float(std)
        self.scale = float(scale)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        alpha = torch.randn(1, 3, dtype=torch.float64) * self.std
        return {"offset": pca_offsets(alpha)[0] / self.scale}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if self.std <= 0 or inpt.shape[-3] != 3:
            return inpt
        self._check_float(inpt, "PCALighting")
        out = inpt + params["offset"].to(inpt.dtype).view(3, 1, 1)
        return _like(out, inpt)


def _normalize(cfg: AugConfig) -> v2.Normalize:
    return v2.Normalize(mean=[m / 255.0 for m in cfg.mean], std=[s / 255.0 for s in cfg.std])


def train_transform(cfg: AugConfig) -> v2.Compose:
    """Sec 2.1 training augmentation, per image (PIL or uint8 tensor) -> float normalised."""
    steps: list[Any] = [
        v2.ToImage(),
        v2.RandomResizedCrop(cfg.out_size, scale=tuple(cfg.area), ratio=tuple(cfg.ratio), antialias=True),
    ]
    if cfg.flip_p > 0:
        steps.append(v2.RandomHorizontalFlip(p=cfg.flip_p))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if cfg.color_jitter > 0:
        steps.append(HSBJitter(cfg.color_jitter))
    if cfg.pca_std > 0:
        steps.append(PCALighting(cfg.pca_std))
    steps.append(_normalize(cfg))
    return v2.Compose(steps)


def eval_transform(cfg: AugConfig) -> v2.Compose:
    """Sec 2.1 evaluation: shorter side to ``eval_resize``, center crop ``out_size``, normalise."""
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(cfg.eval_resize, antialias=True),
        v2.CenterCrop(cfg.out_size),
        v2.ToDtype(torch.float32, scale=True),
        _normalize(cfg),
    ])


def train_crop_transform(cfg: AugConfig) -> v2.Compose:
    """Sec 2.1 step 1 only, per image: RandomResizedCrop -> uint8 [C, out, out]; the rest of
    the pipeline runs batched on the device (``augment.photometric``)."""
    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(cfg.out_size, scale=tuple(cfg.area), ratio=tuple(cfg.ratio), antialias=True),
    ])


def eval_crop_transform(cfg: AugConfig) -> v2.Compose:
    """Sec 2.1 evaluation geometry: shorter side to ``eval_resize``, center crop -> uint8;
    normalised on the device (``augment.normalize``)."""
    return v2.Compose([v2.ToImage(), v2.Resize(cfg.eval_resize, antialias=True), v2.CenterCrop(cfg.out_size)])

"""Batched, vectorised training/eval augmentation for data held in memory (Sec 2.1).

The paper's training pipeline (Sec 2.1, "Baseline Training Procedure"), per image:

1. random crop whose area is U[8%, 100%] of the image and aspect ratio U[3/4, 4/3],
   resized to 224x224 (torchvision ``RandomResizedCrop`` rule: 10 tries, then center crop);
2. horizontal flip with probability 0.5;
3. hue, saturation and brightness scaled by coefficients drawn from U[0.6, 1.4];
4. PCA lighting noise: alpha_j ~ N(0, 0.1), offset_c = sum_j eigvec[c][j] * alpha_j * eigval[j]
   added to channel c on the 0-255 scale;
5. normalise: subtract (123.68, 116.779, 103.939), divide by (58.393, 57.12, 57.375).

Evaluation: resize the shorter side to 256, center crop 224x224, normalise.

``batch_augment`` does all of this for a whole uint8 batch with tensor ops only (no per-image
Python loop), on the batch's device. The per-image torchvision v2 version is in
``harness.data.transforms``; the two agree in distribution (tests/test_augment.py).

Implementation notes
--------------------
* Crop + resize: ``torchvision.ops.roi_align`` with one box per image (``aligned=True``,
  adaptive sampling). Upsampling is exactly bilinear (``align_corners=False``); downsampling
  averages ceil(box/out) bilinear samples per output pixel per axis, an area-style
  anti-aliasing filter (torchvision's ``antialias=True`` uses a triangle filter instead, so
  pixel values differ slightly, box geometry does not).
* Colour: the three jitters are linear maps of RGB and are composed into one 3x3 matrix per
  image: brightness ``b*I``; saturation blends with the luma grey (0.299, 0.587, 0.114),
  ``s*I + (1-s)*1 w^T`` (as MXNet's ``SaturationJitterAug``); hue rotates the chroma plane of
  YIQ by ``(h - 1) * pi`` radians with ``h ~ U[0.6, 1.4]`` (as MXNet's ``HueJitterAug``, whose
  alpha ~ U[-0.4, 0.4]). These three maps commute, so the random order of other libraries
  does not matter. The result is clamped to [0, 255]; the PCA offset after it is not clamped
  (it is noise added before normalisation, as in the reference code).
* Random numbers are drawn on ``generator.device`` (a CPU generator works for a CUDA batch:
  the few per-image parameters are then copied over), so a CPU generator gives the same
  augmentation parameters whatever device the images are on.
* 1-channel input: no hue/saturation/PCA (they need RGB); brightness applies if enabled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.ops import roi_align
from torchvision.transforms.v2 import functional as TF

from harness.data.fingerprint import DataError

PAPER_MEAN: tuple[float, float, float] = (123.68, 116.779, 103.939)
PAPER_STD: tuple[float, float, float] = (58.393, 57.12, 57.375)
# ImageNet RGB PCA (AlexNet lighting): eigenvalues, and eigenvectors with rows = RGB channel,
# columns = component.
PCA_EIGVAL: tuple[float, float, float] = (55.46, 4.794, 1.148)
PCA_EIGVEC: tuple[tuple[float, float, float], ...] = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
LUMA = (0.299, 0.587, 0.114)  # grey = Y of YIQ
_YIQ = (LUMA, (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


@dataclass(frozen=True)
class AugConfig:
    """Sec 2.1 augmentation settings; defaults are the paper's ImageNet numbers.

    Inception-V3 uses ``out_size=299, eval_resize=342``. ``color_jitter=0`` or ``pca_std=0``
    disables that step; ``flip_p=0`` disables flipping.
    """

    out_size: int = 224
    area: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    color_jitter: float = 0.4  # hue/saturation/brightness coefficient ~ U[1-cj, 1+cj]
    pca_std: float = 0.1  # lighting alpha ~ N(0, pca_std)
    mean: tuple[float, ...] = PAPER_MEAN  # per channel, 0-255 scale
    std: tuple[float, ...] = PAPER_STD
    eval_resize: int = 256  # shorter side before the center crop at evaluation

    def __post_init__(self) -> None:
        for name in ("area", "ratio", "mean", "std"):  # lists from YAML/JSON -> tuples
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        bad = []
        if self.out_size < 1:
            bad.append(f"out_size={self.out_size} (need >= 1)")
        if self.eval_resize < 1:
            bad.append(f"eval_resize={self.eval_resize} (need >= 1)")
        if not (0 < self.area[0] <= self.area[1]):
            bad.append(f"area={self.area} (need 0 < lo <= hi)")
        if not (0 < self.ratio[0] <= self.ratio[1]):
            bad.append(f"ratio={self.ratio} (need 0 < lo <= hi)")
        if not (0.0 <= self.flip_p <= 1.0):
            bad.append(f"flip_p={self.flip_p} (need 0..1)")
        if not (0.0 <= self.color_jitter < 1.0):
            bad.append(f"color_jitter={self.color_jitter} (need 0 <= cj < 1)")
        if self.pca_std < 0:
            bad.append(f"pca_std={self.pca_std} (need >= 0)")
        if len(self.mean) != len(self.std) or len(self.mean) == 0 or any(s <= 0 for s in self.std):
            bad.append(f"mean={self.mean} std={self.std} (need equal lengths, std > 0)")
        if bad:
            raise DataError("bad AugConfig: " + "; ".join(bad))


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=_gen_device(generator), dtype=dtype)


def _check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise DataError(f"expected a [B, C, H, W] tensor, got {type(x).__name__} "
                        f"{tuple(getattr(x, 'shape', ()))}")
    if x.dtype != torch.uint8:
        raise DataError(f"expected uint8 images (0-255), got {x.dtype}")


def _mean_std(cfg: AugConfig, channels: int, device, dtype=torch.float32):
    mean, std = cfg.mean, cfg.std
    if len(mean) == 1 and channels > 1:
        mean, std = mean * channels, std * channels
    if len(mean) != channels:
        raise DataError(f"AugConfig.mean/std have {len(cfg.mean)} channel(s) but the images have "
                        f"{channels}; pass the data set's own mean/std (e.g. InMemoryDataset.mean)")
    m = torch.tensor(mean, device=device, dtype=dtype).view(1, channels, 1, 1)
    s = torch.tensor(std, device=device, dtype=dtype).view(1, channels, 1, 1)
    return m, s


def normalize(x: torch.Tensor, cfg: AugConfig) -> torch.Tensor:
    """(x - mean) / std per channel, x on the 0-255 scale (uint8 or float) -> float32."""
    m, s = _mean_std(cfg, x.shape[1], x.device)
    return (x.to(torch.float32) - m) / s


def color_matrices(b: torch.Tensor, s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Per-image 3x3 RGB matrices for brightness ``b``, saturation ``s``, hue ``h`` coefficients.

    ``rgb_out = M @ rgb_in``. Coefficient 1 is the identity for each. Shapes: [B] -> [B, 3, 3].
    """
    dt, dev = b.dtype, b.device
    eye = torch.eye(3, dtype=dt, device=dev)
    w = torch.tensor(LUMA, dtype=dt, device=dev)
    grey = torch.ones(3, 1, dtype=dt, device=dev) @ w.view(1, 3)  # every channel <- luma
    sat = s.view(-1, 1, 1) * eye + (1 - s).view(-1, 1, 1) * grey
    t = torch.tensor(_YIQ, dtype=dt, device=dev)
    t_inv = torch.linalg.inv(t)
    theta = (h - 1.0) * math.pi
    c, sn = torch.cos(theta), torch.sin(theta)
    rot = torch.zeros(b.shape[0], 3, 3, dtype=dt, device=dev)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = c, -sn
    rot[:, 2, 1], rot[:, 2, 2] = sn, c
    hue = t_inv @ rot @ t
    return b.view(-1, 1, 1) * (hue @ sat)


def pca_offsets(alpha: torch.Tensor) -> torch.Tensor:
    """PCA lighting offsets [B, 3] (0-255 scale) for alphas [B, 3]:
    offset_c = sum_j eigvec[c][j] * alpha_j * eigval[j]."""
    vec = torch.tensor(PCA_EIGVEC, dtype=alpha.dtype, device=alpha.device)
    val = torch.tensor(PCA_EIGVAL, dtype=alpha.dtype, device=alpha.device)
    return (alpha * val) @ vec.T


# ---------------------------------------------------------------------------------------
# crops
# ---------------------------------------------------------------------------------------
def sample_crop_boxes(
    n: int, height: int, width: int, cfg: AugConfig, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random-resized-crop boxes (top i, left j, height h, width w) for ``n`` images, int64.

    torchvision ``RandomResizedCrop``'s rule, vectorised: 10 tries of area ~ U[area]*H*W and
    log-aspect ~ U[log ratio]; the first try with 0 < w <= W and 0 < h <= H wins, its
    position uniform; if all 10 fail, the central crop (clipped to the ratio range).
    Tensors live on ``generator.device`` (CPU when ``generator`` is None).
    """
    dev = _gen_device(generator)
    tries = 10
    area = float(height * width)
    lo, hi = math.log(cfg.ratio[0]), math.log(cfg.ratio[1])
    u = _rand((n, tries, 4), generator)
    target = area * (cfg.area[0] + (cfg.area[1] - cfg.area[0]) * u[..., 0])
    aspect = torch.exp(lo + (hi - lo) * u[..., 1])
    # torch.round and Python's round both round half to even.
    w_try = torch.round(torch.sqrt(target * aspect)).to(torch.int64)
    h_try = torch.round(torch.sqrt(target / aspect)).to(torch.int64)
    ok = (w_try > 0) & (w_try <= width) & (h_try > 0) & (h_try <= height)
    first = torch.argmax(ok.to(torch.int8), dim=1, keepdim=True)  # first True (0 if none)
    any_ok = ok.any(dim=1)
    h = torch.gather(h_try, 1, first).squeeze(1)
    w = torch.gather(w_try, 1, first).squeeze(1)
    ui = torch.gather(u[..., 2], 1, first).squeeze(1)
    uj = torch.gather(u[..., 3], 1, first).squeeze(1)
    # uniform integer in [0, H - h] (inclusive), as torch.randint(0, H - h + 1)
    i = torch.floor(ui * (height - h + 1).to(ui.dtype)).to(torch.int64).clamp_(min=0)
    j = torch.floor(uj * (width - w + 1).to(uj.dtype)).to(torch.int64).clamp_(min=0)
    i = torch.minimum(i, (height - h).clamp(min=0))
    j = torch.minimum(j, (width - w).clamp(min=0))
    if not bool(any_ok.all()):
        in_ratio = float(width) / float(height)
        if in_ratio < min(cfg.ratio):
            fw, fh = width, int(round(width / min(cfg.ratio)))
        elif in_ratio > max(cfg.ratio):
            fh, fw = height, int(round(height * max(cfg.ratio)))
        else:
            fw, fh = width, height
        fi, fj = (height - fh) // 2, (width - fw) // 2
        full = lambda v: torch.full_like(h, v)  # noqa: E731
        h = torch.where(any_ok, h, full(fh))
        w = torch.where(any_ok, w, full(fw))
        i = torch.where(any_ok, i, full(fi))
        j = torch.where(any_ok, j, full(fj))
    return i.to(dev), j.to(dev), h.to(dev), w.to(dev)


def resized_crops(x: torch.Tensor, boxes, out_size: int) -> torch.Tensor:
    """Crop box (i, j, h, w) of each image and resize it to out_size x out_size (float32).

    Bilinear with area-style anti-aliasing when shrinking (``roi_align``, adaptive sampling).
    """
    i, j, h, w = (t.to(device=x.device, dtype=torch.float32) for t in boxes)
    b = x.shape[0]
    rois = torch.stack(
        [torch.arange(b, device=x.device, dtype=torch.float32), j, i, j + w, i + h], dim=1
    )
    xf = x if x.is_floating_point() else x.to(torch.float32)
    return roi_align(xf, rois, output_size=(out_size, out_size), spatial_scale=1.0,
                     sampling_ratio=-1, aligned=True)


# ---------------------------------------------------------------------------------------
# the pipelines
# ---------------------------------------------------------------------------------------
def batch_augment(x: torch.Tensor, cfg: AugConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sec 2.1 training augmentation of a uint8 batch [B, C, H, W] -> float32 normalised
    [B, C, out, out] on ``x``'s device. Vectorised over the batch.

    ``generator`` may live on ``x``'s device or on the CPU (see module notes); None uses
    torch's default CPU generator.
    """
    _check_batch(x)
    bsz, ch, height, width = x.shape
    if bsz == 0:
        return torch.empty(0, ch, cfg.out_size, cfg.out_size, device=x.device)
    boxes = sample_crop_boxes(bsz, height, width, cfg, generator)  # drawn either way: same RNG stream
    if whole_image_crops(height, width, cfg):
        return photometric(x.to(torch.float32), cfg, generator)
    return photometric(resized_crops(x, boxes, cfg.out_size), cfg, generator)


def whole_image_crops(height: int, width: int, cfg: AugConfig) -> bool:
    """True when every crop box is the whole image and the output keeps its size, so the
    resize is the identity (the `local` scale: area 100%, square 28 px images).

    Why: with area fraction 1 a try is accepted only if round(sqrt(A*r)) <= W and
    round(sqrt(A/r)) <= H with sqrt(A*r)*sqrt(A/r) = A = H*W; for a square image both
    must round to the side, i.e. the box is the whole image; the fallback (central crop,
    clipped to the ratio range) is the whole image too since ratio 1 is in the range.
    """
    return (cfg.area[0] >= 1.0 and height == width == cfg.out_size
            and cfg.ratio[0] <= 1.0 <= cfg.ratio[1])


def photometric(out: torch.Tensor, cfg: AugConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Steps 2-5 of Sec 2.1 on already cropped float32 0-255 images [B, C, out, out]: flip,
    colour jitter, PCA lighting, normalisation. Shared by the in-memory and the decode paths."""
    bsz, ch = out.shape[:2]
    dev = out.device
    flip = (_rand((bsz,), generator) < cfg.flip_p).to(dev)
    if cfg.flip_p > 0:
        out = torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)

    if cfg.color_jitter > 0:
        lo, span = 1.0 - cfg.color_jitter, 2.0 * cfg.color_jitter
        coef = (lo + span * _rand((bsz, 3), generator)).to(dev)  # brightness, saturation, hue
        if ch == 3:
            mats = color_matrices(coef[:, 0], coef[:, 1], coef[:, 2]).to(torch.float32)
            out = torch.einsum("bij,bjhw->bihw", mats, out)
        else:
            out = out * coef[:, 0].to(torch.float32).view(-1, 1, 1, 1)
        out = out.clamp_(0.0, 255.0)

    if cfg.pca_std > 0 and ch == 3:
        g_dev = _gen_device(generator)
        alpha = torch.randn((bsz, 3), generator=generator, device=g_dev, dtype=torch.float64) * cfg.pca_std
        out = out + pca_offsets(alpha).to(device=dev, dtype=torch.float32).view(bsz, 3, 1, 1)

    m, s = _mean_std(cfg, ch, dev)
    return (out - m) / s


def eval_batch(x: torch.Tensor, cfg: AugConfig) -> torch.Tensor:
    """Evaluation transform (Sec 2.1): resize the shorter side to ``cfg.eval_resize``
    (bilinear, anti-aliased, as torchvision v2 ``Resize``), center crop ``cfg.out_size``,
    normalise. uint8 [B, C, H, W] -> float32 [B, C, out, out]. When the images already are
    ``out_size`` square and ``eval_resize == out_size`` this is just normalisation.
    """
    _check_batch(x)
    height, width = x.shape[-2:]
    if not (height == width == cfg.out_size and cfg.eval_resize == cfg.out_size):
        if min(height, width) != cfg.eval_resize:
            x = TF.resize(x, [cfg.eval_resize], antialias=True)
        if tuple(x.shape[-2:]) != (cfg.out_size, cfg.out_size):
            x = TF.center_crop(x, [cfg.out_size, cfg.out_size])
    return normalize(x, cfg)

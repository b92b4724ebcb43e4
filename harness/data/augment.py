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
* No host-device synchronisation: the constants (luma, YIQ and its inverse, PCA basis,
  mean/std) are built once per (device, dtype) and cached; the crop fallback is a
  ``torch.where``, never a ``bool()`` of a device tensor. On a GPU a step's augmentation is
  only queued kernels (tests/test_gpu_readiness.py checks for host reads).
* Data-parallel workers (``shard=(rank, world, n)``): the random parameters are drawn for
  the whole global batch of ``n`` images, as one process would, and each worker keeps rows
  ``rank::world`` and augments only its own images; the workers' outputs together are the
  single-process batch.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

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
Shard = tuple[int, int, int]  # (rank, world size, images in the global batch)


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, dtype=torch.float64,
          shard: Shard | None = None) -> torch.Tensor:
    """U[0, 1) draws of ``shape``; with ``shard`` drawn for the global batch (first dim ``n``)
    and cut to this worker's rows ``rank::world``."""
    if shard is None:
        return torch.rand(shape, generator=generator, device=_gen_device(generator), dtype=dtype)
    rank, world, n = shard
    u = torch.rand((n, *shape[1:]), generator=generator, device=_gen_device(generator), dtype=dtype)
    return u[rank::world]


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, shard: Shard | None = None) -> torch.Tensor:
    dev = _gen_device(generator)
    if shard is None:
        return torch.randn(shape, generator=generator, device=dev, dtype=torch.float64)
    rank, world, n = shard
    return torch.randn((n, *shape[1:]), generator=generator, device=dev, dtype=torch.float64)[rank::world]


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor onto ``device`` without waiting for the device: pinned memory and
    a non-blocking copy on CUDA (a pageable copy would synchronise), a plain ``.to`` elsewhere."""
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise DataError(f"expected a [B, C, H, W] tensor, got {type(x).__name__} "
                        f"{tuple(getattr(x, 'shape', ()))}")
    if x.dtype != torch.uint8:
        raise DataError(f"expected uint8 images (0-255), got {x.dtype}")


class _Consts(NamedTuple):
    eye: torch.Tensor  # [3, 3]
    grey: torch.Tensor  # [3, 3]: every channel <- luma
    yiq: torch.Tensor  # [3, 3]
    yiq_inv: torch.Tensor  # [3, 3]
    pca_vec: torch.Tensor  # [3, 3]
    pca_val: torch.Tensor  # [3]
    e00: torch.Tensor  # [3, 3]: 1 at [0, 0], else 0


@functools.lru_cache(maxsize=None)
def _consts(device: torch.device, dtype: torch.dtype) -> _Consts:
    """The colour and PCA constants on ``device``, built once (on the CPU: no device
    solver, no per-batch host-to-device copies)."""
    eye = torch.eye(3, dtype=dtype)
    w = torch.tensor(LUMA, dtype=dtype)
    grey = torch.ones(3, 1, dtype=dtype) @ w.view(1, 3)
    t = torch.tensor(_YIQ, dtype=dtype)
    t_inv = torch.linalg.inv(t)
    vec = torch.tensor(PCA_EIGVEC, dtype=dtype)
    val = torch.tensor(PCA_EIGVAL, dtype=dtype)
    e00 = torch.zeros(3, 3, dtype=dtype)
    e00[0, 0] = 1
    return _Consts(*(c.to(device) for c in (eye, grey, t, t_inv, vec, val, e00)))


@functools.lru_cache(maxsize=None)
def _mean_std_cached(mean: tuple[float, ...], std: tuple[float, ...], channels: int,
                     device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    m = torch.tensor(mean, dtype=dtype).view(1, channels, 1, 1).to(device)
    s = torch.tensor(std, dtype=dtype).view(1, channels, 1, 1).to(device)
    return m, s


def _mean_std(cfg: AugConfig, channels: int, device, dtype=torch.float32):
    mean, std = cfg.mean, cfg.std
    if len(mean) == 1 and channels > 1:
        mean, std = mean * channels, std * channels
    if len(mean) != channels:
        raise DataError(f"AugConfig.mean/std have {len(cfg.mean)} channel(s) but the images have "
                        f"{channels}; pass the data set's own mean/std (e.g. InMemoryDataset.mean)")
    return _mean_std_cached(tuple(mean), tuple(std), channels, torch.device(device), dtype)


def normalize(x: torch.Tensor, cfg: AugConfig) -> torch.Tensor:
    """(x - mean) / std per channel, x on the 0-255 scale (uint8 or float) -> float32."""
    m, s = _mean_std(cfg, x.shape[1], x.device)
    return (x.to(torch.float32) - m) / s


def color_matrices(b: torch.Tensor, s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Per-image 3x3 RGB matrices for brightness ``b``, saturation ``s``, hue ``h`` coefficients.

    ``rgb_out = M @ rgb_in``. Coefficient 1 is the identity for each. Shapes: [B] -> [B, 3, 3].
    """
    dt, dev = b.dtype, b.device
    k = _consts(dev, dt)
    sat = s.view(-1, 1, 1) * k.eye + (1 - s).view(-1, 1, 1) * k.grey
    theta = (h - 1.0) * math.pi
    c, sn = torch.cos(theta), torch.sin(theta)
    rot = k.e00.expand(b.shape[0], 3, 3).clone()  # 1 at [0, 0] (Y kept), chroma rotation below
    rot[:, 1, 1], rot[:, 1, 2] = c, -sn
    rot[:, 2, 1], rot[:, 2, 2] = sn, c
    hue = k.yiq_inv @ rot @ k.yiq
    return b.view(-1, 1, 1) * (hue @ sat)


def pca_offsets(alpha: torch.Tensor) -> torch.Tensor:
    """PCA lighting offsets [B, 3] (0-255 scale) for alphas [B, 3]:
    offset_c = sum_j eigvec[c][j] * alpha_j * eigval[j]."""
    k = _consts(alpha.device, alpha.dtype)
    return (alpha * k.pca_val) @ k.pca_vec.T


# ---------------------------------------------------------------------------------------
# crops
# ---------------------------------------------------------------------------------------
CROP_TRIES = 10  # torchvision RandomResizedCrop's tries before the central-crop fallback


def sample_crop_boxes(
    n: int, height: int | torch.Tensor, width: int | torch.Tensor, cfg: AugConfig,
    generator: torch.Generator | None = None, shard: Shard | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random-resized-crop boxes (top i, left j, height h, width w) for ``n`` images, int64.

    torchvision ``RandomResizedCrop``'s rule, vectorised: 10 tries of area ~ U[area]*H*W and
    log-aspect ~ U[log ratio]; the first try with 0 < w <= W and 0 < h <= H wins, its
    position uniform; if all 10 fail, the central crop (clipped to the ratio range).
    ``height``/``width``: one size for all, or int64 tensors [n] (images of different sizes,
    the decode path). Tensors live on ``generator.device`` (CPU when ``generator`` is None);
    nothing is read back to the host. ``shard``: draws for the global batch, rows of this worker.
    """
    dev = _gen_device(generator)
    per_image = isinstance(height, torch.Tensor)
    if per_image:
        height = height.to(device=dev, dtype=torch.int64).view(n)
        width = width.to(device=dev, dtype=torch.int64).view(n)
        area = (height * width).to(torch.float64).view(n, 1)
        hcol, wcol = height.view(n, 1), width.view(n, 1)
    else:
        area = float(height * width)
        hcol, wcol = height, width
    lo, hi = math.log(cfg.ratio[0]), math.log(cfg.ratio[1])
    u = _rand((n, CROP_TRIES, 4), generator, shard=shard)
    target = area * (cfg.area[0] + (cfg.area[1] - cfg.area[0]) * u[..., 0])
    aspect = torch.exp(lo + (hi - lo) * u[..., 1])
    # torch.round and Python's round both round half to even.
    w_try = torch.round(torch.sqrt(target * aspect)).to(torch.int64)
    h_try = torch.round(torch.sqrt(target / aspect)).to(torch.int64)
    ok = (w_try > 0) & (w_try <= wcol) & (h_try > 0) & (h_try <= hcol)
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
    # all 10 tries failed: the central crop; chosen per image on the device (no host read)
    fi, fj, fh, fw = (_fallback_tensors if per_image else _fallback_ints)(height, width, cfg)
    h = torch.where(any_ok, h, fh)
    w = torch.where(any_ok, w, fw)
    i = torch.where(any_ok, i, fi)
    j = torch.where(any_ok, j, fj)
    return i, j, h, w


def _fallback_ints(height: int, width: int, cfg: AugConfig) -> tuple[int, int, int, int]:
    """torchvision's fallback box (i, j, h, w) for one image size: the whole image clipped to
    the ratio range, centred."""
    in_ratio = float(width) / float(height)
    if in_ratio < min(cfg.ratio):
        fw, fh = width, int(round(width / min(cfg.ratio)))
    elif in_ratio > max(cfg.ratio):
        fh, fw = height, int(round(height * max(cfg.ratio)))
    else:
        fw, fh = width, height
    return (height - fh) // 2, (width - fw) // 2, fh, fw


def _fallback_tensors(height: torch.Tensor, width: torch.Tensor, cfg: AugConfig):
    """:func:`_fallback_ints` for per-image sizes (int64 tensors), same float64 arithmetic."""
    rmin, rmax = min(cfg.ratio), max(cfg.ratio)
    hd, wd = height.to(torch.float64), width.to(torch.float64)
    in_ratio = wd / hd
    narrow, wide = in_ratio < rmin, in_ratio > rmax
    fh = torch.where(narrow, torch.round(wd / rmin).to(torch.int64), height)
    fw = torch.where(wide, torch.round(hd * rmax).to(torch.int64), width)
    return (height - fh) // 2, (width - fw) // 2, fh, fw


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


CANVAS_WASTE = 2.0  # a group's padded canvas may hold at most this many times its pixels


def size_groups(sizes: list[tuple[int, int]], waste: float = CANVAS_WASTE) -> list[list[int]]:
    """Indices of images of similar size, so each group's padded canvas wastes at most
    ``waste`` x its pixels (one 4000 px photo does not inflate a batch of 500 px ones).
    Largest first; indices ascending inside a group."""
    order = sorted(range(len(sizes)), key=lambda k: -sizes[k][0] * sizes[k][1])
    groups: list[list[int]] = []
    hmax = wmax = pixels = 0
    for k in order:
        h, w = sizes[k]
        if groups:
            nh, nw = max(hmax, h), max(wmax, w)
            if (len(groups[-1]) + 1) * (nh + 1) * (nw + 1) <= waste * (pixels + h * w):
                groups[-1].append(k)
                hmax, wmax, pixels = nh, nw, pixels + h * w
                continue
        groups.append([k])
        hmax, wmax, pixels = h, w, h * w
    return [sorted(g) for g in groups]


def crops_of_images(images: list[torch.Tensor], boxes, out_size: int) -> torch.Tensor:
    """:func:`resized_crops` for images of different sizes (the decode path): the numbers of
    cropping each image alone, in one ``roi_align`` per size group.

    Each group is padded into one canvas, every image at the top left, with its last row and
    column repeated once: ``roi_align`` (aligned) samples at most half a pixel past a box
    and clamps at the image border, so the repeated edge gives the clamped values (up to
    float rounding: ``(1-t) v + t v`` instead of ``v``, about 1e-5 on the 0-255 scale).
    Only a few copy kernels per image; no host-device synchronisation.
    """
    dev = images[0].device
    ch = images[0].shape[0]
    groups = size_groups([(int(im.shape[-2]), int(im.shape[-1])) for im in images])
    if len(groups) == 1:
        return resized_crops(_canvas(images, groups[0]), boxes, out_size)
    order = torch.tensor([k for g in groups for k in g], dtype=torch.int64)  # one copy per batch
    order_box, order_out = to_device(order, boxes[0].device), to_device(order, dev)
    out = torch.empty(len(images), ch, out_size, out_size, dtype=torch.float32, device=dev)
    start = 0
    for idx in groups:
        stop = start + len(idx)
        sel = order_box[start:stop]
        part = resized_crops(_canvas(images, idx), tuple(t.index_select(0, sel) for t in boxes), out_size)
        out.index_copy_(0, order_out[start:stop], part)
        start = stop
    return out


def _canvas(images: list[torch.Tensor], idx: list[int]) -> torch.Tensor:
    """Images ``idx`` padded into one [n, C, Hmax + 1, Wmax + 1] tensor, each at the top left
    with its last row and column repeated once (see :func:`crops_of_images`)."""
    hmax = max(int(images[k].shape[-2]) for k in idx)
    wmax = max(int(images[k].shape[-1]) for k in idx)
    first = images[idx[0]]
    canvas = torch.empty(len(idx), first.shape[0], hmax + 1, wmax + 1, dtype=first.dtype, device=first.device)
    for row, k in enumerate(idx):
        img = images[k]
        h, w = int(img.shape[-2]), int(img.shape[-1])
        canvas[row, :, :h, :w] = img
        canvas[row, :, h, :w] = img[:, h - 1]
        canvas[row, :, :h + 1, w] = canvas[row, :, :h + 1, w - 1]
    return canvas


# ---------------------------------------------------------------------------------------
# the pipelines
# ---------------------------------------------------------------------------------------
def batch_augment(x: torch.Tensor, cfg: AugConfig, generator: torch.Generator | None = None,
                  shard: Shard | None = None) -> torch.Tensor:
    """Sec 2.1 training augmentation of a uint8 batch [B, C, H, W] -> float32 normalised
    [B, C, out, out] on ``x``'s device. Vectorised over the batch; no host reads.

    ``generator`` may live on ``x``'s device or on the CPU (see module notes); None uses
    torch's default CPU generator. ``shard=(rank, world, n)``: ``x`` holds rows
    ``rank::world`` of a global batch of ``n`` images; the random draws are the global batch's.
    """
    _check_batch(x)
    bsz, ch, height, width = x.shape
    if bsz == 0:
        return torch.empty(0, ch, cfg.out_size, cfg.out_size, device=x.device)
    if whole_image_crops(height, width, cfg):
        _rand((bsz, CROP_TRIES, 4), generator, shard=shard)  # the boxes' draws: same RNG stream
        return photometric(x.to(torch.float32), cfg, generator, shard)
    boxes = sample_crop_boxes(bsz, height, width, cfg, generator, shard)
    return photometric(resized_crops(x, boxes, cfg.out_size), cfg, generator, shard)


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


def photometric(out: torch.Tensor, cfg: AugConfig, generator: torch.Generator | None = None,
                shard: Shard | None = None) -> torch.Tensor:
    """Steps 2-5 of Sec 2.1 on already cropped float32 0-255 images [B, C, out, out]: flip,
    colour jitter, PCA lighting, normalisation. Shared by the in-memory, decode and worker
    paths. ``shard`` as in :func:`batch_augment`."""
    bsz, ch = out.shape[:2]
    dev = out.device
    flip = (_rand((bsz,), generator, shard=shard) < cfg.flip_p).to(dev)
    if cfg.flip_p > 0:
        out = torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)

    if cfg.color_jitter > 0:
        lo, span = 1.0 - cfg.color_jitter, 2.0 * cfg.color_jitter
        coef = (lo + span * _rand((bsz, 3), generator, shard=shard)).to(dev)  # brightness, saturation, hue
        if ch == 3:
            mats = color_matrices(coef[:, 0], coef[:, 1], coef[:, 2]).to(torch.float32)
            out = torch.einsum("bij,bjhw->bihw", mats, out)
        else:
            out = out * coef[:, 0].to(torch.float32).view(-1, 1, 1, 1)
        out = out.clamp_(0.0, 255.0)

    if cfg.pca_std > 0 and ch == 3:
        alpha = _randn((bsz, 3), generator, shard) * cfg.pca_std
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

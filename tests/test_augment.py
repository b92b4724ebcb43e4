"""Sec 2.1 augmentation: the batched (``harness.data.augment``) and per-image torchvision v2
(``harness.data.transforms``) pipelines, checked against the paper's numbers and each other."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from harness.data import (
    PAPER_MEAN,
    PAPER_STD,
    PCA_EIGVAL,
    PCA_EIGVEC,
    AugConfig,
    DataError,
    batch_augment,
    eval_batch,
    eval_transform,
    sample_crop_boxes,
    train_transform,
)
from harness.data.augment import (LUMA, color_matrices, photometric, resized_crops,
                                   whole_image_crops)

KS_P = 1e-3  # generous: fixed seeds make these deterministic, the threshold only guards bugs
N = 3000


pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _closed_form_pca_std() -> np.ndarray:
    vec, val = np.array(PCA_EIGVEC), np.array(PCA_EIGVAL)
    return np.sqrt(((vec * val * 0.1) ** 2).sum(axis=1))


# ---------------------------------------------------------------------------------------
def test_defaults_are_the_papers_numbers():
    """Sec 2.1: crop area U[8%,100%], aspect U[3/4,4/3], 224 px, flip 0.5, HSB U[0.6,1.4],
    PCA alpha ~ N(0,0.1), ImageNet mean/std; eval resize 256 + center crop 224."""
    cfg = AugConfig()
    assert cfg.out_size == 224 and cfg.eval_resize == 256
    assert cfg.area == (0.08, 1.0)
    assert cfg.ratio == (3 / 4, 4 / 3)
    assert cfg.flip_p == 0.5
    assert (1 - cfg.color_jitter, 1 + cfg.color_jitter) == pytest.approx((0.6, 1.4))
    assert cfg.pca_std == 0.1
    assert cfg.mean == PAPER_MEAN == (123.68, 116.779, 103.939)
    assert cfg.std == PAPER_STD == (58.393, 57.12, 57.375)
    assert PCA_EIGVAL == (55.46, 4.794, 1.148)
    assert PCA_EIGVEC == ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140),
                          (-0.5836, -0.6948, 0.4203))
    inception = AugConfig(out_size=299, eval_resize=342)  # Inception-V3's sizes are cfg values
    assert (inception.out_size, inception.eval_resize) == (299, 342)


def test_bad_config_is_a_data_error():
    """AugConfig validates its ranges with a one-line DataError."""
    with pytest.raises(DataError, match="area"):
        AugConfig(area=(0.0, 1.0))
    with pytest.raises(DataError, match="mean"):
        AugConfig(mean=(1.0, 2.0), std=(1.0,))


# ---------------------------------------------------------------------------------------
def _v2_boxes(n: int, height: int, width: int, cfg: AugConfig) -> np.ndarray:
    rrc = v2.RandomResizedCrop(cfg.out_size, scale=cfg.area, ratio=cfg.ratio)
    img = tv_tensors.Image(torch.zeros(1, height, width, dtype=torch.uint8))
    torch.manual_seed(1)
    rows = []
    for _ in range(n):
        p = rrc.make_params([img])
        rows.append((p["top"], p["left"], p["height"], p["width"]))
    return np.array(rows, dtype=np.float64)


def test_crop_boxes_match_torchvision_in_distribution():
    """Sec 2.1 random-resized crop: the vectorised sampler and torchvision v2's
    RandomResizedCrop give the same area-fraction and log-aspect distributions (KS test)."""
    height, width, cfg = 300, 400, AugConfig()
    i, j, h, w = (t.double().numpy() for t in sample_crop_boxes(N, height, width, cfg, _gen(0)))
    ref = _v2_boxes(N, height, width, cfg)
    assert (i >= 0).all() and (j >= 0).all() and (i + h <= height).all() and (j + w <= width).all()
    area_b, area_v = h * w / (height * width), ref[:, 2] * ref[:, 3] / (height * width)
    lasp_b, lasp_v = np.log(w / h), np.log(ref[:, 3] / ref[:, 2])
    for ours, theirs in ((area_b, area_v), (lasp_b, lasp_v)):
        assert stats.ks_2samp(ours, theirs).pvalue > KS_P
        assert ours.mean() == pytest.approx(theirs.mean(), abs=0.02)
        assert np.quantile(ours, [0.1, 0.5, 0.9]) == pytest.approx(
            np.quantile(theirs, [0.1, 0.5, 0.9]), abs=0.04)
    # the paper's ranges (up to pixel rounding); the mean is below U[0.08, 1]'s 0.54 because
    # large boxes that do not fit a 3:4 image are rejected and redrawn (torchvision's rule)
    assert area_b.min() >= 0.08 - 0.01 and area_b.max() <= 1.0
    assert 0.40 < area_b.mean() < 0.54
    assert np.abs(lasp_b).max() <= math.log(4 / 3) + 0.02
    # position: uniform over the valid range -> centre of crop at the image centre on average
    assert (i + h / 2).mean() == pytest.approx(height / 2, rel=0.03)
    assert (j + w / 2).mean() == pytest.approx(width / 2, rel=0.03)


def test_crop_fallback_is_torchvisions_center_crop():
    """When 10 tries fail (area > 100%), both fall back to the central crop clipped to the
    aspect range: a 100x400 image gives a 100x133 box at left 133."""
    cfg = AugConfig(area=(1.5, 2.0))
    i, j, h, w = sample_crop_boxes(8, 100, 400, cfg, _gen(0))
    ref = _v2_boxes(1, 100, 400, cfg)[0]
    assert (i == 0).all() and (h == 100).all() and (w == 133).all() and (j == 133).all()
    assert tuple(ref) == (0, 133, 100, 133)


@settings(max_examples=40, deadline=None)
@given(height=st.integers(1, 64), width=st.integers(1, 64), lo=st.floats(0.01, 1.0),
       r_lo=st.floats(0.2, 1.0), r_hi=st.floats(1.0, 5.0), seed=st.integers(0, 2**31 - 1))
def test_crop_boxes_always_inside_the_image(height, width, lo, r_lo, r_hi, seed):
    """Any image size and Sec 2.1-style range gives non-empty boxes inside the image."""
    cfg = AugConfig(area=(lo, 1.0), ratio=(r_lo, r_hi))
    i, j, h, w = sample_crop_boxes(32, height, width, cfg, _gen(seed))
    assert (h >= 1).all() and (w >= 1).all()
    assert (i >= 0).all() and (j >= 0).all() and (i + h <= height).all() and (j + w <= width).all()


# ---------------------------------------------------------------------------------------
def _asym_image(ch: int, size: int) -> torch.Tensor:
    ramp = torch.linspace(10, 240, size).round().to(torch.uint8)
    return ramp.view(1, 1, 1, size).expand(1, ch, size, size).contiguous()


def test_flip_rate_is_one_half_in_both():
    """Sec 2.1 horizontal flip with p = 0.5, batched and v2 (full-image crops, no colour)."""
    cfg = AugConfig(out_size=8, area=(1.0, 1.0), ratio=(1.0, 1.0), color_jitter=0, pca_std=0)
    x = _asym_image(3, 8)
    plain = eval_batch(x, AugConfig(out_size=8, eval_resize=8))
    out = batch_augment(x.expand(N, -1, -1, -1).contiguous(), cfg, _gen(0))
    flipped = (out - plain.flip(-1)).abs().amax((1, 2, 3)) < 1e-4
    same = (out - plain).abs().amax((1, 2, 3)) < 1e-4
    assert bool((flipped ^ same).all())
    rate_b = flipped.double().mean().item()

    tf = train_transform(cfg)
    torch.manual_seed(0)
    outs = torch.stack([tf(x[0]) for _ in range(1000)])
    rate_v = ((outs - plain.flip(-1)).abs().amax((1, 2, 3)) < 1e-4).double().mean().item()
    assert rate_b == pytest.approx(0.5, abs=0.04)
    assert rate_v == pytest.approx(0.5, abs=0.05)


def _offsets_batched(n: int) -> np.ndarray:
    cfg = AugConfig(out_size=4, area=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0, color_jitter=0)
    x = torch.full((n, 3, 4, 4), 128, dtype=torch.uint8)
    out = batch_augment(x, cfg, _gen(3))
    pix = out[:, :, 0, 0].double() * torch.tensor(PAPER_STD).double() + torch.tensor(PAPER_MEAN).double()
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out), atol=1e-5)  # one offset per channel
    return (pix - 128).numpy()


def _offsets_v2(n: int) -> np.ndarray:
    cfg = AugConfig(out_size=4, area=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0, color_jitter=0)
    tf = train_transform(cfg)
    img = torch.full((3, 4, 4), 128, dtype=torch.uint8)
    torch.manual_seed(2)
    out = torch.stack([tf(img)[:, 0, 0] for _ in range(n)]).double()
    return (out * torch.tensor(PAPER_STD).double() + torch.tensor(PAPER_MEAN).double() - 128).numpy()


def test_pca_lighting_moments_match_closed_form():
    """Sec 2.1 PCA noise: offset_c = sum_j eigvec[c][j] alpha_j eigval[j], alpha ~ N(0, 0.1),
    on the 0-255 scale. Mean ~0 and per-channel std = sqrt(sum_j (eigvec[c][j] eigval[j] 0.1)^2)
    for both implementations, which also agree by KS test."""
    expected = _closed_form_pca_std()
    assert expected == pytest.approx([3.1665, 3.2225, 3.2541], abs=1e-3)
    ob, ov = _offsets_batched(N), _offsets_v2(1500)
    for o, n in ((ob, N), (ov, 1500)):
        se = expected / math.sqrt(n)
        assert np.all(np.abs(o.mean(0)) < 4 * se)
        assert o.std(0) == pytest.approx(expected, rel=0.06)
    for c in range(3):
        assert stats.ks_2samp(ob[:, c], ov[:, c]).pvalue > KS_P


def test_colour_jitter_semantics():
    """Sec 2.1 hue/saturation/brightness: each coefficient 1 is the identity, grey stays grey
    (scaled by brightness), and luma is scaled by the brightness coefficient only."""
    one = torch.ones(1, dtype=torch.float64)
    assert torch.allclose(color_matrices(one, one, one)[0], torch.eye(3, dtype=torch.float64), atol=1e-12)
    b, s, h = torch.tensor([0.7, 1.3]), torch.tensor([1.4, 0.6]), torch.tensor([0.6, 1.25])
    m = color_matrices(b.double(), s.double(), h.double())
    grey = torch.ones(3, dtype=torch.float64)
    assert torch.allclose(m @ grey, b.double().view(2, 1) * grey, atol=1e-9)
    w = torch.tensor(LUMA, dtype=torch.float64)
    assert torch.allclose(w @ m, b.double().view(2, 1) * w, atol=1e-9)


def test_colour_jitter_matches_v2_in_distribution():
    """Sec 2.1 colour jitter: on a grey image the brightness factor is U[0.6, 1.4]; on a
    coloured image the batched and v2 outputs agree per channel (KS test)."""
    cfg = AugConfig(out_size=4, area=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0, pca_std=0)
    mean, std = torch.tensor(PAPER_MEAN), torch.tensor(PAPER_STD)
    grey = torch.full((N, 3, 4, 4), 100, dtype=torch.uint8)
    out = batch_augment(grey, cfg, _gen(5))[:, :, 0, 0] * std + mean
    factor = (out[:, 0] / 100).double().numpy()
    assert stats.kstest(factor, stats.uniform(loc=0.6, scale=0.8).cdf).pvalue > KS_P

    colour = torch.tensor([150, 110, 80], dtype=torch.uint8).view(1, 3, 1, 1).expand(N, 3, 4, 4).contiguous()
    ob = (batch_augment(colour, cfg, _gen(6))[:, :, 0, 0] * std + mean).numpy()
    tf = train_transform(cfg)
    torch.manual_seed(7)
    ov = (torch.stack([tf(colour[0])[:, 0, 0] for _ in range(1500)]) * std + mean).numpy()
    for c in range(3):
        assert stats.ks_2samp(ob[:, c], ov[:, c]).pvalue > KS_P
        assert ob[:, c].mean() == pytest.approx(ov[:, c].mean(), abs=2.0)


# ---------------------------------------------------------------------------------------
def test_batch_augment_shape_dtype_and_normalisation():
    """Sec 2.1 output: float32 [B, C, 224, 224] on the input's device; a constant image equal to
    the mean maps to ~0 after any crop/flip when colour jitter and PCA are off."""
    x = torch.randint(0, 256, (4, 3, 300, 400), dtype=torch.uint8, generator=_gen(0))
    out = batch_augment(x, AugConfig(), _gen(1))
    assert out.shape == (4, 3, 224, 224) and out.dtype == torch.float32 and out.device == x.device
    assert torch.isfinite(out).all()

    cfg = AugConfig(out_size=32, color_jitter=0, pca_std=0)
    const = torch.tensor([round(m) for m in PAPER_MEAN], dtype=torch.uint8).view(1, 3, 1, 1)
    out = batch_augment(const.expand(16, 3, 40, 50).contiguous(), cfg, _gen(2))
    assert out.abs().max() < 0.01

    grey_cfg = AugConfig(out_size=28, area=(0.35, 1.0), color_jitter=0.4, pca_std=0.1,
                         mean=(72.94,), std=(90.02,))
    g = batch_augment(torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8), grey_cfg, _gen(3))
    assert g.shape == (8, 1, 28, 28)  # 1 channel: brightness only, no hue/saturation/PCA


def test_batch_augment_is_deterministic_per_generator_seed():
    """Same generator seed -> identical batch; different seed -> different batch."""
    x = torch.randint(0, 256, (8, 3, 20, 20), dtype=torch.uint8, generator=_gen(0))
    cfg = AugConfig(out_size=16)
    a, b, c = (batch_augment(x, cfg, _gen(s)) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("side", [8, 28, 33])
def test_whole_image_crops_are_the_whole_image_and_skip_the_resize(side):
    """Area 100% on square images: every sampled box (accepted or fallback) is the whole
    image, so the shortcut equals the roi_align path exactly and draws the same numbers."""
    cfg = AugConfig(out_size=side, area=(1.0, 1.0), mean=(72.94,), std=(90.02,))
    assert whole_image_crops(side, side, cfg)
    assert not whole_image_crops(side, side + 1, cfg)
    assert not whole_image_crops(side, side, AugConfig(out_size=side, area=(0.99, 1.0)))
    i, j, h, w = sample_crop_boxes(20000, side, side, cfg, _gen(4))
    assert (i == 0).all() and (j == 0).all() and (h == side).all() and (w == side).all()
    x = torch.randint(0, 256, (16, 1, side, side), dtype=torch.uint8, generator=_gen(0))
    g1, g2 = _gen(5), _gen(5)
    fast = batch_augment(x, cfg, g1)
    slow = photometric(resized_crops(x, sample_crop_boxes(16, side, side, cfg, g2), side), cfg, g2)
    assert torch.equal(fast, slow)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_batch_augment_rejects_bad_input():
    """Wrong dtype or channel count vs the config's mean is a one-line DataError."""
    with pytest.raises(DataError, match="uint8"):
        batch_augment(torch.zeros(2, 3, 8, 8), AugConfig(out_size=8), _gen())
    with pytest.raises(DataError, match="channel"):
        batch_augment(torch.zeros(2, 2, 8, 8, dtype=torch.uint8), AugConfig(out_size=8), _gen())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batch_augment_on_cuda_with_cpu_generator_matches_cpu():
    """A CPU generator drives a CUDA batch with the same parameters as on the CPU."""
    x = torch.randint(0, 256, (16, 3, 48, 64), dtype=torch.uint8, generator=_gen(0))
    cfg = AugConfig(out_size=32)
    cpu = batch_augment(x, cfg, _gen(4))
    gpu = batch_augment(x.cuda(), cfg, _gen(4))
    assert gpu.device.type == "cuda"
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-3)
    g = torch.Generator(device="cuda").manual_seed(4)
    assert batch_augment(x.cuda(), cfg, g).shape == (16, 3, 32, 32)


# ---------------------------------------------------------------------------------------
def test_eval_batch_resizes_256_and_center_crops_224():
    """Sec 2.1 evaluation on a 300x400 image: shorter side to 256 (anti-aliased bilinear),
    center crop 224, normalise; equal to torchvision v2 resize + center_crop, and to the
    per-image eval_transform."""
    x = torch.randint(0, 256, (2, 3, 300, 400), dtype=torch.uint8, generator=_gen(0))
    cfg = AugConfig()
    out = eval_batch(x, cfg)
    assert out.shape == (2, 3, 224, 224) and out.dtype == torch.float32
    ref = TF.center_crop(TF.resize(x, [256], antialias=True), [224, 224]).float()
    ref = (ref - torch.tensor(PAPER_MEAN).view(1, 3, 1, 1)) / torch.tensor(PAPER_STD).view(1, 3, 1, 1)
    assert torch.allclose(out, ref, atol=1e-5)
    per_image = torch.stack([eval_transform(cfg)(img) for img in x])
    assert torch.allclose(out, per_image, atol=1e-4)


def test_eval_batch_at_native_size_is_only_normalisation():
    """Local scale (28x28, eval_resize == out_size == 28): no resize, no crop."""
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=_gen(0))
    cfg = AugConfig(out_size=28, eval_resize=28, mean=(72.94,), std=(90.02,))
    assert torch.allclose(eval_batch(x, cfg), (x.float() - 72.94) / 90.02)


def test_train_transform_accepts_pil_and_tensor():
    """The per-image v2 pipeline takes PIL images and uint8 tensors, returns float normalised."""
    pil = TF.to_pil_image(torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8, generator=_gen(0)))
    tf = train_transform(AugConfig(out_size=24))
    for img in (pil, TF.pil_to_tensor(pil)):
        out = tf(img)
        assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    label = 3
    out, lab = tf(pil, label)  # labels pass through untouched
    assert lab == 3 and out.shape == (3, 24, 24)

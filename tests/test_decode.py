"""The device-decode ImageFolder path (harness.data.decode), run on the CPU.

References are independent: torchvision's own ``decode_image`` for decoding, the
transforms.v2 evaluation pipeline for evaluation, the identity for a full-image crop.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, read_file

from harness.batches import DECODE_MODES, DeviceDecodeBatches, make_batches
from harness.data import AugConfig
from harness.data.augment import normalize
from harness.data.decode import decode_batch, eval_images
from harness.data.transforms import eval_transform
from harness.errors import HarnessError
from harness.recipe import named_recipe
from harness.scales import SMOKE
from harness.spec import TrialSpec
from harness.trainer import TrainOptions, run_trial


def _tree(root: Path, size=(32, 32), per_class=4, png_every=0) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            d = root / split / cls
            d.mkdir(parents=True)
            for n in range(per_class):
                h, w = size if size else (20 + 6 * n, 36 - 3 * n)
                arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                fmt = "PNG" if png_every and n % png_every == 0 else "JPEG"
                Image.fromarray(arr).save(d / f"{cls}{n}.jpg", format=fmt)  # PNG bytes behind .jpg
    return root


def test_decode_batch_matches_torchvision_decode_image_even_with_a_png(tmp_path):
    root = _tree(tmp_path / "d", size=None, png_every=3)
    files = sorted((root / "train").rglob("*.jpg"))
    data = [read_file(str(f)) for f in files]
    got = decode_batch(data, torch.device("cpu"))
    for f, img in zip(files, got):
        ref = decode_image(read_file(str(f)), mode=ImageReadMode.RGB)
        assert img.dtype == torch.uint8 and torch.equal(img, ref), f


def test_full_image_crop_without_photometric_steps_is_normalisation_only(tmp_path):
    root = _tree(tmp_path / "d")
    cfg = AugConfig(out_size=32, eval_resize=32, area=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0,
                    color_jitter=0.0, pca_std=0.0)
    src = DeviceDecodeBatches(str(root), cfg, 4,
                              torch.device("cpu"), workers=0)
    x, y = next(src.train_epoch(0, torch.Generator().manual_seed(0)))
    assert x.shape == (4, 3, 32, 32) and y.dtype == torch.int64
    # rebuild the same 4 images from disk, in the loader's order, by matching pixels
    pool = {f: decode_image(read_file(str(f)), mode=ImageReadMode.RGB) for f in (root / "train").rglob("*.jpg")}
    for xi in x:
        assert any(torch.allclose(xi, normalize(img[None], cfg)[0], atol=1e-3) for img in pool.values())


def test_eval_matches_the_transforms_v2_pipeline(tmp_path):
    root = _tree(tmp_path / "d", size=None)
    cfg = AugConfig(out_size=16, eval_resize=18)
    files = sorted((root / "val").rglob("*.jpg"))
    imgs = [decode_image(read_file(str(f)), mode=ImageReadMode.RGB) for f in files]
    ref = torch.stack([eval_transform(cfg)(img) for img in imgs])
    assert torch.allclose(eval_images(imgs, cfg), ref, atol=1e-3)


def test_train_batches_are_seeded_and_augmented(tmp_path):
    root = _tree(tmp_path / "d", size=None)
    cfg = AugConfig(out_size=16, eval_resize=18)
    src = DeviceDecodeBatches(str(root), cfg, 4,
                              torch.device("cpu"), workers=1)  # a real worker process: bytes, no fds
    a = [b for b in src.train_epoch(0, torch.Generator().manual_seed(3))]
    b = [b for b in src.train_epoch(0, torch.Generator().manual_seed(3))]
    c = [b for b in src.train_epoch(0, torch.Generator().manual_seed(4))]
    assert len(a) == src.iters_per_epoch == 2
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    assert [len(yb) for _, yb in src.eval_batches()] == [4, 4]


def test_a_trial_trains_with_device_decode(tmp_path):
    root = _tree(tmp_path / "d", per_class=16)
    spec = TrialSpec("resnet18", named_recipe("baseline"), SMOKE.name, 0, data=str(root))
    res = run_trial(spec, TrainOptions(decode="device", loader_workers=0, threads=1, log=lambda m: None))
    assert res.status == "done" and res.epochs == 1 and res.top1 is not None


def test_unknown_decode_mode_names_the_choices():
    with pytest.raises(HarnessError, match="gpu.*device, workers"):
        make_batches("x", SMOKE, 4, torch.device("cpu"), 0, decode="gpu")
    assert DECODE_MODES == ("workers", "device")

"""Data loading: Fashion-MNIST (the local scale's stand-in for ImageNet, see Sec 2.1's setup),
the synthetic smoke-test set, and ImageNet-layout image folders (Sec 2.1's data)."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import harness.data.ensure as ensure_mod
from harness.data import (
    AugConfig,
    DataError,
    InMemoryDataset,
    batch_augment,
    ensure_fashion_mnist,
    eval_batch,
    load_in_memory,
    open_imagefolder,
)
from conftest import fashion_mnist_file, fashion_mnist_folder, fashion_mnist_gz_bytes
from harness.data.fashion_mnist import ALL_FILES
from harness.errors import HarnessError

# Where the harness itself finds Fashion-MNIST ($HARNESS_DATA_ROOT, Debian's folder, ./data);
# the tests that need the real files skip only when the harness would find none.
FMNIST = fashion_mnist_folder()
needs_fmnist = pytest.mark.skipif(FMNIST is None, reason="the harness finds no Fashion-MNIST "
                                  "($HARNESS_DATA_ROOT, /usr/share/datasets/fashion-mnist or ./data)")


pytestmark = pytest.mark.usefixtures("one_thread")


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


@pytest.fixture(scope="module")
def fm_train() -> InMemoryDataset:
    return load_in_memory("fashion_mnist", "train")


@pytest.fixture(scope="module")
def fm_test() -> InMemoryDataset:
    return load_in_memory("fashion_mnist", "test")


def _fake_root(tmp_path: Path, replace: dict[str, bytes] | None = None, layout: str = "flat") -> Path:
    """A folder with the 4 Fashion-MNIST files the harness found symlinked (.gz or raw, as
    found), some replaced by the given bytes (as ``name``, a .gz)."""
    folder = tmp_path / ("FashionMNIST/raw" if layout == "torchvision" else "fm")
    folder.mkdir(parents=True)
    for name in ALL_FILES:
        if replace and name in replace:
            (folder / name).write_bytes(replace[name])
        else:
            src = fashion_mnist_file(FMNIST, name)
            os.symlink(src, folder / src.name)
    return tmp_path if layout == "torchvision" else folder


# ---------------------------------------------------------------------------------------
@needs_fmnist
def test_fashion_mnist_loads(fm_train, fm_test):
    """Fashion-MNIST, the local stand-in for Sec 2.1's ImageNet: 60000/10000 uint8 1x28x28
    images, 10 balanced classes, its own mean/std (0-255 scale, as Sec 2.1's normalisation)."""
    assert fm_train.images.shape == (60000, 1, 28, 28) and fm_train.images.dtype == torch.uint8
    assert fm_test.images.shape == (10000, 1, 28, 28)
    assert fm_train.labels.dtype == torch.int64 and fm_train.labels.shape == (60000,)
    assert fm_train.num_classes == fm_test.num_classes == 10
    assert torch.equal(fm_train.labels.bincount(), torch.full((10,), 6000))
    assert fm_train.mean == pytest.approx((72.94,), abs=0.01)
    assert fm_train.std == pytest.approx((90.02,), abs=0.01)
    assert fm_test.mean == fm_train.mean  # train statistics for both splits
    assert fm_train.name == "fashion_mnist" and len(fm_train.fingerprint) == 16


@needs_fmnist
def test_fashion_mnist_fingerprint_stable_and_split_specific(fm_train, fm_test):
    """Data identity for reports: two loads give the same fingerprint; train and test differ;
    a subset differs too."""
    again = load_in_memory("fashion_mnist", "test")
    assert again.fingerprint == fm_test.fingerprint
    assert torch.equal(again.images, fm_test.images)
    assert fm_train.fingerprint != fm_test.fingerprint
    sub = load_in_memory("fashion_mnist", "test", subset=100)
    assert len(sub) == 100 and torch.equal(sub.images, fm_test.images[:100])
    assert sub.fingerprint != fm_test.fingerprint


@needs_fmnist
def test_torchvision_layout_and_env_root(tmp_path, fm_test, monkeypatch):
    """root/FashionMNIST/raw/*.gz (torchvision's layout) works, via root= or $HARNESS_DATA_ROOT."""
    root = _fake_root(tmp_path, layout="torchvision")
    ds = load_in_memory("fashion_mnist", "test", root=str(root))
    assert ds.fingerprint == fm_test.fingerprint
    monkeypatch.setenv("HARNESS_DATA_ROOT", str(root))
    assert load_in_memory("fashion_mnist", "test").fingerprint == fm_test.fingerprint


@needs_fmnist
def test_truncated_gz_is_a_data_error_naming_the_path(tmp_path):
    """A cut-off .gz file -> one-line DataError naming that file."""
    name = "t10k-images-idx3-ubyte.gz"
    cut = fashion_mnist_gz_bytes(FMNIST, name)[:100_000]
    root = _fake_root(tmp_path, {name: cut})
    with pytest.raises(DataError) as err:
        load_in_memory("fashion_mnist", "test", root=str(root))
    msg = _one_line(err)
    assert str(root / name) in msg and "truncated" in msg


@needs_fmnist
def test_malformed_idx_is_a_data_error(tmp_path):
    """Valid gzip but wrong magic number, or a payload shorter than the header says."""
    name = "t10k-labels-idx1-ubyte.gz"
    bad_magic = gzip.compress((2051).to_bytes(4, "big") + (10000).to_bytes(4, "big") + bytes(10000))
    short = gzip.compress((2049).to_bytes(4, "big") + (10000).to_bytes(4, "big") + bytes(9000))
    for payload, expect in ((bad_magic, "magic"), (short, "expected 10008")):
        sub = tmp_path / expect.replace(" ", "_")
        root = _fake_root(sub, {name: payload})
        with pytest.raises(DataError) as err:
            load_in_memory("fashion_mnist", "test", root=str(root))
        msg = _one_line(err)
        assert str(root / name) in msg and expect in msg


def test_missing_folder_or_file_is_a_data_error(tmp_path):
    """A root that does not exist, or lacks files, -> one-line DataError naming the path."""
    missing = tmp_path / "nope"
    with pytest.raises(DataError) as err:
        load_in_memory("fashion_mnist", "train", root=str(missing))
    assert str(missing) in _one_line(err)
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataError) as err:
        load_in_memory("fashion_mnist", "train", root=str(tmp_path / "partial"))
    msg = _one_line(err)
    assert "t10k-labels-idx1-ubyte.gz" in msg and str(tmp_path / "partial") in msg


def test_unknown_name_or_split_is_a_harness_error():
    """Unknown data set or split names list the valid choices."""
    with pytest.raises(HarnessError, match="unknown dataset 'imagenet'.*fashion_mnist, synthetic"):
        load_in_memory("imagenet", "train")
    with pytest.raises(HarnessError, match="unknown split 'val'"):
        load_in_memory("synthetic", "val")


@needs_fmnist
def test_ensure_finds_installed_files_and_explains_when_missing(tmp_path, monkeypatch):
    """ensure_fashion_mnist returns the folder the files are in, without downloading; with
    nothing on disk and no download possible it raises a DataError telling what to do (no
    network used here)."""

    def no_net(root):
        raise DataError(f"{root}: downloading Fashion-MNIST failed (offline)")

    monkeypatch.setattr(ensure_mod, "download_fashion_mnist", no_net)
    assert ensure_fashion_mnist() == FMNIST
    with pytest.raises(DataError) as err:
        ensure_fashion_mnist(tmp_path / "empty", apt=False)
    msg = _one_line(err)
    assert "apt-get install dataset-fashion-mnist" in msg and str(tmp_path / "empty") in msg


# ---------------------------------------------------------------------------------------
def test_synthetic_is_deterministic_per_seed():
    """Same seed -> same images, labels and fingerprint; other seed or split -> different;
    shapes follow image_size; subset is a prefix of the full set."""
    a = load_in_memory("synthetic", "train", seed=3)
    b = load_in_memory("synthetic", "train", seed=3)
    c = load_in_memory("synthetic", "train", seed=4)
    t = load_in_memory("synthetic", "test", seed=3)
    assert a.images.shape == (2048, 3, 16, 16) and a.images.dtype == torch.uint8 and len(t) == 512
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.fingerprint == b.fingerprint != c.fingerprint != t.fingerprint
    assert a.num_classes == 10 and a.mean == (123.68, 116.779, 103.939)
    sub = load_in_memory("synthetic", "train", seed=3, subset=100)
    assert torch.equal(sub.images, a.images[:100])
    big = load_in_memory("synthetic", "train", seed=3, subset=3000, image_size=8)
    assert big.images.shape == (3000, 3, 8, 8)


def test_synthetic_is_learnable_in_one_epoch():
    """A tiny CNN trained one epoch with the smoke-scale Sec 2.1 augmentation (crop + flip)
    beats chance (10%)."""
    torch.manual_seed(0)
    tr, te = load_in_memory("synthetic", "train"), load_in_memory("synthetic", "test")
    cfg = AugConfig(out_size=16, eval_resize=16, area=(0.35, 1.0), color_jitter=0, pca_std=0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(tr), generator=g)
    for k in range(0, len(tr), 32):
        idx = perm[k:k + 32]
        loss = torch.nn.functional.cross_entropy(model(batch_augment(tr.images[idx], cfg, g)), tr.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = (model(eval_batch(te.images, cfg)).argmax(1) == te.labels).float().mean().item()
    assert acc > 0.3


# ---------------------------------------------------------------------------------------
def _jpeg_tree(root: Path, classes=("cat", "dog"), per_class=3, splits=("train", "val")) -> Path:
    rng = np.random.default_rng(0)
    for split in splits:
        for k, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True)
            for n in range(per_class):
                arr = rng.integers(0, 256, size=(20 + 4 * n, 30, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{cls}_{n}.JPEG")
    return root


def test_imagefolder_loads_and_yields_normalised_batches(tmp_path):
    """ImageNet layout (Sec 2.1's ILSVRC2012) root/{train,val}/<class>/*.JPEG: classes,
    fingerprint, train and eval loaders with the Sec 2.1 transforms (float normalised)."""
    root = _jpeg_tree(tmp_path / "tiny")
    train = open_imagefolder(str(root), "train")
    val = open_imagefolder(str(root), "val")
    assert train.num_classes == val.num_classes == 2 and len(train) == 6
    assert train.fingerprint == open_imagefolder(str(root), "train").fingerprint
    assert train.fingerprint != val.fingerprint
    cfg = AugConfig(out_size=16, eval_resize=18)
    x, y = next(iter(train.loader(4, train=True, cfg=cfg, workers=0, seed=0)))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    batches = list(val.loader(4, train=False, cfg=cfg, workers=0, seed=0))
    assert [b[0].shape[0] for b in batches] == [4, 2]
    assert batches[0][1].tolist() == [0, 0, 0, 1]
    # adding a file changes the fingerprint
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "dog" / "extra.JPEG")
    assert open_imagefolder(str(root), "train").fingerprint != train.fingerprint


def test_imagefolder_wrong_layout_is_a_data_error(tmp_path):
    """Missing root, missing split folder, images lying flat in val/, or class folders that
    differ between train and val -> one-line DataError naming the path and the layout."""
    with pytest.raises(DataError) as err:
        open_imagefolder(str(tmp_path / "none"), "train")
    assert str(tmp_path / "none") in _one_line(err)

    root = _jpeg_tree(tmp_path / "a", splits=("train",))
    with pytest.raises(DataError) as err:
        open_imagefolder(str(root), "val")
    assert str(root / "val") in _one_line(err) and "<class>" in str(err.value)

    (root / "val").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "val" / "ILSVRC2012_val_1.JPEG")
    with pytest.raises(DataError) as err:
        open_imagefolder(str(root), "val")
    assert "lie directly" in _one_line(err)

    other = _jpeg_tree(tmp_path / "b", classes=("cat", "dog"), splits=("train",))
    for cls in ("cat", "cow"):
        (other / "val" / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(other / "val" / cls / "x.JPEG")
    with pytest.raises(DataError) as err:
        open_imagefolder(str(other), "val")
    assert "cow" in _one_line(err)

    with pytest.raises(HarnessError, match="unknown split"):
        open_imagefolder(str(other), "holdout")

"""Fashion-MNIST from its four gzip IDX files, parsed with numpy (no torchvision needed).

Where the files are looked for (first match wins):

* ``root`` if given, else ``$HARNESS_DATA_ROOT`` if set: that folder itself (Debian layout,
  the 4 ``*-ubyte.gz`` files side by side), ``<root>/FashionMNIST/raw`` (torchvision's
  layout) or ``<root>/raw``. An explicit root that holds none of these is an error.
* otherwise Debian's ``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``),
  then ``./data/FashionMNIST/raw``.

Uncompressed IDX files (same names without ``.gz``, as torchvision also leaves them) are
accepted where the ``.gz`` is absent. Every problem is a one-line ``DataError`` naming the
path and what was expected.
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from harness.data.fingerprint import DataError, InMemoryDataset, channel_stats, fingerprint_arrays
from harness.errors import unknown

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
LOCAL_DIR = Path("data") / "FashionMNIST" / "raw"  # relative to the working directory
ENV_VAR = "HARNESS_DATA_ROOT"
NUM_CLASSES = 10
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
COUNTS = {"train": 60000, "test": 10000}
ALL_FILES = FILES["train"] + FILES["test"]
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049  # 0x00000803 (ubyte, 3 dims), 0x00000801 (ubyte, 1 dim)

_STATS_CACHE: dict[tuple, tuple[tuple[float, ...], tuple[float, ...]]] = {}


def _file_in(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _complete(folder: Path) -> bool:
    return folder.is_dir() and all(_file_in(folder, n) is not None for n in ALL_FILES)


def _layouts(root: Path) -> list[Path]:
    return [root, root / "FashionMNIST" / "raw", root / "raw"]


def find_fashion_mnist(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the 4 Fashion-MNIST IDX files (see module doc for the search)."""
    explicit = root if root is not None else os.environ.get(ENV_VAR) or None
    if explicit is not None:
        base = Path(explicit).expanduser()
        origin = "data root" if root is not None else f"${ENV_VAR}"
        if not base.exists():
            raise DataError(f"{base}: no such folder ({origin}); expected a folder with the 4 Fashion-MNIST "
                            f"files {', '.join(ALL_FILES)} or a FashionMNIST/raw/ subfolder holding them")
        for folder in _layouts(base):
            if _complete(folder):
                return folder
        # name what is missing in the most complete candidate
        best = max(_layouts(base), key=lambda f: sum(_file_in(f, n) is not None for n in ALL_FILES)
                   if f.is_dir() else -1)
        missing = [n for n in ALL_FILES if not best.is_dir() or _file_in(best, n) is None]
        raise DataError(f"{best}: missing {', '.join(missing)}; expected the 4 Fashion-MNIST IDX files in "
                        f"{base} (Debian layout) or {base / 'FashionMNIST' / 'raw'} (torchvision layout)")
    for folder in (DEBIAN_DIR, LOCAL_DIR):
        if _complete(folder):
            return folder
    raise DataError(f"Fashion-MNIST not found in {DEBIAN_DIR} or {LOCAL_DIR.resolve()}; expected the 4 files "
                    f"{', '.join(ALL_FILES)}: apt-get install dataset-fashion-mnist, or run "
                    f"'python -m harness data download --data-root DIR' (needs internet), or pass --data-root")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; expected a Fashion-MNIST IDX file") from None
    except (EOFError, OSError, zlib.error) as e:
        reason = "truncated" if isinstance(e, EOFError) else "corrupt"
        raise DataError(f"{path}: {reason} gzip file ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                        f"expected a complete gzip-compressed IDX file (delete it and reinstall/re-download)") from None


def read_idx(path: str | os.PathLike, magic: int, count: int | None = None,
             item_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Parse one uint8 IDX file (optionally gzip) and check magic number, header and size."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: only {len(data)} bytes; expected an IDX file starting with magic number {magic}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: only {len(data)} bytes; expected an IDX header of {header} bytes "
                        f"(magic {magic})")
    got_magic = int.from_bytes(data[:4], "big")
    if got_magic != magic:
        raise DataError(f"{path}: IDX magic number {got_magic} (0x{got_magic:08x}); expected {magic} "
                        f"(0x{magic:08x}, uint8 with {ndim} dimension(s))")
    dims = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    if count is not None and dims[0] != count:
        raise DataError(f"{path}: header says {dims[0]} items; expected {count}")
    if item_shape is not None and dims[1:] != tuple(item_shape):
        raise DataError(f"{path}: header says items of shape {dims[1:]}; expected {tuple(item_shape)}")
    need = header + int(np.prod(dims))
    if len(data) != need:
        raise DataError(f"{path}: {len(data)} bytes after decompression; expected {need} "
                        f"(header {header} + {'x'.join(map(str, dims))} payload): file truncated or padded")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()  # writable


def _read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    img_name, lbl_name = FILES[split]
    img_path = _file_in(folder, img_name) or folder / img_name
    lbl_path = _file_in(folder, lbl_name) or folder / lbl_name
    images = read_idx(img_path, _IMAGES_MAGIC, COUNTS[split], (28, 28))
    labels = read_idx(lbl_path, _LABELS_MAGIC, COUNTS[split])
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise DataError(f"{lbl_path}: label {int(labels.max())} out of range; expected 0..{NUM_CLASSES - 1}")
    return images, labels, img_path


def _train_stats(folder: Path, train_images: np.ndarray | None = None
                 ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of the full train split (cached per file path, size and mtime)."""
    img_path = _file_in(folder, FILES["train"][0]) or folder / FILES["train"][0]
    try:
        st = img_path.stat()
        key = (str(img_path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _STATS_CACHE:
        return _STATS_CACHE[key]
    images = train_images if train_images is not None else read_idx(
        img_path, _IMAGES_MAGIC, COUNTS["train"], (28, 28))
    stats = channel_stats(images[:, None])
    if key is not None:
        _STATS_CACHE[key] = stats
    return stats


def load_fashion_mnist(split: str, root: str | os.PathLike | None = None, *,
                       subset: int | None = None) -> InMemoryDataset:
    """Fashion-MNIST ``split`` ("train" 60000 / "test" 10000) as uint8 [N, 1, 28, 28].

    ``subset``: the first N images. mean/std: the train split's own (~72.94, ~90.02).
    """
    if split not in FILES:
        raise unknown("split", split, FILES)
    folder = find_fashion_mnist(root)
    images, labels, _ = _read_split(folder, split)
    mean, std = _train_stats(folder, images if split == "train" else None)
    if subset is not None:
        if not (1 <= subset <= images.shape[0]):
            raise DataError(f"subset={subset} out of range for fashion_mnist {split} "
                            f"({images.shape[0]} images); expected 1..{images.shape[0]}")
        images, labels = images[:subset], labels[:subset]
    x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return InMemoryDataset(images=x, labels=y, num_classes=NUM_CLASSES, mean=mean, std=std,
                           fingerprint=fingerprint_arrays(x, y), name="fashion_mnist")

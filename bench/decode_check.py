"""Is GPU JPEG decode safe while the training stream has queued work? (the nvJPEG hazard)

    python bench/decode_check.py [--iters 40] [--out DIR]

The hazard (pytorch/vision PR 9606, meta-pytorch/torchcodec PR 1634): ``decode_jpeg(device=
"cuda")`` allocates its outputs on the caller's stream and nvJPEG writes them without waiting
for the caller's queued kernels; the caching allocator hands out blocks freed on that stream
at once, so the decoder can overwrite memory that queued kernels still read. Each iteration:

1. fills tensors the size of the decoded images with a known value, synchronises;
2. queues a long kernel, then one reduction per tensor (they run after it);
3. frees the tensors while those reductions are still queued;
4. decodes the batch;
5. synchronises: every reduction must equal value x size, and every decoded image must be
   bit-identical to a quiet decode of the same files (no queued work).

Run for the harness's ``decode_batch`` (side stream, wait_stream, record_stream) and, for
information, for a bare ``decode_jpeg`` call. The GPU decode is also compared with the CPU's
(libjpeg): nvJPEG's IDCT may differ by a few levels, so that row reports the largest
difference rather than asserting equality. On a CPU the same code runs (decode on the host)
and only checks itself. One JSON line per row; exit 1 if the harness path was corrupted.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import device_default, emit, gpu_name  # noqa: E402

from harness.data.decode import decode_batch  # noqa: E402


def jpeg_bytes(n: int, seed: int = 0) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        h, w = 64 + 16 * (k % 7), 96 + 8 * (k % 5)
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=90)
        out.append(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8))
    return out


def checksum(img: torch.Tensor) -> torch.Tensor:
    """A position-sensitive checksum, computed where the image is (no host read)."""
    flat = img.reshape(-1).to(torch.int64)
    return (flat * (torch.arange(flat.numel(), device=img.device) % 65521 + 1)).sum()


def long_kernel(device: torch.device) -> None:
    if device.type != "cuda":
        return
    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is not None:
        sleep(200_000_000)  # ~0.1 s of spinning on the stream
    else:
        a = torch.randn(4096, 4096, device=device)
        for _ in range(20):
            a = a @ a
            a /= a.norm()


def stress(decode, data: list[torch.Tensor], ref: list[torch.Tensor], iters: int, device: torch.device) -> dict:
    """Iterations whose reductions or decoded images came out wrong (see module doc)."""
    bad_sums = bad_images = 0
    shapes = [tuple(r.shape) for r in ref]
    for it in range(iters):
        value = it % 200 + 1
        victims = [torch.full(s, value, dtype=torch.uint8, device=device) for s in shapes]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        long_kernel(device)
        sums = [v.sum(dtype=torch.int64) for v in victims]
        del victims  # freed while the reductions are still queued
        images = decode(data)
        got = torch.stack(sums).cpu()
        expect = torch.tensor([value * int(np.prod(s)) for s in shapes])
        bad_sums += int(not torch.equal(got, expect))
        sums_img = torch.stack([checksum(i) for i in images]).cpu()
        bad_images += int(not torch.equal(sums_img, torch.stack([checksum(r) for r in ref]).cpu()))
    return {"iters": iters, "corrupted_reductions": bad_sums, "corrupted_images": bad_images}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    device = device_default()
    card = gpu_name()
    data = jpeg_bytes(a.images)
    cpu = [decode_image(d, mode=ImageReadMode.RGB) for d in data]
    quiet = decode_batch(data, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    quiet = [q.clone() for q in quiet]
    diff = max(int((q.cpu().to(torch.int16) - c.to(torch.int16)).abs().max()) for q, c in zip(quiet, cpu))
    emit({"stage": "decode", "check": "gpu decode vs cpu decode (max abs difference, 0-255)", "card": card,
          "device": str(device), "images": len(data), "max_abs_diff": diff, "ok": None}, a.out)
    ours = stress(lambda d: decode_batch(d, device), data, quiet, a.iters, device)
    ok = ours["corrupted_reductions"] == 0 and ours["corrupted_images"] == 0
    emit({"stage": "decode", "check": "harness decode_batch with queued work", "card": card, **ours, "ok": ok}, a.out)
    if device.type == "cuda":
        dev = "cuda"
        bare = stress(lambda d: decode_jpeg(d, mode=ImageReadMode.RGB, device=dev), data, quiet, a.iters, device)
        emit({"stage": "decode", "check": "bare torchvision decode_jpeg with queued work (information)",
              "card": card, **bare, "ok": None}, a.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

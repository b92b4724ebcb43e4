"""Does a training step wait for the GPU? Host-device synchronisations inside the trainer's step.

    python bench/sync_check.py [--device cuda] [--recipe baseline] [--steps 20] [--scale smoke]

Builds a trial's task exactly as ``run_trial`` does (``harness.tasks.build_task``), trains a
few warm-up steps, then runs ``--steps`` more, each = the next batch (augmentation included)
+ ``task.step``, and counts what in them would make the host wait:

* on CUDA, torch's own detector: ``torch.cuda.set_sync_debug_mode("warn")`` warns on every
  synchronising call (``.item()``, ``bool(t)``, pageable copies, ...);
* on any device, :class:`HostReads`: a dispatch mode that records every op whose result the
  host reads (``_local_scalar_dense`` behind ``item``/``bool``/``int``, ``is_nonzero``,
  ``nonzero``, ``equal``, ...), ``linalg_inv`` (its error check syncs on CUDA), ``tolist``,
  and tensors built from Python data (``torch.tensor(list, device=...)``: a host-to-device copy
  on CUDA). On a CPU that finds the code that would synchronise on a GPU.

One JSON line per recipe: ``{"device", "recipe", "steps", "cuda_sync_warnings", "host_reads",
"ok"}`` (on CUDA also the backend flags the trainer set: cuDNN autotuning on, TF32 off);
exit 1 when anything was found. Only the loss's ``.item()`` every ``log_every`` steps is
outside the checked region (it is outside the step, by design).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repo, after PYTHONPATH
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import emit  # noqa: E402

HOST_READ_OPS = ("_local_scalar_dense", "is_nonzero", "nonzero", "equal", "allclose", "linalg_inv",
                 "linalg_inv_ex", "masked_select", "unique", "_unique2", "lift_fresh")


def _on_device(args, device_type: str) -> bool:
    flat = list(args)
    while flat:
        a = flat.pop()
        if isinstance(a, (list, tuple)):
            flat.extend(a)
        elif isinstance(a, torch.Tensor) and a.device.type == device_type:
            return True
    return False


class HostReads(TorchDispatchMode):
    """Records ops that read a tensor's value on the host (or build tensors from host data);
    ``found`` counts them by op name. ``device_type``: on "cuda" only ops on CUDA tensors
    count (reading a CPU tensor, e.g. mixup's host generator, costs no sync); on "cpu" all
    do (a CPU run stands in for the GPU one)."""

    def __init__(self, device_type: str = "cpu") -> None:
        super().__init__()
        self.found: Counter[str] = Counter()
        self.device_type = device_type
        self._tolist = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in HOST_READ_OPS and (self.device_type == "cpu" or _on_device(args, self.device_type)):
            self.found[name] += 1
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        self._tolist = torch.Tensor.tolist
        found = self.found

        def tolist(t):
            if self.device_type == "cpu" or t.device.type == self.device_type:
                found["tolist"] += 1
            return self._tolist(t)

        torch.Tensor.tolist = tolist
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.tolist = self._tolist
        return super().__exit__(*exc)


def check(device: str, recipe: str, steps: int, scale: str = "smoke", model: str = "resnet18",
          warmup: int = 3) -> dict:
    from harness.recipe import named_recipe
    from harness.spec import TrialSpec
    from harness.tasks import build_task
    from harness.trial import TrainOptions

    spec = TrialSpec(model, named_recipe(recipe), scale, 0)
    task = build_task(spec, TrainOptions(device=device, threads=1, log=lambda m: None))
    it = 0
    batches = iter(())
    epoch = 0

    def next_batch():
        nonlocal batches, epoch
        while True:
            try:
                return next(batches)
            except StopIteration:
                batches = iter(task.train_batches(epoch))
                epoch += 1

    for _ in range(warmup):  # cuDNN autotuning, allocator growth, lazy inits
        task.step(it, next_batch())
        it += 1
    next_batch_first = next_batch()  # an epoch's first batch may draw its seed on the host
    cuda = task.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(task.device)
    reads = HostReads(task.device.type)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            with reads:
                task.step(it, next_batch_first)
                for k in range(1, steps):
                    task.step(it + k, next_batch())
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode(0)
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]
    out = {"device": str(task.device), "recipe": recipe, "model": model, "scale": scale, "steps": steps,
           "cuda_sync_warnings": len(syncs), "first_sync": syncs[0] if syncs else None,
           "host_reads": dict(reads.found)}
    out["ok"] = not syncs and not reads.found
    if cuda:  # what the trainer set: cuDNN autotuning on, TF32 off (the default TrainOptions)
        out["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        out["tf32"] = bool(torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
        out["ok"] = out["ok"] and out["cudnn_benchmark"] and not out["tf32"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--recipe", action="append", default=None,
                    help="named recipe(s) to check (repeatable; default baseline fp16 and label smoothing)")
    ap.add_argument("--scale", default="smoke")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None, help="append rows to OUT/gpu.json and OUT/gpu.md")
    a = ap.parse_args()
    ok = True
    for recipe in a.recipe or ["efficient", "label_smoothing"]:
        row = check(a.device, recipe, a.steps, a.scale, a.model)
        emit({"stage": "trials", "check": f"no sync inside the step ({recipe})", **row}, a.out)
        ok &= row["ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("HARNESS_CPU_FP16", "1")  # on a CPU the fp16 recipes take the CUDA branches
    sys.exit(main())

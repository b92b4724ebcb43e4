"""Benchmark: does a pretrained backbone beat a random one at the same fine-tuning budget?

Sec 6.2's premise: transfer starts from the ImageNet classifier. At the local scale this
trains (or reuses, with --backbone-ckpt) Table 6's 'Efficient' ResNet-50-D classification
trial (seed 0), then fine-tunes Faster R-CNN (detection, mAP@0.5) and FCN (segmentation,
pixel accuracy / mIoU) on composed Fashion-MNIST canvases twice each, with the same
settings and seed: from the pretrained backbone and from a random one (``random_init``).
Prints the numbers and seconds; asserts nothing.

    .venv/bin/python bench/transfer_pretrained.py [--backbone-ckpt PATH] [--tasks detection segmentation]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.recipe import named_recipe  # noqa: E402
from harness.spec import TrialSpec  # noqa: E402
from harness.trainer import TrainOptions, run_trial  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone-ckpt", help="a local-scale resnet50_d classification checkpoint "
                   "(default: train Table 6's 'Efficient' trial, seed 0, ~1-2 min)")
    p.add_argument("--tasks", nargs="+", default=["detection", "segmentation"],
                   choices=["detection", "segmentation"])
    p.add_argument("--scale", default="local")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--args", default="{}", help="extra transfer settings as JSON (both runs)")
    args = p.parse_args(argv)
    quiet = lambda m: None  # noqa: E731
    backbone = TrialSpec(model="resnet50_d", recipe=named_recipe("efficient"), scale=args.scale, seed=0)
    ckpt = args.backbone_ckpt
    if not ckpt:
        tmp = tempfile.mkdtemp(prefix="transfer_bench_")
        t0 = time.perf_counter()
        res = run_trial(backbone, TrainOptions(checkpoint_dir=tmp, log=quiet))
        ckpt = str(Path(tmp) / "ckpt.pt")
        print(f"backbone {backbone.model} efficient ({args.scale}): top1 {res.top1:.2f} "
              f"in {time.perf_counter() - t0:.0f}s -> {ckpt}", flush=True)
    extra = json.loads(args.args)
    print(f"{'task':<13} {'backbone':<11} metrics{'':<26} wall s  cpu s  (epoch s x n)")
    for task in args.tasks:
        for init in ("pretrained", "random"):
            settings = dict(extra, random_init=init == "random")
            spec = replace(backbone, task=task, backbone=backbone, seed=args.seed,
                           task_args=json.dumps(settings, sort_keys=True))
            cpu0 = time.process_time()
            res = run_trial(spec, TrainOptions(backbone_ckpt=ckpt, log=quiet))
            cpu = time.process_time() - cpu0  # one thread: ~ the wall time on an idle core
            shown = "  ".join(f"{k} {v:6.2f}" for k, v in res.metrics.items())
            print(f"{task:<13} {init:<11} {shown:<33} {res.wall_s:6.1f} {cpu:6.1f}  "
                  f"({res.epoch_s:.1f} x {res.epochs})  [{res.status}]", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

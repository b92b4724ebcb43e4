"""Accuracy and time of one `local` trial: the miniature ResNet-50-D with the full Table 6
recipe (cosine + label smoothing + mixup, Sec 5; no distillation), trained alone.

    python bench/accuracy_bench.py [--threads 2] [--seed 0] [--recipe mixup]

Prints one JSON line: top-1/top-5 on the whole Fashion-MNIST test split, training and wall
seconds, images/s, and the goal (>= 90% top-1 in <= 180 s on a 2-core CPU) with whether it
was met. A benchmark, not a test: nothing asserts on the numbers.
"""
from __future__ import annotations

import argparse
import json
import time

from harness.recipe import named_recipe
from harness.scales import LOCAL
from harness.spec import TrialSpec
from harness.trainer import TrainOptions, run_trial

GOAL_TOP1, GOAL_S = 90.0, 180.0


def measure(recipe: str, seed: int, threads: int) -> dict:
    spec = TrialSpec("resnet50_d", named_recipe(recipe), LOCAL.name, seed)
    t0 = time.perf_counter()
    res = run_trial(spec, TrainOptions(threads=threads, log=lambda m: None))
    wall = time.perf_counter() - t0
    return {"model": spec.model, "recipe": recipe, "seed": seed, "threads": threads,
            "epochs": res.epochs, "top1": round(res.top1 or 0.0, 2), "top5": round(res.top5 or 0.0, 2),
            "train_s": round(sum(h["epoch_s"] for h in res.history), 1), "wall_s": round(wall, 1),
            "img_per_s": round(res.img_per_s or 0.0), "precision": res.precision,
            "goal": f">= {GOAL_TOP1:g}% in <= {GOAL_S:g} s",
            "top1_goal_met": bool((res.top1 or 0.0) >= GOAL_TOP1), "time_goal_met": wall <= GOAL_S}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="mixup", help="named recipe (default: Table 6's '+ mixup' row)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    print(json.dumps(measure(a.recipe, a.seed, a.threads)))


if __name__ == "__main__":
    main()

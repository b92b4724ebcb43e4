"""The `local` scale on a small CPU: the harness trainer vs a naive loop, and Ray's overhead.

    python bench/local_bench.py [--images 10240] [--threads 2] [--store results/harness.sqlite]

Naive loop = what a hand-written script does by default: a Dataset applying per-image
torchvision transforms (RandomResizedCrop, flip, normalise) in a DataLoader with default
settings, fp32, contiguous tensors. Both train the same miniature ResNet-50-D on the same
Fashion-MNIST images with the same batch. Ray overhead = 1 - (sum of trial wall time) /
(run wall time x concurrency), read from the store's latest Table 6 run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from harness.data import load_in_memory
from harness.models import create_model
from harness.recipe import named_recipe
from harness.scales import LOCAL
from harness.spec import TrialSpec
from harness.trainer import TrainOptions, run_trial


class PerImage(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, tf) -> None:
        self.images, self.labels, self.tf = images, labels, tf

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.tf(self.images[i]), self.labels[i]


def naive_img_per_s(n: int, batch: int) -> float:
    data = load_in_memory("fashion_mnist", "train", subset=n)
    tf = v2.Compose([v2.RandomResizedCrop(28, scale=(LOCAL.min_crop_area, 1.0), antialias=True),
                     v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=False),
                     v2.Normalize(data.mean, data.std)])
    loader = torch.utils.data.DataLoader(PerImage(data.images, data.labels, tf), batch_size=batch, shuffle=True)
    model = create_model("resnet50_d", num_classes=10, in_chans=1, **LOCAL.model_kwargs_for("resnet50_d"))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    t0, seen = time.perf_counter(), 0
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
    return seen / (time.perf_counter() - t0)


def harness_img_per_s(n: int, threads: int) -> float:
    import dataclasses

    import harness.scales as scales

    scales.SCALES["bench"] = dataclasses.replace(LOCAL, name="bench", train_subset=n, epoch_factor=1 / 120)
    res = run_trial(TrialSpec("resnet50_d", named_recipe("efficient"), "bench", 0), TrainOptions(log=lambda m: None, threads=threads))
    return float(res.img_per_s)


def ray_overhead(store: str, table: str = "paper_table6") -> dict | None:
    if not Path(store).exists():
        return None
    from harness.store import Store

    with Store(store, readonly=True) as st:
        runs, trials = st.runs_df(), st.trials_df(table_name=table)
    runs = runs[(runs.table_name == table) & runs.finished_at.notna()]
    for _, run in runs.sort_values("started_at", ascending=False).iterrows():
        t = trials[trials.run_id == run.run_id]
        if len(t) >= 4:
            wall = (dt.datetime.fromisoformat(run.finished_at) - dt.datetime.fromisoformat(run.started_at)).total_seconds()
            conc = 2  # the default local run: one CPU per trial on a 2-core machine
            return {"run_id": run.run_id, "trials": len(t), "wall_s": wall, "compute_s": float(t.wall_s.sum()),
                    "concurrency": conc, "overhead": 1 - float(t.wall_s.sum()) / (wall * conc)}
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10240)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--store", default="results/harness.sqlite")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    batch = LOCAL.batch_size(named_recipe("efficient"))
    ours = harness_img_per_s(a.images, a.threads)
    torch.set_num_threads(a.threads)
    naive = naive_img_per_s(a.images, batch)
    print(json.dumps({"harness_img_s": round(ours), "naive_img_s": round(naive), "ratio": round(ours / naive, 2),
                      "threads": a.threads, "images": a.images, "batch": batch,
                      "ray": ray_overhead(a.store)}))


if __name__ == "__main__":
    main()

"""The `local` scale on a small CPU: images/s of the harness trainer vs a naive loop.

    python bench/local_bench.py [--images 10240] [--threads 2] [--repeats 3]

Naive loop = what a hand-written script does by default: a Dataset applying per-image
torchvision transforms (RandomResizedCrop, flip, normalise) in a DataLoader with default
settings, fp32, contiguous tensors. Both train the same miniature ResNet-50-D on the same
Fashion-MNIST images with the same batch, for two epochs; the figure is the second epoch's
images/s for both (steady state: the first pays oneDNN's primitive creation and the
allocator's growth, which a whole trial amortises). The harness is also run with torch's own kernels
for convs on <=2x2 maps (``--no-small-map-convs``), to show that path's share. Runs are
interleaved and repeated; medians are reported. (Ray's overhead: bench/table_times.py.)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

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


def naive_img_per_s(n: int, batch: int, epochs: int = 2) -> float:
    """Images/s of the last of ``epochs`` passes of a hand-written loop."""
    data = load_in_memory("fashion_mnist", "train", subset=n)
    tf = v2.Compose([v2.RandomResizedCrop(28, scale=(LOCAL.min_crop_area, 1.0), antialias=True),
                     v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=False),
                     v2.Normalize(data.mean, data.std)])
    loader = torch.utils.data.DataLoader(PerImage(data.images, data.labels, tf), batch_size=batch, shuffle=True)
    model = create_model("resnet50_d", num_classes=10, in_chans=1, **LOCAL.model_kwargs_for("resnet50_d"))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    for _ in range(epochs):
        t0, seen = time.perf_counter(), 0
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
    return seen / (time.perf_counter() - t0)


def harness_img_per_s(n: int, threads: int, small_map_convs: bool = True, epochs: int = 2) -> float:
    """Images/s of the trainer's last of ``epochs`` epochs (``efficient`` recipe)."""
    import dataclasses

    import harness.scales as scales

    recipe = named_recipe("efficient")
    scales.SCALES["bench"] = dataclasses.replace(LOCAL, name="bench", train_subset=n,
                                                 epoch_factor=epochs / recipe.epochs)
    opts = TrainOptions(log=lambda m: None, threads=threads, small_map_convs=small_map_convs)
    res = run_trial(TrialSpec("resnet50_d", recipe, "bench", 0), opts)
    return float(res.history[-1]["img_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10240)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs of each; medians reported")
    a = ap.parse_args()
    batch = LOCAL.batch_size(named_recipe("efficient"))
    runs: dict[str, list[float]] = {"harness": [], "harness_torch_kernels": [], "naive": []}
    for _ in range(a.repeats):  # interleaved, so a noisy neighbour hits all three alike
        torch.set_num_threads(a.threads)
        runs["harness"].append(harness_img_per_s(a.images, a.threads))
        runs["harness_torch_kernels"].append(harness_img_per_s(a.images, a.threads, small_map_convs=False))
        torch.set_num_threads(a.threads)
        runs["naive"].append(naive_img_per_s(a.images, batch))
    med = {k: statistics.median(v) for k, v in runs.items()}
    print({k: [round(x) for x in v] for k, v in runs.items()}, file=sys.stderr)
    print(json.dumps({"harness_img_s": round(med["harness"]), "naive_img_s": round(med["naive"]),
                      "ratio": round(med["harness"] / med["naive"], 2),
                      "harness_torch_kernels_img_s": round(med["harness_torch_kernels"]),
                      "ratio_torch_kernels": round(med["harness_torch_kernels"] / med["naive"], 2),
                      "threads": a.threads, "images": a.images, "batch": batch, "repeats": a.repeats}))


if __name__ == "__main__":
    main()

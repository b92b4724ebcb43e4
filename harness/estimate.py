"""``run --dry-run``: the plan (stages, trials, what is stored) and a compute estimate.

Training cost ~ 3 x forward multiply-adds per image (forward + backward). Throughput
figures are stated, not guessed: at the paper scale, one H100 trains torchvision's
ResNet-50 (4.1 GMACs) at 2,669 img/s in FP16 (docs/design.md, reference figures), i.e. about 3.3e13 training
MAC/s; at small scales the rate measured over a whole `local` Table 6 on one core per
trial is used.
"""
from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from harness.data_scale import plan_scale
from harness.experiments import Plan
from harness.scales import Scale
from harness.models import model_stats
from harness.store import Store
from harness.transfer import resolve_settings

GPU_TRAIN_MACS_PER_S = 2669 * 4.1e9 * 3  # H100, FP16, ResNet-50 (docs/design.md)
# One AVX2 core per trial, fp32, `local` miniatures: Table 6 on 2026-11-28 trained 1.3e13
# training MACs in 1,776 s of trial compute (per model: MobileNet 4.7e9 MAC/s, Inception
# 6.5e9, ResNet-50-D 8.4e9, the ResNet-101-D teacher 1.6e10)
CPU_TRAIN_MACS_PER_S = 7.5e9
TRAIN_IMAGES = {"fashion_mnist": 60000, "synthetic": 2048, "imagefolder": 1_281_167}


TRANSFER_SECONDS = {"smoke": 5.0, "local": 60.0}  # measured per fine-tune on one core (docs/transfer.md)


def trial_epochs(plan: Plan, spec, scale: Scale | None = None) -> int:
    """Epochs of ``spec`` at ``scale`` (default: the plan's scale on its data, plan_scale)."""
    if spec.task != "classification":
        return int(resolve_settings(spec)["epochs"])
    return (scale or plan_scale(plan)).epochs(spec.recipe)


def trial_seconds(plan: Plan, model: str, epochs: int, macs: dict[str, float], task: str = "classification",
                  scale: Scale | None = None) -> float:
    """Estimated compute of one trial: epochs x training images (a user's folder: its own
    count) x 3 x forward MACs at the stated rate."""
    scale = scale or plan_scale(plan)
    if task != "classification":
        return TRANSFER_SECONDS.get(scale.name, 3600.0)
    n = scale.train_images or scale.train_subset or TRAIN_IMAGES.get(scale.dataset, TRAIN_IMAGES["imagefolder"])
    rate = GPU_TRAIN_MACS_PER_S if scale.name == "paper" else CPU_TRAIN_MACS_PER_S
    return epochs * n * 3 * macs[model] / rate


def longest_first(plan: Plan, stage: list, macs: dict[str, int | None]) -> list:
    """The stage's trials by estimated compute, longest first (LPT scheduling): with K
    trials at a time the stage then ends with short trials, not one long one running alone
    while the other slots idle before the next stage can start. Stable for equal estimates."""
    flat = {k: float(v or 0) for k, v in macs.items()}
    scale = plan_scale(plan)
    return sorted(stage, key=lambda t: -trial_seconds(plan, t.model, trial_epochs(plan, t, scale), flat,
                                                      t.task, scale))


def print_plan(plan: Plan, store_path: str, data_root: str | None = None) -> None:
    stored: set[str] = set()
    if Path(store_path).exists():
        with Store(store_path, readonly=True) as st:
            stored = st.done_hashes([t.hash for t in plan.all_trials()])
    scale = plan_scale(plan, data_root)
    macs = {k: float(v or 0) for k, v in model_macs(plan, scale).items()}
    rows, total = [], 0.0
    for i, stage in enumerate(plan.stages()):
        for t in stage:
            epochs = trial_epochs(plan, t, scale)
            secs = trial_seconds(plan, t.model, epochs, macs, t.task, scale)
            total += 0 if t.hash in stored else secs
            rows.append([i + 1, t.row, t.column, t.model if t.task == "classification" else f"{t.model} ({t.task})",
                         t.seed, epochs, ",".join(t.recipe.tricks()),
                         "stored" if t.hash in stored else f"~{secs / 60:.1f} min", t.hash[:10]])
    print(tabulate(rows, headers=["stage", "row", "column", "model", "seed", "epochs", "tricks",
                                  "status", "hash"]))
    unit = "GPU-hours (H100 FP16)" if plan.scale.name == "paper" else "CPU-minutes (one core per trial)"
    amount = total / 3600 if plan.scale.name == "paper" else total / 60
    print(f"\n{len(rows)} trials in {len(plan.stages())} stage(s), {len(stored)} stored; "
          f"estimated compute for the rest: {amount:.1f} {unit}")
    if scale.train_images:
        print(f"data: {scale.train_images:,} training images at {scale.image_size} px"
              + (f" ({scale.from_data})" if scale.from_data else ""))


def model_macs(plan: Plan, scale: Scale | None = None) -> dict[str, int | None]:
    """Multiply-adds of each model at the scale's size (for Table 5 and compute estimates);
    ``scale``: the plan's scale on its data (default: the preset's)."""
    scale = scale or plan.scale
    classes = scale.num_classes or (10 if scale.dataset != "imagefolder" else 1000)
    out: dict[str, int | None] = {}
    for spec in plan.all_trials():
        if spec.model not in out:
            kw = scale.model_kwargs_for(spec.model)
            try:
                out[spec.model] = int(model_stats(spec.model, input_size=scale.image_size,
                                                  in_chans=1 if scale.dataset == "fashion_mnist" else 3,
                                                  num_classes=classes, **kw)["macs"])
            except Exception:
                out[spec.model] = None
    return out

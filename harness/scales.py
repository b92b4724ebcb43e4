"""Scale presets: how a paper recipe is shrunk to run in seconds, minutes, or at full size.

A scale never changes what a trick *does*; it changes the dataset, the model's size and
the length of the schedule. Every way a scale deviates from the paper is written in
``deviations`` and printed in every report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.errors import unknown
from harness.recipe import Recipe, stable_hash


NOT_FINGERPRINTED = ("deviations", "equivalence_margin")  # change no trial's numbers
# Fields a scale derived from a user's data (harness/data_scale.py) fills in; a preset leaves
# them at these defaults, and a field at its default stays out of the fingerprint, so the
# presets' fingerprints (and every stored trial's hash) are what they were before the fields.
DERIVED_DEFAULTS: dict[str, Any] = {"mean": None, "std": None, "train_images": None,
                                    "val_images": None, "num_classes": None, "min_steps": 0,
                                    "from_data": ""}
PAPER_EPOCHS = 120.0  # the paper's baseline schedule (Sec 2.1); longer rows scale with it


@dataclass(frozen=True)
class ScaleOverrides:
    """What the user fixed for a trial's scale; 0 = not set (the scale's own rule).

    ``image_size``: the training crop in pixels (``--image-size``, ImageFolder data only).
    ``epochs``: the epochs of the paper's 120-epoch schedule at this scale (``--epochs``); a
    recipe of E paper epochs trains round-up(epochs x E / 120), so Table 6's 200-epoch rows
    keep their 5:3 ratio, and step milestones and warmup keep their fraction of the schedule.
    """

    image_size: int = 0
    epochs: int = 0

    def payload(self) -> dict[str, int]:
        """The set fields only: a trial without overrides hashes as it always did."""
        return {k: v for k, v in (("image_size", self.image_size), ("epochs", self.epochs)) if v}


@dataclass(frozen=True)
class Scale:
    """One preset. Epoch counts of a recipe are multiplied by ``epoch_factor``."""

    name: str
    dataset: str  # "fashion_mnist" | "synthetic" | "imagefolder"
    image_size: int  # training crop, pixels
    eval_resize: int  # shorter side before the center crop at evaluation
    batch_factor: float  # scale batch = paper batch x batch_factor
    epoch_factor: float  # scale epochs = paper epochs x epoch_factor (>= min_epochs)
    min_epochs: int
    seeds: int  # default number of seeds per cell
    train_subset: int | None = None  # first N training images (None = all)
    test_subset: int | None = None
    min_crop_area: float = 0.08  # random-resized-crop area range lower bound (Sec 2.1: 8%)
    color_jitter: bool = True  # hue/saturation/brightness U[0.6, 1.4]
    pca_lighting: bool = True
    model_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)  # per model family
    teacher_model: str = "resnet152_d"  # Sec 5.3's teacher
    threads_per_trial: int = 0  # torch threads per trial on CPU; 0 = leave torch's default
    lr_factor: float = 1.0  # x the linearly scaled lr (short schedules want larger steps)
    # 'no effect' verdicts: a trick's delta whose 90% interval lies inside +-this many points
    # of top-1 (two one-sided tests). Set per scale before looking at any result; judgement,
    # not numbers, so it is no part of the fingerprint.
    equivalence_margin: float = 0.5
    deviations: tuple[str, ...] = ()
    # ---- filled in only for a scale derived from the data (harness/data_scale.py) ----------
    mean: tuple[float, ...] | None = None  # normalisation per channel, 0-255; None: the dataset's
    std: tuple[float, ...] | None = None
    train_images: int | None = None  # training images per epoch
    val_images: int | None = None
    num_classes: int | None = None
    min_steps: int = 0  # floor on the SGD steps of a 120-epoch recipe (0: none)
    from_data: str = ""  # the ImageFolder this scale was measured on ("" = a preset)

    # ---- mapping a recipe onto this scale ---------------------------------------------
    def batch_size(self, recipe: Recipe) -> int:
        return max(1, int(round(recipe.batch_size * self.batch_factor)))

    def lr(self, recipe: Recipe) -> float:
        """Initial lr at this scale: the recipe's lr x batch_factor, i.e. the linear scaling
        rule (Sec 3.1) applied to the miniaturised batch, times ``lr_factor``. Every row of
        a table gets the same factor, so lr ratios between rows (Tables 3-4) stay the paper's."""
        return recipe.lr * self.batch_factor * self.lr_factor

    def iters_per_epoch(self, recipe: Recipe) -> int | None:
        """Optimizer steps per epoch (the last partial batch is dropped); None when the
        number of training images is not known."""
        if not self.train_images:
            return None
        return max(1, self.train_images // self.batch_size(recipe))

    def epochs(self, recipe: Recipe) -> int:
        """The scale's epochs for ``recipe``: paper epochs x ``epoch_factor`` (at least
        ``min_epochs``) and, with ``min_steps``, at least the epochs of ``min_steps`` SGD steps
        for a 120-epoch recipe (longer recipes proportionally more: ``min_steps`` x E / 120)."""
        epochs = max(self.min_epochs, int(math.ceil(recipe.epochs * self.epoch_factor - 1e-9)))
        ipe = self.iters_per_epoch(recipe)
        if self.min_steps and ipe:
            steps = self.min_steps * max(1.0, recipe.epochs / PAPER_EPOCHS)
            epochs = max(epochs, int(math.ceil(steps / ipe - 1e-9)))
        return epochs

    def model_kwargs_for(self, model: str) -> dict[str, Any]:
        """Miniaturisation arguments: by exact model name first, else by family."""
        if model in self.model_kwargs:
            return dict(self.model_kwargs[model])
        for family in ("resnet", "mobilenet", "inception_v3"):
            if model.startswith(family):
                return dict(self.model_kwargs.get(family, {}))
        return {}

    def fingerprint(self) -> str:
        """Hash of every field except the prose, so changed settings give new trial ids."""
        d = {k: v for k, v in self.__dict__.items() if k not in NOT_FINGERPRINTED
             and not (k in DERIVED_DEFAULTS and v == DERIVED_DEFAULTS[k])}
        return stable_hash(d)


# Miniatures for 28x28 Fashion-MNIST (speeds: bench/RESULTS.md). The ResNets and MobileNet
# keep the paper's stem (stride 4 before layer1); Inception-V3 uses the small-input stem.
_MINI = {
    "resnet": {"width_mult": 0.25, "blocks": (1, 1, 1, 1)},
    "mobilenet": {"width_mult": 0.25},
    "inception_v3": {"small_input": True, "width_mult": 0.0625, "blocks": (1, 1, 1)},
    # The teacher (Sec 5.3 uses ResNet-152-D): a wider, deeper miniature than the students.
    "resnet101_d": {"width_mult": 0.375, "blocks": (1, 2, 2, 1)},
}

# Deviation lines about a scale's data or schedule: a scale derived from a user's folder or
# given --epochs replaces them (harness/data_scale.py).
SMOKE_DATA = ("synthetic seeded data (16x16 RGB, 10 classes, 256 train / 128 test images) instead of "
              "ImageNet: numbers test the plumbing, not accuracy")
SMOKE_EPOCHS = "1 epoch for 120-epoch recipes, 2 for the 200-epoch mixup rows: schedules are compressed proportionally"
LOCAL_EPOCHS = ("epochs = paper epochs / 40 (120 -> 3, 200 -> 5); step milestones and warmup keep their "
                "fraction of the schedule (per-iteration)")

SMOKE = Scale(
    name="smoke", dataset="synthetic", image_size=16, eval_resize=16, batch_factor=1 / 16,
    epoch_factor=1 / 120, min_epochs=1, seeds=2, train_subset=256, test_subset=128,
    min_crop_area=0.35, color_jitter=False, pca_lighting=False,
    model_kwargs={"resnet": {"small_input": True, "width_mult": 0.125, "blocks": (1, 1, 1, 1)},
                  "mobilenet": {"small_input": True, "width_mult": 0.125},
                  "inception_v3": {"small_input": True, "width_mult": 0.0625, "blocks": (1, 1, 1)}},
    teacher_model="resnet101_d", threads_per_trial=1, equivalence_margin=1.0,
    deviations=(
        SMOKE_DATA,
        SMOKE_EPOCHS,
        "batch = paper batch / 16 (256 -> 16, 1024 -> 64) and lr = paper lr / 16 (lr/batch as in the paper)",
        "miniature models: width x1/8 (Inception x1/16), one block per stage, small-input stem",
        "no colour jitter or PCA lighting; crop area 35-100%",
        "the teacher is a miniature ResNet-101-D instead of ResNet-152-D",
        "'no effect' margin +-1.0 point of top-1 (the plumbing scale: its numbers are noise)",
    ),
)

# Deviations of the local scale that hold whatever its data (harness/data_scale.py reuses them
# for a user's ImageFolder at this scale).
LOCAL_MODELS = ("miniature models: ResNets at width x1/4 with one block per stage (paper stem, stride 4 "
                "before layer1); MobileNet at width x1/4; Inception-V3 at width x1/16 with one block of "
                "each kind and a small-input stem")
LOCAL_FP16 = "fp16 runs as bf16 autocast on CPUs with native bf16, else as fp32 (recorded per trial)"
LOCAL_TEACHER = ("the distillation teacher is a miniature ResNet-101-D (width x3/8, blocks 1-2-2-1) trained "
                 "once (seed 0) per teacher recipe, instead of ResNet-152-D")
LOCAL_THREADS = "one CPU thread per trial, two trials at a time on a 2-core machine"

LOCAL = Scale(
    name="local", dataset="fashion_mnist", image_size=28, eval_resize=28, batch_factor=1 / 8,
    epoch_factor=1 / 40, min_epochs=1, seeds=2, train_subset=15000, test_subset=None,
    min_crop_area=1.0, color_jitter=False, pca_lighting=False, model_kwargs=_MINI,
    teacher_model="resnet101_d", threads_per_trial=1, lr_factor=2.0, equivalence_margin=0.5,
    deviations=(
        "Fashion-MNIST (28x28 grey, 10 classes) instead of ImageNet (224x224 RGB, 1000 classes); "
        "the first 15,000 training images (a quarter: Table 6 takes about 15 minutes on 2 cores), all "
        "10,000 test images",
        LOCAL_EPOCHS,
        "batch = paper batch / 8 (256 -> 32, 1024 -> 128); lr = paper lr / 8 x 2 (0.1 -> 0.025, "
        "0.4 -> 0.1): the linear scaling rule applied to the smaller batch, doubled for all rows alike "
        "because 3-5 epoch schedules want larger steps (miniature ResNet-50-D, '+ mixup' recipe, "
        "seed 0, 20k images: 86.8% at x1, 87.4% at x2, 87.6% at x4)",
        LOCAL_MODELS,
        "no random-resized crop (area 100%: the whole 28x28 image), only the horizontal flip: "
        "on a 3-5 epoch schedule the crop costs accuracy (miniature ResNet-50-D, full Table 6 "
        "recipe: 82.7% with area 50-100%, 86.7% without; bench/accuracy_bench.py)",
        "no hue/saturation/brightness jitter or PCA lighting (grey images); Fashion-MNIST's own "
        "mean/std (72.94/90.02) for normalisation",
        "evaluation on the whole 28x28 test image (no resize or center crop: training sees "
        "whole images too)",
        LOCAL_FP16,
        LOCAL_TEACHER,
        LOCAL_THREADS,
        "an underfit regime: top-1 on the first 10,000 training images (evaluation transform) is "
        "only 1.3-1.5 points above test top-1 for Efficient (5 seeds a model, this 2-core Xeon with "
        "AVX-512-bf16: ResNet-50-D +1.54 SD 0.40, Inception-V3 +1.32 SD 0.24, MobileNet +1.53 SD "
        "0.33) and 1.3-3.2 points in the other Table 6 rows (1-3 seeds a cell), where the paper's "
        "120-epoch ImageNet ResNet-50 fits its training set well above its validation accuracy. "
        "Regularisers are made for the fitted regime: here label smoothing, mixup's mixing and the "
        "flip cost top-1 (bench/RESULTS.md), so a 'contradicted' regulariser at this scale says as "
        "much about the proxy as about the trick",
        "'no effect' margin +-0.5 point of top-1, fixed before any result was seen: about 1.4x "
        "the binomial noise of a 10,000-image test set at ~85% (0.36 points), and at or below "
        "most of the paper's Table 6 deltas (+0.36..+0.98 for ResNet-50-D), so 'no effect' "
        "says the trick moved this proxy less than the paper's effect sizes",
    ),
)

PAPER = Scale(
    name="paper", dataset="imagefolder", image_size=224, eval_resize=256, batch_factor=1.0,
    epoch_factor=1.0, min_epochs=1, seeds=1, min_crop_area=0.08, color_jitter=True,
    pca_lighting=True, model_kwargs={}, teacher_model="resnet152_d", threads_per_trial=0,
    equivalence_margin=0.2,  # ImageNet val: binomial floor ~0.19 points, published seed SDs 0.1-0.2
    deviations=(),
)

SCALES: dict[str, Scale] = {s.name: s for s in (SMOKE, LOCAL, PAPER)}


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise unknown("scale", name, SCALES)
    return SCALES[name]

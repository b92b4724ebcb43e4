"""The scale a trial really runs at: its preset, fitted to the trial's data and overrides.

A preset (``harness.scales``) describes its own data set. A trial on a user's ImageFolder at
the ``smoke`` or ``local`` scale instead gets what Sec 2.1 takes from the data, measured on
that folder (``harness.data.folder_stats``, cached by fingerprint): the image size (the
training images' median shorter side, or ``--image-size``), the per-channel mean/std of the
training split, the class count and the images per epoch; at ``local`` also a floor on the
optimizer steps (a 1,200-image folder has 9 steps an epoch at batch 128: the preset's 3-5
epochs would be 27-45 SGD steps). At ``paper`` only the image counts are the folder's (the
paper's recipe is kept exactly). ``--epochs N`` (any data) replaces the epoch rule.

Everything comes from the spec alone (data path, scale name, overrides), so a Ray worker
given the spec as a dict rebuilds the same scale; reports and estimates use the same
functions, so each line they print is computed from what the trials ran.
"""
from __future__ import annotations

import math
from dataclasses import replace

from harness.data.fingerprint import DataError
from harness.data.folder_memory import fits_in_memory
from harness.data.folder_stats import FolderStats, folder_stats
from harness.data.imagefolder import open_imagefolder
from harness.errors import HarnessError
from harness.recipe import Recipe
from harness.scales import (LOCAL_EPOCHS, LOCAL_FP16, LOCAL_MODELS, LOCAL_TEACHER, LOCAL_THREADS, PAPER_EPOCHS,
                            SMOKE_DATA, SMOKE_EPOCHS, Scale, ScaleOverrides)
from harness.spec import BUILTIN_DATA, TrialSpec

MIN_STEPS = 1000  # user data at `local`: a 120-epoch recipe trains at least this many SGD steps
SHORT_EPOCHS = 3  # a schedule of fewer epochs than this is short too (a large folder, --epochs)
BUILTIN_IMAGES = {"fashion_mnist": (60000, 10000), "synthetic": (2048, 512)}  # train, test
IMAGENET = "ImageNet (224x224 RGB, 1000 classes, 1,281,167 training / 50,000 validation images)"
PAPER_NORM = "ImageNet's (mean 123.68/116.78/103.94, std 58.39/57.12/57.38)"


# ---- the scale of a trial -------------------------------------------------------------
def folder_of(spec: TrialSpec, data_root: str | None = None) -> str | None:
    """The ImageFolder the trial trains on, or None for an in-memory built-in set."""
    if spec.dataset == "imagefolder":
        return data_root or None
    return spec.data if spec.data and spec.data not in BUILTIN_DATA else None


def check_overrides(spec: TrialSpec) -> None:
    """HarnessError (one line) for an override the spec's data cannot take: --image-size on
    an in-memory built-in set (Fashion-MNIST is 28 px, synthetic the scale's own)."""
    if spec.overrides.image_size and spec.dataset in BUILTIN_DATA:
        raise HarnessError(f"bad --image-size {spec.overrides.image_size} for dataset {spec.dataset!r}; "
                           "valid: --image-size with an ImageFolder (train: --data PATH; run/report: "
                           "--data-root PATH for a table with requires_imagefolder)")


def trial_scale(spec: TrialSpec, data_root: str | None = None, cache_dir: str | None = None,
                count_folder: bool = True) -> Scale:
    """The spec's scale fitted to its data and overrides (module doc). Reads the folder's
    cached statistics, measuring them on a miss; DataError for an unreadable folder.
    ``count_folder=False``: at the paper scale, do not list the folder to count its images
    (the trainer counts them itself; ImageNet is 1.3M files)."""
    base = spec.scale_obj
    check_overrides(spec)
    if spec.user_folder:
        scale = folder_scale(base, folder_stats(spec.data, cache_dir), spec.overrides)
    elif spec.dataset in BUILTIN_IMAGES:
        train, test = BUILTIN_IMAGES[spec.dataset]
        scale = replace(base, train_images=base.train_subset or train, val_images=base.test_subset or test,
                        num_classes=10)
    else:  # the paper scale on an ImageFolder
        folder = folder_of(spec, data_root) if count_folder else None
        scale = paper_folder_scale(base, folder, spec.overrides)
    if scale.num_classes is not None and scale.num_classes < 2:
        raise DataError(f"{scale.from_data}: {scale.num_classes} class folder; valid: an ImageFolder with at "
                        "least 2 class folders under train/ and val/")
    return with_epochs(scale, spec.overrides.epochs)


def check_batches(scale: Scale, recipes: list[Recipe]) -> None:
    """DataError (one line) when the counted training images are fewer than one batch of a
    recipe: every such trial would fail (or, on the DataLoader path, train 0 steps)."""
    for r in recipes:
        batch = scale.batch_size(r)
        if scale.train_images is not None and scale.train_images < batch:
            raise DataError(f"{scale.from_data or scale.dataset}: {scale.train_images} training images, fewer "
                            f"than one batch of {batch}; valid: a folder with at least one batch of training "
                            "images, or a smaller --set batch_size (the paper's; the scale divides it)")


def folder_scale(base: Scale, stats: FolderStats, overrides: ScaleOverrides) -> Scale:
    """``base`` (smoke or local) on the measured folder ``stats`` (module doc)."""
    size = overrides.image_size or stats.native_size
    scale = replace(base, dataset="imagefolder", image_size=size, eval_resize=size, train_subset=None,
                    test_subset=None, mean=stats.mean, std=stats.std, train_images=stats.train_images,
                    val_images=stats.val_images, num_classes=stats.num_classes,
                    min_steps=MIN_STEPS if base.name == "local" else 0, from_data=stats.root)
    return replace(scale, deviations=folder_deviations(scale, stats, overrides))


def paper_folder_scale(base: Scale, folder: str | None, overrides: ScaleOverrides) -> Scale:
    """The paper scale on an ImageFolder: the paper's recipe, the folder's image counts when
    ``folder`` is given, and ``--image-size`` when set (the evaluation resize scaled alike)."""
    scale, devs = base, list(base.deviations)
    if folder is not None:
        train, val = open_imagefolder(folder, "train"), open_imagefolder(folder, "val")
        scale = replace(base, train_images=len(train), val_images=len(val), num_classes=train.num_classes,
                        from_data=folder)
    if folder is not None and (len(train), train.num_classes) != (1_281_167, 1000):
        devs.append(f"the ImageFolder {folder} ({train.num_classes:,} classes, {len(train):,} training / "
                    f"{len(val):,} validation images) instead of {IMAGENET}; the paper's recipe otherwise")
    if overrides.image_size:
        size = overrides.image_size
        scale = replace(scale, image_size=size, eval_resize=int(round(size * base.eval_resize / base.image_size)))
        devs.append(f"{size} px training crops for every model (--image-size {size}) instead of the "
                    f"paper's 224 (Inception-V3: 299), evaluation resize {scale.eval_resize}")
    return replace(scale, deviations=tuple(devs))


def with_epochs(scale: Scale, epochs: int) -> Scale:
    """``--epochs N``: N epochs for a 120-epoch recipe, E paper epochs -> ceil(N x E / 120);
    no step floor (the user's choice wins; a short schedule gets a warning instead)."""
    if not epochs:
        return scale
    line = (f"epochs = {epochs} for the paper's {PAPER_EPOCHS:g} (--epochs {epochs}), a recipe of E paper "
            f"epochs ceil({epochs} x E / {PAPER_EPOCHS:g}) (200 -> {math.ceil(epochs * 200 / PAPER_EPOCHS - 1e-9)}); "
            "step milestones and warmup keep their fraction of the schedule (per-iteration)")
    devs = [d for d in scale.deviations if d not in (LOCAL_EPOCHS, SMOKE_EPOCHS) and not d.startswith("epochs = ")]
    return replace(scale, epoch_factor=epochs / PAPER_EPOCHS, min_epochs=1, min_steps=0,
                   deviations=(*devs[:1], line, *devs[1:]))


def plan_scale(plan, data_root: str | None = None, strict: bool = False) -> Scale:
    """The scale of a plan's trials (they share data and overrides), for reports and
    estimates; the preset, with a deviation saying so, when the folder cannot be read
    (``strict``: raise the DataError instead, as a run does before training)."""
    trials = plan.all_trials()
    if not trials:
        return plan.scale
    try:
        return trial_scale(trials[0], data_root)
    except DataError as e:
        if strict:
            raise
        return replace(plan.scale, deviations=(*plan.scale.deviations,
                       f"the data-derived settings could not be read back: {e}"))


# ---- what a report and a run say about it --------------------------------------------
def _rgb(values: tuple[float, ...]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _ipe(stats: FolderStats, batch: int) -> int:
    return max(1, stats.train_images // batch)


def folder_deviations(scale: Scale, stats: FolderStats, overrides: ScaleOverrides) -> tuple[str, ...]:
    """Every way ``scale`` (a preset on the folder ``stats``) deviates from the paper."""
    size = scale.image_size
    measured = f"measured on {stats.measured_images:,} decoded training images"
    how = ("each image decoded once, its shorter side resized to {s} and center-cropped, held in memory"
           if fits_in_memory(stats.train_images + stats.val_images, size) else
           "training crops resized to {s} by the DataLoader workers each epoch")
    lines = [
        f"the ImageFolder {stats.root} ({stats.num_classes:,} classes, {stats.train_images:,} training / "
        f"{stats.val_images:,} validation images, RGB) instead of {IMAGENET}; every image of both splits",
        f"{size}x{size} px images: " + (f"--image-size {size} (the training images' median shorter side is "
                                        f"{stats.native_size} px)" if overrides.image_size else
                                        f"the training images' median shorter side, {measured}")
        + "; " + how.format(s=size),
        f"normalised with the training split's own mean/std per channel (R/G/B mean {_rgb(stats.mean)}, "
        f"std {_rgb(stats.std)} on 0-255, {measured}) instead of {PAPER_NORM}",
    ]
    if scale.name == "smoke":
        return (*lines, *(d for d in scale.deviations if d != SMOKE_DATA))
    margin_sd = 100 * (0.25 / max(1, stats.val_images)) ** 0.5
    return (*lines,
            f"epochs = max(paper epochs / 40, ceil({scale.min_steps:,} x max(1, E / {PAPER_EPOCHS:g}) / iterations "
            f"per epoch)) for a recipe of E paper epochs: at least {scale.min_steps:,} SGD steps for a "
            f"{PAPER_EPOCHS:g}-epoch recipe, longer recipes proportionally more, because {stats.train_images:,} "
            f"training images give only {_ipe(stats, 32)} steps an epoch at batch 32 and {_ipe(stats, 128)} at "
            "batch 128; step milestones and warmup keep their fraction of the schedule (per-iteration)",
            "batch = paper batch / 8 (256 -> 32, 1024 -> 128); lr = paper lr / 8 x 2 (0.1 -> 0.025, 0.4 -> "
            "0.1): the local preset's rule (chosen for its own 3-5 epoch schedules), not tuned for this data",
            LOCAL_MODELS,
            "flip only: no random-resized crop (area 100%: the whole image), colour jitter or PCA lighting "
            "(the local scale's augmentation)",
            f"evaluation on the whole {size}x{size} validation image (the same resize and center crop)",
            LOCAL_FP16, LOCAL_TEACHER, LOCAL_THREADS,
            f"'no effect' margin +-{scale.equivalence_margin:g} point of top-1 (the local preset's, fixed "
            f"before any result); on {stats.val_images:,} validation images one image is "
            f"{100 / max(1, stats.val_images):.2f} points and the binomial SD at 50% accuracy {margin_sd:.2f} points")


def schedule_line(scale: Scale, recipe: Recipe) -> str | None:
    """'120 paper epochs at batch 128: 112 epochs x 9 iterations = 1,008 SGD steps' (None
    when the training images are not counted)."""
    ipe = scale.iters_per_epoch(recipe)
    if ipe is None:
        return None
    epochs = scale.epochs(recipe)
    return (f"{recipe.epochs:g} paper epochs at batch {scale.batch_size(recipe)}: {epochs} epochs x {ipe} "
            f"iterations = {epochs * ipe:,} SGD steps")


def schedule_lines(scale: Scale, recipes: list[Recipe]) -> list[str]:
    """One :func:`schedule_line` per distinct (batch, paper epochs) of ``recipes``, in order."""
    lines = [schedule_line(scale, r) for r in recipes]
    return list(dict.fromkeys(x for x in lines if x))


def schedule_warning(scale: Scale, recipe: Recipe) -> str | None:
    """One line when a schedule on an ImageFolder is too short for its data (fewer than
    ``MIN_STEPS`` SGD steps or ``SHORT_EPOCHS`` epochs); None otherwise, and always at the
    smoke scale (plumbing) and on the built-in data sets."""
    ipe = scale.iters_per_epoch(recipe)
    if not scale.from_data or scale.name == "smoke" or ipe is None:
        return None
    epochs = scale.epochs(recipe)
    if epochs * ipe >= MIN_STEPS and epochs >= SHORT_EPOCHS:
        return None
    return (f"warning: short schedule: {schedule_line(scale, recipe)} on {scale.train_images:,} training "
            f"images (fewer than {MIN_STEPS:,} steps or {SHORT_EPOCHS} epochs): its numbers say little; "
            "raise --epochs or drop it")


def schedule_warnings(scale: Scale, recipes: list[Recipe]) -> list[str]:
    lines = [schedule_warning(scale, r) for r in recipes]
    return list(dict.fromkeys(x for x in lines if x))

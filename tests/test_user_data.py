"""A user's ImageFolder (issue 22 items 1-2): the scale measured from the folder (size,
mean/std, counts, deviations), its cache, the step floor at `local`, --epochs and
--image-size, the short-schedule warning, and unchanged hashes for every other trial.
Every folder here is built in tmp_path (a few JPEGs per class)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets.folder import default_loader
from torchvision.transforms.v2.functional import pil_to_tensor

from harness.cli import main
from harness.data.fingerprint import DataError
from harness.data.folder_stats import FolderStats, folder_stats
from harness.data_scale import (MIN_STEPS, folder_scale, plan_scale, schedule_warning, trial_scale,
                                with_epochs)
from harness.experiments import load_experiment, make_plan
from harness.experiments.plan import paper_tables
from harness.recipe import named_recipe
from harness.report.markdown import scale_section
from harness.scales import LOCAL, PAPER, SCALES, ScaleOverrides, get_scale
from harness.spec import TrialSpec, spec_from_dict, spec_to_dict
from harness.tasks.classification import make_schedule
from harness.trainer import run_trial
from harness.trial import TrainOptions

REPO = Path(__file__).resolve().parents[1]
# shorter sides of the training images of each class (median_low of all of them: 20)
SIDES = [(20, 26), (24, 20), (20, 20), (30, 28)]


def make_folder(root: Path, classes: int = 3, val: int = 2, seed: int = 0) -> Path:
    """root/train/<class>/*.jpg (len(SIDES) RGB images of the sizes in SIDES) and
    root/val/<class>/*.jpg (``val`` images of 20x20); random colours per image."""
    rng = np.random.default_rng(seed)
    for split, sizes in (("train", SIDES), ("val", [(20, 20)] * val)):
        for c in range(classes):
            d = root / split / f"c{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i, (w, h) in enumerate(sizes):
                a = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                a[..., 0] //= 2  # the channels differ, so a per-channel mix-up shows
                Image.fromarray(a, "RGB").save(d / f"{i}.jpg", quality=90)
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "imgs")


def local_stats(train_images: int, num_classes: int = 10) -> FolderStats:
    return FolderStats(root="/data/mine", fingerprint="f" * 32, num_classes=num_classes,
                       train_images=train_images, val_images=300, native_size=64,
                       mean=(74.0, 73.0, 72.0), std=(52.0, 53.0, 51.0), measured_images=train_images)


# ---- measuring and caching ---------------------------------------------------------------
def test_mean_std_and_native_size_match_torch_on_the_decoded_images(folder, tmp_path):
    """Per-channel mean/std: the same as torch's own over every decoded training image (PIL
    RGB, as ImageFolder loads them); native size: the median shorter side."""
    stats = folder_stats(folder, cache_dir=tmp_path / "cache")
    images = [pil_to_tensor(default_loader(str(p))).to(torch.float64)
              for p in sorted((folder / "train").rglob("*.jpg"))]
    pixels = torch.cat([im.reshape(3, -1) for im in images], dim=1)
    assert stats.mean == pytest.approx(pixels.mean(dim=1).tolist(), abs=1e-3)
    assert stats.std == pytest.approx(pixels.std(dim=1, unbiased=False).tolist(), abs=1e-3)
    assert stats.mean[0] != pytest.approx(stats.mean[1], abs=1.0)  # channels kept apart
    assert stats.native_size == 20
    assert (stats.num_classes, stats.train_images, stats.val_images) == (3, 12, 6)


def test_a_second_call_reads_the_cache_not_the_images(folder, tmp_path):
    """Cached by the folder's fingerprint (paths and sizes): after the first call the images
    are overwritten with same-sized garbage; a second call still answers (from the cache),
    while a call with an empty cache must decode them and fails."""
    cache = tmp_path / "cache"
    first = folder_stats(folder, cache_dir=cache)
    files = list(cache.glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["mean"] == list(first.mean)
    for p in (folder / "train").rglob("*.jpg"):
        p.write_bytes(b"\0" * p.stat().st_size)
    assert folder_stats(folder, cache_dir=cache) == first
    with pytest.raises(DataError, match="cannot decode"):
        folder_stats(folder, cache_dir=tmp_path / "empty")


def test_a_changed_folder_is_measured_again(folder, tmp_path):
    """Another fingerprint (one more image) is another cache entry with its own numbers."""
    cache = tmp_path / "cache"
    first = folder_stats(folder, cache_dir=cache)
    Image.fromarray(np.full((40, 40, 3), 255, np.uint8)).save(folder / "train" / "c0" / "extra.jpg")
    second = folder_stats(folder, cache_dir=cache)
    assert second.train_images == first.train_images + 1 and second.mean != first.mean
    assert len(list(cache.glob("*.json"))) == 2


# ---- the derived scale ---------------------------------------------------------------------
def folder_spec(folder: Path, scale: str = "local", recipe: str = "efficient", **overrides) -> TrialSpec:
    return TrialSpec(model="resnet50_d", recipe=named_recipe(recipe), scale=scale, seed=0,
                     data=str(folder), overrides=ScaleOverrides(**overrides))


def test_the_deviations_describe_the_folder_not_fashion_mnist(folder, tmp_path):
    """Class count, image counts, size and mean/std of the folder; nothing about Fashion-MNIST."""
    scale = trial_scale(folder_spec(folder), cache_dir=tmp_path / "cache")
    text = "\n".join(scale.deviations)
    assert "3 classes, 12 training / 6 validation images" in text
    assert "20x20 px" in text and "median shorter side" in text
    mean = "/".join(f"{m:.2f}" for m in scale.mean)
    assert f"mean {mean}" in text
    assert "Fashion-MNIST" not in text and "28x28" not in text and "72.94" not in text
    assert (scale.image_size, scale.num_classes, scale.train_images) == (20, 3, 12)
    assert scale.fingerprint() != LOCAL.fingerprint()


def test_image_size_override_and_smoke(folder, tmp_path):
    """--image-size N wins over the native size (and says both); smoke keeps no step floor."""
    scale = trial_scale(folder_spec(folder, image_size=32), cache_dir=tmp_path / "cache")
    assert scale.image_size == scale.eval_resize == 32
    assert "--image-size 32 (the training images' median shorter side is 20 px)" in "\n".join(scale.deviations)
    smoke = trial_scale(folder_spec(folder, scale="smoke"), cache_dir=tmp_path / "cache")
    assert smoke.min_steps == 0 and smoke.image_size == 20
    assert not any("synthetic" in d for d in smoke.deviations)


def test_step_floor_at_local_for_a_nine_iteration_epoch():
    """1,200 images at batch 128 (Efficient: 1024 / 8) = 9 iterations an epoch: the 120-epoch
    recipes train at least ceil(1000 / 9) epochs, the 200-epoch mixup row 200/120 as many."""
    scale = folder_scale(LOCAL, local_stats(1200), ScaleOverrides())
    efficient = named_recipe("efficient")
    assert scale.iters_per_epoch(efficient) == 9
    assert scale.epochs(efficient) == math.ceil(MIN_STEPS / 9) == 112
    mixup = efficient.replace(mixup=True, epochs=200)
    assert scale.epochs(mixup) == math.ceil(MIN_STEPS * 200 / 120 / 9)
    assert scale.epochs(mixup) * 9 >= MIN_STEPS
    baseline = named_recipe("baseline")  # batch 32: 37 iterations
    assert scale.epochs(baseline) == math.ceil(MIN_STEPS / 37)
    # a large folder keeps the preset's rule (3 epochs already give >= 1,000 steps)
    assert folder_scale(LOCAL, local_stats(60000), ScaleOverrides()).epochs(efficient) == 3
    # the presets themselves are untouched
    assert (LOCAL.epochs(efficient), LOCAL.epochs(mixup)) == (3, 5)


def test_epochs_override_rescales_milestones_and_warmup():
    """--epochs 12: a 120-epoch recipe trains 12 epochs, its milestones (30/60/90 of 120) and
    warmup (5 of 120) keep their fraction; a 200-epoch recipe trains ceil(12 x 200/120)."""
    scale = with_epochs(folder_scale(LOCAL, local_stats(1200), ScaleOverrides(epochs=12)), 12)
    recipe = named_recipe("baseline").replace(warmup_epochs=5)
    assert scale.epochs(recipe) == 12 and scale.min_steps == 0
    sched = make_schedule(recipe, scale, 10)
    assert sched.total_iters == 120
    assert list(sched.milestones) == [30, 60, 90] and sched.warmup_iters == 5
    sched7 = make_schedule(recipe, scale, 7)
    assert list(sched7.milestones) == [21, 42, 63] and sched7.total_iters == 84
    assert scale.epochs(recipe.replace(epochs=200)) == 20
    assert sum(d.startswith("epochs = 12 for the paper's 120") for d in scale.deviations) == 1


def test_short_schedule_warning_in_the_run_line_and_the_report():
    """A schedule under 1,000 steps (or 3 epochs) on a folder: one warning line, also in the
    report's deviations; the floor's own schedules and Fashion-MNIST get none."""
    recipe = named_recipe("efficient")
    short = with_epochs(folder_scale(LOCAL, local_stats(1200), ScaleOverrides(epochs=4)), 4)
    line = schedule_warning(short, recipe)
    assert line is not None and "\n" not in line
    assert "4 epochs x 9 iterations = 36 SGD steps" in line
    assert schedule_warning(folder_scale(LOCAL, local_stats(1200), ScaleOverrides()), recipe) is None
    fm = trial_scale(TrialSpec(model="resnet50_d", recipe=recipe, scale="local", seed=0))
    assert schedule_warning(fm, recipe) is None
    spec = TrialSpec(model="resnet50_d", recipe=recipe, scale="local", seed=0)
    data = SimpleNamespace(scale=short, plan=SimpleNamespace(all_trials=lambda: [spec]),
                           exp=SimpleNamespace(notes=[]))
    section = "\n".join(scale_section(data))
    assert f"- {line}" in section
    assert "- schedule: 120 paper epochs at batch 128: 4 epochs x 9 iterations = 36 SGD steps" in section


def test_train_prints_the_warning_and_trains_the_folder_in_memory(folder, tmp_path, monkeypatch, capsys):
    """`train --data FOLDER --epochs 1` at smoke... and at local: the warning on stderr (one
    line), the folder's class count, and the measured size in the trained model's input."""
    monkeypatch.chdir(tmp_path)  # the stats cache goes to tmp_path/results/cache
    rc = main(["train", "--model", "resnet18", "--recipe", "baseline", "--scale", "local",
               "--data", str(folder), "--epochs", "1", "--set", "batch_size=32"])
    out, err = capsys.readouterr()
    assert rc == 0
    warnings = [x for x in err.splitlines() if x.startswith("warning: short schedule")]
    assert len(warnings) == 1 and "1 epochs x 3 iterations = 3 SGD steps" in warnings[0]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "done" and result["epochs"] == 1
    assert list((tmp_path / "results" / "cache" / "folder_stats").glob("*.json"))


def test_a_worker_rebuilds_the_same_scale_from_the_spec_dict(folder, tmp_path, monkeypatch):
    """The spec travels as a dict: same hash, same derived scale on the other side."""
    monkeypatch.chdir(tmp_path)
    spec = folder_spec(folder, image_size=24, epochs=7)
    again = spec_from_dict(json.loads(json.dumps(spec_to_dict(spec))))
    assert again == spec and again.hash == spec.hash
    assert trial_scale(again) == trial_scale(spec)
    assert trial_scale(again).epochs(spec.recipe) == math.ceil(7 - 1e-9)


def test_run_trial_on_a_folder_uses_its_classes_and_size(folder, tmp_path, monkeypatch):
    """One smoke trial on the folder: 3 classes, 20 px, trained from the in-memory copy."""
    monkeypatch.chdir(tmp_path)
    spec = folder_spec(folder, scale="smoke", recipe="baseline")  # batch 256 / 16 > 12 images
    with pytest.raises(DataError, match="12 training images, fewer than one batch of 16"):
        run_trial(spec, TrainOptions(log=lambda m: None))
    spec = TrialSpec(model="resnet50_d", recipe=named_recipe("baseline").replace(batch_size=64),
                     scale="smoke", seed=0, data=str(folder))
    result = run_trial(spec, TrainOptions(log=lambda m: None))
    assert result.status == "done"
    assert result.dataset_fingerprint == "/".join(
        [folder_stats(folder).fingerprint[:16], folder_stats(folder).fingerprint[16:]])
    assert result.metrics["logit_gap"]["classes"] == 3


# ---- hashes --------------------------------------------------------------------------------
def test_plan_hashes_of_built_in_tables_are_unchanged():
    """Every trial of paper_table2..9 and the example files at smoke/local (Fashion-MNIST,
    synthetic) and paper: the hashes recorded before the data-derived scale existed."""
    golden = json.loads((REPO / "tests" / "data" / "plan_hashes.json").read_text())
    now = {}
    for name in [*paper_tables(), "examples/custom_table.yaml", "examples/factorial_three_tricks.yaml"]:
        exp = load_experiment(str(REPO / name) if name.startswith("examples") else name)
        for scale in SCALES.values():
            if exp.requires_imagefolder and scale.dataset != "imagefolder":
                continue
            now[f"{exp.name}@{scale.name}"] = sorted(t.hash for t in make_plan(exp, scale).all_trials())
    assert now == golden


def test_overrides_and_folder_trials_change_only_their_own_hashes(folder):
    """A folder at local has its own hash (the derived rule); paper-scale and Fashion-MNIST
    trials only change when an override is set; an old spec dict (no overrides) still loads."""
    recipe = named_recipe("baseline")
    fm = TrialSpec(model="resnet50_d", recipe=recipe, scale="local", seed=0)
    assert "scale_rule" not in fm.hash_payload() and "epochs" not in fm.hash_payload()
    assert TrialSpec(model="resnet50_d", recipe=recipe, scale="local", seed=0,
                     overrides=ScaleOverrides(epochs=6)).hash != fm.hash
    assert "scale_rule" in folder_spec(folder).hash_payload()
    paper = TrialSpec(model="resnet50_d", recipe=recipe, scale="paper", seed=0, data=str(folder))
    assert "scale_rule" not in paper.hash_payload()
    d = spec_to_dict(fm)
    d.pop("overrides")
    assert spec_from_dict(d).hash == fm.hash


# ---- the commands ----------------------------------------------------------------------------
@pytest.mark.parametrize("flag,value", [("--epochs", "0"), ("--epochs", "-3"), ("--epochs", "2.5"),
                                        ("--image-size", "0"), ("--image-size", "-1"),
                                        ("--image-size", "abc")])
@pytest.mark.parametrize("command", ["train", "run"])
def test_bad_epochs_or_image_size_exit_2_naming_the_value(command, flag, value, tmp_path, capsys,
                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = (["train", "--model", "resnet50_d"] if command == "train" else ["run", "paper_table6", "--dry-run"])
    with pytest.raises(SystemExit) as exc:
        main([*args, flag, value])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1
    assert flag in err and repr(value) in err and "integer >= 1" in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_image_size_on_fashion_mnist_is_bad_input(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "paper_table6", "--image-size", "32", "--store", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--image-size 32" in err[0] and "ImageFolder" in err[0]
    assert not list(tmp_path.iterdir())


def test_dry_run_of_the_example_describes_the_folder(folder, tmp_path, capsys, monkeypatch):
    """`run examples/imagefolder_table.toml --data-root FOLDER --dry-run`: the folder's image
    count and size, and the floor's epochs."""
    monkeypatch.chdir(tmp_path)
    rc = main(["run", str(REPO / "examples" / "imagefolder_table.toml"), "--data-root", str(folder),
               "--dry-run", "--store", str(tmp_path / "s.sqlite")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "data: 12 training images at 20 px" in out
    scale = plan_scale(make_plan(load_experiment(str(REPO / "examples" / "imagefolder_table.toml")),
                                 get_scale("local"), data=str(folder)))
    assert scale.epochs(named_recipe("efficient")) == MIN_STEPS  # 12 images / batch 128: 1 step an epoch


def test_cosine_recipe_at_paper_with_one_epoch_has_no_milestone_complaint():
    """Issue 22: `--set epochs=1 --set lr_schedule=cosine` validates (milestones only matter
    under the step schedule)."""
    recipe = named_recipe("baseline").replace(epochs="1", lr_schedule="cosine").validate()
    assert recipe.epochs == 1


def test_report_of_the_example_on_a_folder_renders_its_scale(folder, tmp_path, monkeypatch):
    """The example's report (no trial stored yet): the folder's deviations and schedules, and
    the compound rows' decomposition section looks its corners up on the same folder (it used
    to stop with 'needs its own dataset as an ImageFolder')."""
    from harness.report import build_report
    from harness.store import Store

    monkeypatch.chdir(tmp_path)
    store = tmp_path / "s.sqlite"
    Store(str(store)).close()
    exp = load_experiment(str(REPO / "examples" / "imagefolder_table.toml"))
    _, text = build_report(exp, get_scale("local"), store, [0, 1], tmp_path / "reports",
                           data=str(folder), figures=False)
    section = text[text.index("## Scale and deviations"):text.index("## Provenance")]
    assert f"dataset the ImageFolder {folder.resolve()} (3 classes, 12 training / 6 validation images)" in section
    assert "- schedule: 120 paper epochs at batch 128: 1000 epochs x 1 iterations = 1,000 SGD steps" in section
    assert "Fashion-MNIST" not in section
    assert "'+ mixup' decomposed" in text


# ---- edges found in review ------------------------------------------------------------------
def test_a_one_class_folder_is_bad_input(tmp_path, monkeypatch, capsys):
    """One class folder would train and report 100% top-1: refused with one line, exit 2."""
    monkeypatch.chdir(tmp_path)
    one = make_folder(tmp_path / "one", classes=1)
    rc = main(["train", "--model", "resnet18", "--scale", "smoke", "--data", str(one)])
    err = capsys.readouterr().err
    assert rc == 2 and "1 class folder" in err and "at least 2 class folders" in err


def test_a_folder_smaller_than_a_batch_stops_a_run_before_ray(folder, tmp_path, monkeypatch, capsys):
    """12 training images, batch 64 at smoke: every trial would fail (or train 0 steps on the
    DataLoader path). A real run refuses before anything starts; a dry run warns."""
    monkeypatch.chdir(tmp_path)
    args = ["run", str(REPO / "examples" / "imagefolder_table.toml"), "--data-root", str(folder),
            "--scale", "smoke", "--seeds", "1", "--store", str(tmp_path / "s.sqlite")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "12 training images, fewer than one batch" in err
    assert not (tmp_path / "s.sqlite").exists() or "trials" not in err


def test_a_model_that_cannot_take_the_input_size_is_bad_input(folder, tmp_path, monkeypatch, capsys):
    """torchvision's ViT is built for 224 px: on 20 px images one line naming the size, exit 2."""
    monkeypatch.chdir(tmp_path)
    rc = main(["train", "--model", "torchvision:vit_b_16", "--scale", "smoke", "--data", str(folder),
               "--set", "batch_size=64"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot take 20x20 px inputs" in err


def test_a_timm_vit_trains_at_the_folders_size(folder, tmp_path, monkeypatch, capsys):
    """timm's ViT is built for the crop (img_size=20: one 16-px patch), so it trains."""
    pytest.importorskip("timm")
    monkeypatch.chdir(tmp_path)
    rc = main(["train", "--model", "timm:vit_tiny_patch16_224", "--scale", "smoke", "--data", str(folder),
               "--set", "batch_size=64"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and json.loads(out[-1])["status"] == "done"


def test_an_explicit_image_size_is_every_models_crop_at_the_paper_scale():
    """--image-size 224 at `paper` trains Inception-V3 at 224 (without it: its own 299, Sec 4);
    a user's folder whose native size is 224 keeps 224 at `local` for Inception-V3 too."""
    import dataclasses

    from harness.batches import input_size
    from harness.tasks.classification import own_crop_model

    spec = TrialSpec(model="inception_v3", recipe=named_recipe("efficient"), scale="paper", seed=0)
    assert input_size(PAPER, own_crop_model(spec)) == (299, 342)
    fixed = dataclasses.replace(spec, overrides=ScaleOverrides(image_size=224))
    assert own_crop_model(fixed) is None and input_size(PAPER, own_crop_model(fixed)) == (224, 256)
    folder224 = dataclasses.replace(LOCAL, dataset="imagefolder", image_size=224, eval_resize=224)
    assert input_size(folder224, "inception_v3") == (224, 224)


def test_the_crop_rule_is_in_the_hash_where_it_changed_the_crop():
    """Only a trial whose explicit --image-size 224 differs from its model's own crop trained
    differently before the rule (Inception-V3 kept 299): its hash carries the rule; the same
    flag on a 224-px model, another size, or no flag leave the payload as it was."""
    def payload(model, size):
        spec = TrialSpec(model=model, recipe=named_recipe("efficient"), scale="paper", seed=0,
                         overrides=ScaleOverrides(image_size=size))
        return spec.hash_payload()
    assert payload("inception_v3", 224)["crop_rule"] == "explicit-size-v2"
    assert "crop_rule" not in payload("resnet50_d", 224)
    assert "crop_rule" not in payload("inception_v3", 192)
    assert "crop_rule" not in payload("inception_v3", 0)

"""Tests for ``harness/transfer`` (Sec 6.2, Tables 8 and 9): composed data, the mAP /
pixel-accuracy / mIoU metrics against hand computations, fine-tuning end to end at the
smoke scale, the paper-scale loaders' layouts and errors, and the table files' backbones
(they must be Table 6's ResNet-50-D trials)."""
from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import HarnessError
from harness.transfer.composed import THRESHOLD, compose, composed_fashion_mnist, tight_box
from harness.transfer.metrics import detection_map, segmentation_scores

needs_coco = pytest.mark.skipif(importlib.util.find_spec("pycocotools") is None,
                                reason="mAP needs pycocotools (the 'detection' extra)")


# --------------------------------------------------------------------------- composed data
def _fashion(split: str):
    from harness.data import load_in_memory

    try:
        return load_in_memory("fashion_mnist", split)
    except HarnessError as exc:  # pragma: no cover - the data is installed in CI
        pytest.skip(f"Fashion-MNIST not available: {exc}")


def test_composed_boxes_and_masks_match_the_pasted_items_exactly():
    """Every box is the tight box of its item's pixels > threshold, the canvas holds exactly
    those pixels inside it, the mask is class + 1 on them and 0 elsewhere, crops never
    overlap, and nothing outside the boxes is drawn. Recomputed from the source items."""
    src = _fashion("train")
    ds = composed_fashion_mnist("train", 48, 64, seed=3)
    assert ds.images.shape == (48, 1, 64, 64) and ds.masks.shape == (48, 64, 64)
    counts = [len(b) for b in ds.boxes]
    assert min(counts) >= 1 and max(counts) <= 3 and len(set(counts)) > 1
    for i in range(len(ds)):
        img, mask = ds.images[i, 0].numpy(), ds.masks[i].numpy()
        covered = np.zeros_like(mask, dtype=bool)
        for box, label, j in zip(ds.boxes[i].tolist(), ds.labels[i].tolist(), ds.sources[i].tolist()):
            item = src.images[j, 0].numpy()
            assert label == int(src.labels[j])
            fg = item > THRESHOLD
            ys, xs = np.nonzero(fg)  # independent recomputation of the tight box
            h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
            x0, y0, x1, y1 = box
            assert (x1 - x0, y1 - y0) == (w, h)
            crop_fg = fg[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            crop = np.where(crop_fg, item[ys.min():ys.max() + 1, xs.min():xs.max() + 1], 0)
            np.testing.assert_array_equal(img[y0:y1, x0:x1], crop)
            np.testing.assert_array_equal(mask[y0:y1, x0:x1], np.where(crop_fg, label + 1, 0))
            assert not covered[y0:y1, x0:x1].any(), "crops overlap"
            covered[y0:y1, x0:x1] = True
        assert not img[~covered].any() and not mask[~covered].any()
        assert ((img > 0) == (mask > 0)).all()


def test_composed_is_seeded_and_fingerprinted():
    """Same seed -> same arrays and fingerprint; another seed or split -> another fingerprint."""
    items = np.zeros((5, 28, 28), np.uint8)
    for k in range(5):
        items[k, 4 + k:20, 6:18 + k] = 50 + 30 * k
    labels = np.arange(5)
    a = compose(items, labels, 20, 48, seed=1)
    b = compose(items, labels, 20, 48, seed=1)
    c = compose(items, labels, 20, 48, seed=2)
    assert a.fingerprint == b.fingerprint and torch.equal(a.images, b.images)
    assert a.fingerprint != c.fingerprint
    assert tight_box(items[2]) == (6, 6, 20, 20)
    tr = composed_fashion_mnist("train", 8, 48)
    te = composed_fashion_mnist("test", 8, 48)
    assert tr.fingerprint != te.fingerprint and tr.split == "train" and te.split == "test"


# --------------------------------------------------------------------------- metrics
def _gt():
    boxes = torch.tensor([[10, 10, 20, 20], [30, 5, 40, 15], [2, 30, 12, 40]], dtype=torch.float32)
    return [{"boxes": boxes, "labels": torch.tensor([1, 2, 1])}]


def _pred(boxes: torch.Tensor, labels=(1, 2, 1), scores=(0.9, 0.8, 0.7)):
    return [{"boxes": boxes, "labels": torch.tensor(labels), "scores": torch.tensor(scores)}]


@needs_coco
def test_map_of_perfect_and_shifted_boxes():
    """Perfect boxes give 100%. A 10x10 box shifted 3 px has IoU 70/130 = 0.54 >= 0.5 (still a
    hit, 100%); shifted 4 px, IoU 60/140 = 0.43 < 0.5 (every detection a miss, 0%)."""
    gt = _gt()
    assert detection_map(_pred(gt[0]["boxes"].clone()), gt) == pytest.approx(100.0)
    shift = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert detection_map(_pred(gt[0]["boxes"] + 3 * shift), gt) == pytest.approx(100.0)
    assert detection_map(_pred(gt[0]["boxes"] + 4 * shift), gt) == pytest.approx(0.0)
    # wrong class labels are misses too
    assert detection_map(_pred(gt[0]["boxes"].clone(), labels=(2, 1, 2)), gt) == pytest.approx(0.0)


@needs_coco
def test_map_interpolation_rule():
    """One class, two objects; the top-scored detection hits one, the second misses: recall
    reaches 0.5 at precision 1, so 51 of COCO's 101 recall points have precision 1:
    AP = 51/101. A difficult object (iscrowd) neither needs a detection nor penalises one."""
    gt = [{"boxes": torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=torch.float32),
           "labels": torch.tensor([1, 1])}]
    pred = _pred(torch.tensor([[0, 0, 10, 10], [50, 50, 60, 60]], dtype=torch.float32),
                 labels=(1, 1), scores=(0.9, 0.8))
    assert detection_map(pred, gt) == pytest.approx(100 * 51 / 101)
    gt[0]["iscrowd"] = torch.tensor([0, 1])
    first_only = [{k: v[:1] for k, v in pred[0].items()}]
    assert detection_map(first_only, gt) == pytest.approx(100.0)


def test_pixacc_and_miou_on_a_4x4_example():
    """Hand computation: 13 of 16 pixels right (81.25%); IoU class 0 = 6/9, class 1 = 4/5,
    class 2 = 3/5, mean 68.89%. A class absent from both maps is left out of the mean;
    ignored pixels count in neither metric."""
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [0, 0, 0, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1], [2, 2, 0, 2], [0, 0, 0, 2]])
    miou = 100 * (6 / 9 + 4 / 5 + 3 / 5) / 3
    pixacc, m = segmentation_scores(pred[None], target[None], num_classes=3)
    assert pixacc == pytest.approx(81.25) and m == pytest.approx(miou)
    pixacc, m = segmentation_scores(pred[None], target[None], num_classes=11)
    assert pixacc == pytest.approx(81.25) and m == pytest.approx(miou)
    ignored = target.clone()
    ignored[3, 3] = 255  # the wrong pixel (pred 2, target 0) no longer counts
    pixacc, m = segmentation_scores(pred[None], ignored[None], num_classes=3, ignore_index=255)
    assert pixacc == pytest.approx(100 * 13 / 15)
    assert m == pytest.approx(100 * (6 / 8 + 4 / 5 + 3 / 4) / 3)
    # logits are accepted too
    logits = torch.nn.functional.one_hot(pred, 3).permute(2, 0, 1).float()[None]
    assert segmentation_scores(logits, target[None], 3) == pytest.approx((81.25, miou))


# --------------------------------------------------------------------------- models
def test_dilated_backbone_has_output_stride_8_and_same_weights():
    """Dilating stages 3-4 (Sec 6.2's FCN) changes no weight and gives layer4 stride 8;
    ResNet-A's strided 1x1 and ResNet-D's pooled shortcut both lose their stride."""
    from harness.models import create_model
    from harness.scales import get_scale
    from harness.transfer.segmentation import dilate_resnet

    for name in ("resnet50_d", "resnet50"):
        m = create_model(name, **get_scale("local").model_kwargs_for(name), num_classes=10, in_chans=1)
        before = {k: v.clone() for k, v in m.state_dict().items()}
        dilate_resnet(m)
        after = m.state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert m.forward_features(torch.zeros(1, 1, 64, 64)).shape[-2:] == (8, 8)


def test_flipped_detection_batches_keep_tight_boxes():
    """Training batches (with random horizontal flips) still have every box tight around
    its pixels: something on each of its four edges, and nothing outside all boxes."""
    from harness.transfer import DEFAULTS
    from harness.transfer.detection import ComposedDetection

    settings = DEFAULTS["detection"]["smoke"] | {"train": 16, "test": 8, "batch_size": 8}
    data = ComposedDetection(settings, 1, None, torch.device("cpu"))
    for images, targets in data.train_batches(0, torch.Generator().manual_seed(0)):
        for img, t in zip(images, targets):
            img = img[0]
            covered = torch.zeros_like(img, dtype=torch.bool)
            for x0, y0, x1, y1 in t["boxes"].long().tolist():
                crop = img[y0:y1, x0:x1]
                assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
                covered[y0:y1, x0:x1] = True
            assert not img[~covered].any()
            assert (t["labels"] >= 1).all() and (t["labels"] <= 10).all()


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def smoke_backbone(tmp_path_factory):
    """A smoke-scale ResNet-50-D classification trial and its checkpoint."""
    from harness.recipe import named_recipe
    from harness.spec import TrialSpec
    from harness.trainer import TrainOptions, run_trial

    spec = TrialSpec(model="resnet50_d", recipe=named_recipe("efficient"), scale="smoke", seed=0)
    d = tmp_path_factory.mktemp("backbone")
    res = run_trial(spec, TrainOptions(checkpoint_dir=str(d), log=lambda m: None))
    assert res.status == "done"
    return spec, str(d / "ckpt.pt")


@pytest.mark.parametrize("task,keys", [pytest.param("detection", {"map"}, marks=needs_coco),
                                       ("segmentation", {"pixacc", "miou"})])
def test_run_transfer_smoke(task, keys, smoke_backbone, tmp_path):
    """A smoke-scale fine-tune through run_trial: done, metrics in [0, 100], history rows with
    exactly the store's keys (top1 = the main metric), a checkpoint that a rerun resumes
    (nothing retrained, same metrics)."""
    from harness.store import EPOCH_KEYS
    from harness.trainer import TrainOptions, run_trial

    bspec, ckpt = smoke_backbone
    spec = replace(bspec, task=task, backbone=bspec,
                   task_args=json.dumps({"smoke": {"train": 32, "test": 16, "canvas": 40}}))
    opts = TrainOptions(backbone_ckpt=ckpt, checkpoint_dir=str(tmp_path), log=lambda m: None)
    res = run_trial(spec, opts)
    assert res.status == "done", res.error
    assert set(res.metrics) == keys | {"applied"}
    assert all(0.0 <= res.metrics[k] <= 100.0 for k in keys)
    assert res.top1 is None and res.precision == "fp32" and res.epochs == 1
    assert [set(h) for h in res.history] == [set(EPOCH_KEYS)]
    main = "map" if task == "detection" else "miou"
    assert res.history[-1]["top1"] == res.metrics[main]
    assert res.dataset_fingerprint and Path(res.checkpoint).is_file()
    again = run_trial(spec, opts)
    assert {k: again.metrics[k] for k in keys} == pytest.approx({k: res.metrics[k] for k in keys})
    assert again.history == res.history and again.metrics["applied"] == res.metrics["applied"]


def test_a_fine_tune_stores_what_it_applied(smoke_backbone, tmp_path):
    """A fine-tuning trial's facts (harness.applied): backbone_rms is the root mean square of
    the checkpoint's parameter values (numpy over the file's tensors), decayed_1d counts
    every 1-D value of the trainable model (its SGD decays all of them), lr_mean is the
    cosine schedule's mean; a random-init backbone gives another backbone_rms."""
    from harness.trainer import TrainOptions, run_trial
    from harness.transfer import load_backbone, resolve_settings

    bspec, ckpt = smoke_backbone
    spec = replace(bspec, task="segmentation", backbone=bspec,
                   task_args=json.dumps({"smoke": {"train": 32, "test": 16, "canvas": 40}}))
    opts = TrainOptions(backbone_ckpt=ckpt, checkpoint_dir=str(tmp_path), log=lambda m: None)
    res = run_trial(spec, opts)
    facts = res.metrics["applied"]
    names = [n for n, _ in load_backbone(spec, opts, resolve_settings(spec),
                                         torch.device("cpu")).named_parameters()]
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
    values = np.concatenate([state[n].double().numpy().ravel() for n in names])
    assert facts["backbone_rms"] == pytest.approx(float(np.sqrt(np.mean(values ** 2))), rel=1e-9)
    assert facts["decayed_1d"] > 0 and facts["undecayed_nd"] == 0 and 0 < facts["lr_mean"] < 0.1
    rnd = replace(spec, task_args=json.dumps({"random_init": True, "smoke": {"train": 32, "test": 16,
                                                                             "canvas": 40}}))
    other = run_trial(rnd, TrainOptions(checkpoint_dir=str(tmp_path / "rnd"), log=lambda m: None))
    assert abs(other.metrics["applied"]["backbone_rms"] - facts["backbone_rms"]) > 1e-3


def test_random_init_needs_no_checkpoint_and_pretrained_does():
    """Without a backbone checkpoint a transfer trial fails fast with a one-line error,
    unless its settings ask for random_init; unknown settings are refused by name."""
    from harness.recipe import named_recipe
    from harness.spec import TrialSpec
    from harness.trainer import TrainOptions, run_trial
    from harness.transfer import load_backbone, resolve_settings

    b = TrialSpec(model="resnet50_d", recipe=named_recipe("efficient"), scale="smoke", seed=0)
    spec = replace(b, task="detection", backbone=b, task_args="{}")
    with pytest.raises(HarnessError, match="backbone checkpoint"):
        run_trial(spec, TrainOptions())
    rnd = replace(spec, task_args=json.dumps({"random_init": True}))
    model = load_backbone(rnd, TrainOptions(), resolve_settings(rnd), torch.device("cpu"))
    assert model.training and all(p.requires_grad for p in model.parameters())
    with pytest.raises(HarnessError, match="unknown detection setting"):
        resolve_settings(replace(spec, task_args=json.dumps({"local": {"epoch": 3}})))
    with pytest.raises(HarnessError, match="canvas"):
        resolve_settings(replace(spec, task_args=json.dumps({"canvas": 20})))
    both = replace(spec, task_args=json.dumps({"lr": 0.5, "epochs": 2, "smoke": {"lr": 0.1}}))
    assert resolve_settings(both)["lr"] == 0.1 and resolve_settings(both)["epochs"] == 2


# --------------------------------------------------------------------------- paper-scale loaders
def test_voc_and_ade_missing_paths_name_the_layout(tmp_path):
    """A missing VOC or ADE20K folder is a one-line HarnessError that names the layout."""
    from harness.transfer.voc_ade import ADEData, VOCData

    settings = {"root": str(tmp_path), "batch_size": 2, "data_seed": 0}
    with pytest.raises(HarnessError, match=r"VOCdevkit/VOC2007") as e:
        VOCData(settings, None, torch.device("cpu"))
    assert "\n" not in str(e.value)
    with pytest.raises(HarnessError, match=r"ADEChallengeData2016/images") as e:
        ADEData(settings, [0.0] * 3, [1.0] * 3, None, torch.device("cpu"))
    assert "\n" not in str(e.value)
    with pytest.raises(HarnessError, match="--data-root"):
        VOCData({"batch_size": 2}, None, torch.device("cpu"))


def _jpeg(path: Path, h: int, w: int) -> None:
    from torchvision.io import write_jpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    write_jpeg(torch.randint(0, 255, (3, h, w), dtype=torch.uint8), str(path))


def test_tiny_fake_voc_and_ade_layouts_load(tmp_path):
    """Two-image fake VOC and ADE20K trees: VOC boxes become 0-based exclusive xyxy with
    difficult objects dropped from training and flagged for evaluation; ADE labels map
    0 -> ignored (255) and k -> k - 1; training crops have the crop size."""
    from torchvision.io import write_png

    from harness.transfer.voc_ade import ADEData, VOCData

    voc = tmp_path / "VOCdevkit" / "VOC2007"
    for split, iid in (("trainval", "000001"), ("test", "000002")):
        (voc / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text(iid + "\n")
        _jpeg(voc / "JPEGImages" / f"{iid}.jpg", 40, 60)
        (voc / "Annotations").mkdir(exist_ok=True)
        (voc / "Annotations" / f"{iid}.xml").write_text(
            "<annotation><object><name>dog</name><difficult>0</difficult><bndbox><xmin>5</xmin>"
            "<ymin>6</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object><object><name>cat</name>"
            "<difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>10</ymax>"
            "</bndbox></object></annotation>")
    data = VOCData({"root": str(tmp_path), "batch_size": 1, "workers": 0}, None, torch.device("cpu"))
    (images, targets), = list(data.train_batches(0, torch.Generator().manual_seed(0)))
    assert images[0].shape == (3, 40, 60) and images[0].max() <= 1.0
    assert targets[0]["labels"].tolist() == [12]  # dog, difficult cat dropped
    box = targets[0]["boxes"][0].tolist()
    assert box in ([4.0, 5.0, 20.0, 30.0], [60 - 20.0, 5.0, 60 - 4.0, 30.0])  # maybe flipped
    (_, t_test), = list(data.eval_batches())
    assert t_test[0]["iscrowd"].tolist() == [0, 1]

    ade = tmp_path / "ADEChallengeData2016"
    for split in ("training", "validation"):
        _jpeg(ade / "images" / split / "a.jpg", 30, 50)
        (ade / "annotations" / split).mkdir(parents=True, exist_ok=True)
        ann = torch.zeros(1, 30, 50, dtype=torch.uint8)
        ann[0, :, 25:] = 7
        write_png(ann, str(ade / "annotations" / split / "a.png"))
    seg = ADEData({"root": str(tmp_path), "batch_size": 1, "workers": 0, "crop": 32,
                   "base_size": 24, "data_seed": 0}, [120.0] * 3, [60.0] * 3, None,
                  torch.device("cpu"))
    (x, y), = list(seg.train_batches(0, torch.Generator().manual_seed(0)))
    assert x.shape == (1, 3, 32, 32) and y.shape == (1, 32, 32)
    assert set(y.unique().tolist()) <= {6, 255}
    (xv, yv), = list(seg.eval_batches())
    assert xv.shape == (1, 3, 30, 50) and set(yv.unique().tolist()) == {6, 255}


# --------------------------------------------------------------------------- the tables
@pytest.mark.parametrize("table", ["paper_table8", "paper_table9"])
@pytest.mark.parametrize("scale", ["smoke", "local"])
def test_table_backbones_are_table6_resnet50d_trials(table, scale):
    """Rows 2-7's backbone trials hash exactly like Table 6's ResNet-50-D column (so the
    store reuses them), with the same teachers; B-standard is ResNet-50-B on the baseline
    recipe; every transfer trial starts from its row's backbone."""
    from harness.experiments.plan import load_experiment, make_plan
    from harness.recipe import named_recipe
    from harness.scales import get_scale

    sc = get_scale(scale)
    plan = make_plan(load_experiment(table), sc)
    t6 = make_plan(load_experiment("paper_table6"), sc)
    col = plan.experiment.columns[0].label
    rows = [r.label for r in plan.experiment.rows]
    assert rows[0] == "B-standard" and len(rows) == 7
    for row, row6 in zip(rows[1:], [r.label for r in t6.experiment.rows]):
        mine = [t.backbone.hash for t in plan.trials[(row, col)]]
        assert mine == [t.hash for t in t6.trials[(row6, "ResNet-50-D")]], row
        assert [t.hash for t in plan.backbones if t.row == row] == mine
    assert {t.hash for t in plan.teachers} <= {t.hash for t in t6.teachers}
    b = plan.trials[("B-standard", col)][0]
    assert b.backbone.model == "resnet50_b" and b.backbone.recipe == named_recipe("baseline")
    assert all(t.task == plan.experiment.kind for ts in plan.trials.values() for t in ts)

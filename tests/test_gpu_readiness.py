"""What the CUDA path needs, checked on a CPU: no host reads in a training step, constants
cached, the decode path's stream discipline and vectorised crops, per-model input size,
TF32 chosen and recorded, data-parallel shards, uint8 workers. The numbers of the CPU path
stay bit-identical to the code before these changes (a frozen copy of it is at the end).
"""
from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.batches import FolderBatches, InMemoryBatches, aug_config, input_size
from harness.data import AugConfig, load_in_memory, open_imagefolder
from harness.data import augment as A
from harness.data import decode as D
from harness.data.imagefolder import GlobalBatches, default_workers
from harness.provenance import recorded_precision
from harness.recipe import named_recipe
from harness.scales import LOCAL, PAPER, SMOKE
from harness.spec import TrialSpec
from harness.trial import TrainOptions
from tricks.mixed_precision import set_tf32

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def _load_bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


HostReads = _load_bench("sync_check").HostReads
CONFIGS = {  # the scales' augmentation, plus the paper's on non-square images
    "smoke": (aug_config(SMOKE, None), (3, 16, 16)),
    "local": (AugConfig(out_size=28, eval_resize=28, area=(1.0, 1.0), color_jitter=0.0, pca_std=0.0,
                        mean=(72.94,), std=(90.02,)), (1, 28, 28)),
    "paper": (aug_config(PAPER, None), (3, 40, 56)),
    "paper_fallback": (AugConfig(out_size=12, area=(0.99, 1.0), ratio=(3.0, 4.0)), (3, 20, 20)),
}


def _images(shape, n=24, seed=5) -> torch.Tensor:
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# ---- bit-identical CPU path ----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_batched_augmentation_is_bit_identical_to_the_code_before(name):
    """The same uint8 batch and generator seed give the very same tensor as fcd0834's code (frozen
    below), and leave the generator in the same state: `smoke`/`local` results do not move."""
    cfg, shape = CONFIGS[name]
    x = _images(shape)
    for seed in range(3):
        g_old, g_new = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        old = _fcd0834_batch_augment(x, cfg, g_old)
        new = A.batch_augment(x, cfg, g_new)
        assert torch.equal(old, new)
        assert torch.equal(g_old.get_state(), g_new.get_state())


def test_paper_scale_spec_hashes_do_not_move():
    """Inception-V3's paper input size comes from the model, not from a new scale or recipe
    field: the hashes are those of fcd0834."""
    hashes = {("inception_v3", "baseline"): "2f65c7aafc83e851", ("inception_v3", "efficient"): "12836e785b41d3af",
              ("resnet50_d", "baseline"): "ad2e66f55a70ebfe", ("resnet50_d", "efficient"): "201aa1b3e1b0a2aa"}
    for (model, recipe), h in hashes.items():
        assert TrialSpec(model, named_recipe(recipe), "paper", 0).hash == h


# ---- no host reads, constants cached ------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_augmentation_reads_nothing_back_to_the_host(name):
    """After a first call (which builds the cached constants), a batch's augmentation is only
    queued ops: no item()/bool()/nonzero, no matrix inverse, no tensor built from Python data
    (each of those would stall a GPU every step)."""
    cfg, shape = CONFIGS[name]
    x = _images(shape)
    g = torch.Generator().manual_seed(0)
    A.batch_augment(x, cfg, g)
    A.eval_batch(x, cfg)
    with HostReads() as reads:
        A.batch_augment(x, cfg, g)
        A.eval_batch(x, cfg)
    assert dict(reads.found) == {}


def test_the_detector_sees_the_old_codes_syncs():
    """The check can fail: fcd0834's augmentation (bool() of the fallback mask, constants from
    Python lists on every batch, a matrix inverse) is caught."""
    cfg, shape = CONFIGS["paper"]
    with HostReads() as reads:
        _fcd0834_batch_augment(_images(shape), cfg, torch.Generator().manual_seed(0))
    assert reads.found["_local_scalar_dense"] >= 1 and reads.found["lift_fresh"] >= 4
    assert reads.found["linalg_inv"] + reads.found["linalg_inv_ex"] >= 1


def test_constants_are_built_once_per_device_and_dtype():
    dev = torch.device("cpu")
    assert A._consts(dev, torch.float64) is A._consts(dev, torch.float64)
    assert A._consts(dev, torch.float64) is not A._consts(dev, torch.float32)
    cfg = AugConfig()
    assert A._mean_std(cfg, 3, dev)[0] is A._mean_std(cfg, 3, "cpu")[0]
    k = A._consts(dev, torch.float64)
    assert torch.allclose(k.yiq_inv @ k.yiq, torch.eye(3, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("recipe", ["efficient", "label_smoothing", "baseline"])
def test_a_training_step_has_no_host_reads(monkeypatch, recipe):
    """The trainer's step (next batch + train_step), fp16 taking the CUDA branches (scaled
    backward, fused SGD with found_inf), as bench/sync_check.py runs it on a GPU too."""
    monkeypatch.setenv("HARNESS_CPU_FP16", "1")
    row = _load_bench("sync_check").check("cpu", recipe, steps=3, scale="smoke", model="resnet18", warmup=1)
    assert row["ok"], row


# ---- decode path ---------------------------------------------------------------------------
def _sizes_images(n=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    sizes = [(12 + 7 * k % 41, 20 + 11 * k % 37) for k in range(n)] + [(160, 150), (6, 90)]
    return [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for h, w in sizes]


@pytest.mark.parametrize("cfg", [AugConfig(out_size=16), AugConfig(out_size=20, area=(0.5, 1.0)),
                                 AugConfig(out_size=8, ratio=(3.0, 4.0))], ids=["paper", "area50", "fallback"])
def test_decode_crops_are_vectorised_and_match_one_image_at_a_time(cfg):
    """train_crops samples all boxes in one draw (the same draws as one image at a time from a
    CPU generator) and resizes per size group: the old per-image loop's crops, up to float
    rounding, the generator left in the same state, and no host reads."""
    images = _sizes_images()
    g_ref, g_new = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ref = torch.cat([A.resized_crops(im[None], A.sample_crop_boxes(1, im.shape[-2], im.shape[-1], cfg, g_ref),
                                     cfg.out_size) for im in images])
    D.train_crops(images, cfg, torch.Generator().manual_seed(0))  # warm the caches
    with HostReads("cpu") as reads:
        got = D.train_crops(images, cfg, g_new)
    assert torch.allclose(got, ref, atol=1e-4, rtol=0)
    assert torch.equal(g_ref.get_state(), g_new.get_state())
    # host data (the image sizes, the size groups' order) reaches the device in two copies
    # per batch (pinned, non-blocking on CUDA), whatever the batch size
    assert set(reads.found) <= {"lift_fresh"} and reads.found["lift_fresh"] <= 2


def test_per_image_sizes_give_the_scalar_samplers_boxes():
    """The vectorised sampler with size tensors = the one-size sampler, row by row, fallback
    included (tall images with a wide ratio range: every try fails)."""
    for cfg, (h, w) in ((AugConfig(), (30, 50)), (AugConfig(area=(0.99, 1.0), ratio=(3.0, 4.0)), (40, 10))):
        a = A.sample_crop_boxes(64, h, w, cfg, torch.Generator().manual_seed(1))
        b = A.sample_crop_boxes(64, torch.full((64,), h), torch.full((64,), w), cfg, torch.Generator().manual_seed(1))
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_size_groups_bound_the_padded_canvas():
    """ImageNet's common sizes share one canvas; a huge photo does not inflate it: the canvases
    together hold at most twice the batch's pixels."""
    assert A.size_groups([(375, 500)] * 5 + [(500, 375)] * 3 + [(333, 500)]) == [list(range(9))]
    sizes = [(375, 500)] * 5 + [(500, 375)] * 3 + [(3000, 4000)] + [(64, 80)] * 20
    groups = A.size_groups(sizes)
    assert sorted(k for g in groups for k in g) == list(range(len(sizes)))
    canvas = sum(len(g) * (max(sizes[k][0] for k in g) + 1) * (max(sizes[k][1] for k in g) + 1) for g in groups)
    assert canvas <= 2 * sum(h * w for h, w in sizes) and len(groups) <= 3


def test_device_decode_runs_on_a_side_stream_that_waits_and_records(monkeypatch):
    """The order that makes nvJPEG safe (pytorch/vision PR 9606): side stream waits for the
    caller's stream, decode with the side stream current, caller's stream waits for the side
    stream, every output record_stream-ed onto the caller's stream."""
    log = []

    class FakeStream:
        def __init__(self, name):
            self.name = name

        def wait_stream(self, other):
            log.append(f"{self.name}.wait({other.name})")

    class FakeTensor:
        device = torch.device("cuda")

        def record_stream(self, s):
            log.append(f"record({s.name})")

    side, main = FakeStream("side"), FakeStream("main")
    current = [main]

    class StreamCtx:
        def __init__(self, s):
            self.s = s

        def __enter__(self):
            current.append(self.s)

        def __exit__(self, *exc):
            current.pop()

    monkeypatch.setattr(D, "_side_stream", lambda device: side)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: current[-1])
    monkeypatch.setattr(torch.cuda, "stream", StreamCtx)

    def decode():
        log.append(f"decode on {current[-1].name}")
        return [FakeTensor(), FakeTensor()]

    out = D.on_side_stream(decode, torch.device("cuda"))
    assert len(out) == 2
    assert log == ["side.wait(main)", "decode on side", "main.wait(side)", "record(main)", "record(main)"]


# ---- per-model input size -------------------------------------------------------------------
def test_inception_trains_at_299_and_evaluates_from_342_at_the_paper_scale():
    """Sec 2.1/4 and docs/ledger.md: Inception-V3 at 299 px (resize 342), the others at 224/256;
    the miniature scales keep their own sizes for every model."""
    assert input_size(PAPER, "inception_v3") == (299, 342)
    assert input_size(PAPER, "resnet50_d") == (224, 256)
    cfg = aug_config(PAPER, None, "inception_v3")
    assert (cfg.out_size, cfg.eval_resize) == (299, 342)
    for scale in (SMOKE, LOCAL):
        assert input_size(scale, "inception_v3") == (scale.image_size, scale.eval_resize)


def test_imagefolder_batches_for_inception_are_299_px_at_the_paper_scale(tmp_path):
    """make_batches(model=...) (as ClassificationTask calls it): Inception-V3's training and
    evaluation batches are 299 px, a ResNet's 224, from the same folder and scale."""
    from harness.batches import make_batches

    root = _folder(tmp_path / "d")
    for model, px in (("inception_v3", 299), ("resnet50_d", 224)):
        for decode in ("workers", "device"):
            src = make_batches(str(root), PAPER, 4, torch.device("cpu"), 0, decode=decode, loader_workers=0,
                               model=model)
            x, _ = next(src.train_epoch(0, torch.Generator().manual_seed(0)))
            xe, _ = next(iter(src.eval_batches()))
            assert x.shape[-2:] == xe.shape[-2:] == (px, px)


# ---- TF32 -----------------------------------------------------------------------------------
def test_tf32_is_chosen_explicitly_and_recorded(monkeypatch):
    """Off by default (the paper's FP32 baseline is IEEE fp32); both torch TF32 APIs stay
    readable after set_tf32; an fp32 trial with TF32 on an Ampere+ GPU records 'tf32'."""
    assert TrainOptions().tf32 is False
    try:
        for on in (True, False):
            set_tf32(on)
            assert torch.backends.cudnn.allow_tf32 is on and torch.backends.cuda.matmul.allow_tf32 is on
            assert torch.backends.cuda.matmul.fp32_precision == ("tf32" if on else "ieee")
    finally:
        set_tf32(False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    cuda = torch.device("cuda")
    assert recorded_precision("fp32", cuda, tf32=True) == "tf32"
    assert recorded_precision("fp32", cuda, tf32=False) == "fp32"
    assert recorded_precision("fp16", cuda, tf32=True) == "fp16"
    assert recorded_precision("fp32", torch.device("cpu"), tf32=True) == "fp32"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    assert recorded_precision("fp32", cuda, tf32=True) == "fp32"  # a V100 has no TF32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_trial_sets_cudnn_benchmark_and_tf32_off():
    from harness.trainer import run_trial

    set_tf32(True)
    res = run_trial(TrialSpec("resnet18", named_recipe("baseline"), "smoke", 0),
                    TrainOptions(device="cuda", log=lambda m: None))
    assert res.status == "done" and res.precision == "fp32"
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.allow_tf32


# ---- data-parallel shards -------------------------------------------------------------------
def _synthetic_batches(cfg: AugConfig, world=1, rank=0) -> InMemoryBatches:
    tr = load_in_memory("synthetic", "train", subset=96, image_size=20)
    te = load_in_memory("synthetic", "test", subset=50, image_size=20)
    src = InMemoryBatches(tr, te, cfg, 24, torch.device("cpu"), eval_batch_size=16)
    src.shard(rank, world)
    return src


@pytest.mark.parametrize("world", [2, 3])
def test_data_parallel_workers_augment_only_their_rows_and_together_the_whole_batch(world):
    """Each worker augments its rows rank::world of each global batch; interleaved, the
    workers' batches are the single process's, bit for bit; evaluation shards cover the
    split once."""
    cfg = AugConfig(out_size=16)
    one = list(_synthetic_batches(cfg).train_epoch(0, torch.Generator().manual_seed(0)))
    parts = [list(_synthetic_batches(cfg, world, r).train_epoch(0, torch.Generator().manual_seed(0)))
             for r in range(world)]
    for b, (x, y) in enumerate(one):
        for r in range(world):
            xr, yr = parts[r][b]
            assert len(yr) == len(range(r, 24, world))
            assert torch.equal(xr, x[r::world]) and torch.equal(yr, y[r::world])
    ev_one = torch.cat([y for _, y in _synthetic_batches(cfg).eval_batches()])
    ev = [torch.cat([y for _, y in _synthetic_batches(cfg, world, r).eval_batches()]) for r in range(world)]
    assert sum(len(e) for e in ev) == len(ev_one) == 50
    assert sorted(torch.cat(ev).tolist()) == sorted(ev_one.tolist())


def test_global_batches_split_each_batch_between_workers():
    one = list(GlobalBatches(50, 8, shuffle=True, drop_last=True, seed=4))
    two = [list(GlobalBatches(50, 8, shuffle=True, drop_last=True, seed=4, rank=r, world=2)) for r in (0, 1)]
    assert len(one) == 6 and all(len(b) == 8 for b in one)
    for b, batch in enumerate(one):
        assert two[0][b] == batch[0::2] and two[1][b] == batch[1::2]
    assert sum(map(len, GlobalBatches(50, 8, shuffle=False, drop_last=False))) == 50


def _two_rank_eval(rank: int, world: int, path: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)
    try:
        from harness.distributed import all_gather_cat, all_sum

        s = all_sum(torch.tensor([rank + 1.0, 10.0 * rank]))
        g = all_gather_cat(torch.arange(rank + 2, dtype=torch.float32) + 100 * rank)
        torch.save({"sum": s, "gather": g}, f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


def test_sharded_evaluation_counts_are_summed_over_two_gloo_workers(tmp_path):
    """harness.distributed: counts summed, per-worker gap lists (different lengths) gathered."""
    import torch.multiprocessing as mp

    mp.start_processes(_two_rank_eval, args=(2, str(tmp_path / "store"), str(tmp_path / "out")),
                       nprocs=2, join=True, start_method="fork")
    for r in (0, 1):
        got = torch.load(f"{tmp_path / 'out'}.{r}")
        assert got["sum"].tolist() == [3.0, 10.0]
        assert got["gather"].tolist() == [0.0, 1.0, 100.0, 101.0, 102.0]


def _ddp_trial(rank: int, world: int, path: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)
    try:
        from harness.trainer import run_trial

        res = run_trial(TrialSpec("resnet18", named_recipe("baseline"), "smoke", 0),
                        TrainOptions(device="cpu", threads=1, log=lambda m: None))
        torch.save({"status": res.status, "top1": res.top1, "top5": res.top5, "workers": res.workers,
                    "gap_n": res.metrics["logit_gap"]["n"]}, f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


def test_a_two_worker_gloo_trial_shards_training_and_evaluation(tmp_path):
    """A real data-parallel trial (2 gloo processes, no Ray): each worker trains on its rows and
    scores its half of the test split; both report the same top-1/top-5 over all 128 test
    images, and Figure 4's gaps cover every test image."""
    import torch.multiprocessing as mp

    mp.start_processes(_ddp_trial, args=(2, str(tmp_path / "store"), str(tmp_path / "out")), nprocs=2,
                       join=True, start_method="fork")
    r0, r1 = (torch.load(f"{tmp_path / 'out'}.{r}") for r in (0, 1))
    assert r0 == r1 and r0["status"] == "done" and r0["workers"] == 2
    assert r0["gap_n"] == 128


# ---- ImageFolder workers --------------------------------------------------------------------
def _folder(root: Path, n=6) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for k in range(n):
                arr = rng.integers(0, 256, size=(24 + 3 * k, 30, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / cls / f"{k}.jpg")
    return root


def test_imagefolder_workers_ship_uint8_crops_and_the_device_finishes_the_pipeline(tmp_path):
    """Workers: decode + random-resized crop only, uint8 (a quarter of float32's bytes); the
    trainer's batches are then flipped/jittered/normalised on the device, float32."""
    root = _folder(tmp_path / "d")
    cfg = AugConfig(out_size=16, eval_resize=18)
    x, y = next(iter(open_imagefolder(root, "train").loader(4, True, cfg, 0, 0, crops_only=True)))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 16, 16)
    src = FolderBatches(str(root), cfg, 4, torch.device("cpu"), workers=0)
    xb, yb = next(src.train_epoch(0, torch.Generator().manual_seed(0)))
    assert xb.dtype == torch.float32 and xb.shape == (4, 3, 16, 16) and abs(float(xb.mean())) < 3
    xe = torch.cat([x for x, _ in src.eval_batches()])
    assert xe.shape == (12, 3, 16, 16) and xe.dtype == torch.float32


def test_default_workers_follow_the_cores_this_process_may_use(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers() == max(1, cores - 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert default_workers() == 15
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_workers() == 3
    assert TrainOptions().loader_workers is None  # None = default_workers()


# ---- fcd0834's batched augmentation, frozen (the reference for bit-identity) ----------------
def _fcd0834_mean_std(cfg, channels, device):
    mean, std = cfg.mean, cfg.std
    if len(mean) == 1 and channels > 1:
        mean, std = mean * channels, std * channels
    m = torch.tensor(mean, device=device, dtype=torch.float32).view(1, channels, 1, 1)
    s = torch.tensor(std, device=device, dtype=torch.float32).view(1, channels, 1, 1)
    return m, s


def _fcd0834_color_matrices(b, s, h):
    dt, dev = b.dtype, b.device
    eye = torch.eye(3, dtype=dt, device=dev)
    w = torch.tensor(A.LUMA, dtype=dt, device=dev)
    grey = torch.ones(3, 1, dtype=dt, device=dev) @ w.view(1, 3)
    sat = s.view(-1, 1, 1) * eye + (1 - s).view(-1, 1, 1) * grey
    t = torch.tensor(A._YIQ, dtype=dt, device=dev)
    t_inv = torch.linalg.inv(t)
    theta = (h - 1.0) * math.pi
    c, sn = torch.cos(theta), torch.sin(theta)
    rot = torch.zeros(b.shape[0], 3, 3, dtype=dt, device=dev)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = c, -sn
    rot[:, 2, 1], rot[:, 2, 2] = sn, c
    return b.view(-1, 1, 1) * ((t_inv @ rot @ t) @ sat)


def _fcd0834_boxes(n, height, width, cfg, generator):
    area = float(height * width)
    lo, hi = math.log(cfg.ratio[0]), math.log(cfg.ratio[1])
    u = torch.rand((n, 10, 4), generator=generator, dtype=torch.float64)
    target = area * (cfg.area[0] + (cfg.area[1] - cfg.area[0]) * u[..., 0])
    aspect = torch.exp(lo + (hi - lo) * u[..., 1])
    w_try = torch.round(torch.sqrt(target * aspect)).to(torch.int64)
    h_try = torch.round(torch.sqrt(target / aspect)).to(torch.int64)
    ok = (w_try > 0) & (w_try <= width) & (h_try > 0) & (h_try <= height)
    first = torch.argmax(ok.to(torch.int8), dim=1, keepdim=True)
    any_ok = ok.any(dim=1)
    h = torch.gather(h_try, 1, first).squeeze(1)
    w = torch.gather(w_try, 1, first).squeeze(1)
    ui = torch.gather(u[..., 2], 1, first).squeeze(1)
    uj = torch.gather(u[..., 3], 1, first).squeeze(1)
    i = torch.floor(ui * (height - h + 1).to(ui.dtype)).to(torch.int64).clamp_(min=0)
    j = torch.floor(uj * (width - w + 1).to(uj.dtype)).to(torch.int64).clamp_(min=0)
    i = torch.minimum(i, (height - h).clamp(min=0))
    j = torch.minimum(j, (width - w).clamp(min=0))
    if not bool(any_ok.all()):
        in_ratio = float(width) / float(height)
        if in_ratio < min(cfg.ratio):
            fw, fh = width, int(round(width / min(cfg.ratio)))
        elif in_ratio > max(cfg.ratio):
            fh, fw = height, int(round(height * max(cfg.ratio)))
        else:
            fw, fh = width, height
        fi, fj = (height - fh) // 2, (width - fw) // 2
        h = torch.where(any_ok, h, torch.full_like(h, fh))
        w = torch.where(any_ok, w, torch.full_like(w, fw))
        i = torch.where(any_ok, i, torch.full_like(i, fi))
        j = torch.where(any_ok, j, torch.full_like(j, fj))
    return i, j, h, w


def _fcd0834_batch_augment(x, cfg, generator):
    bsz, ch, height, width = x.shape
    boxes = _fcd0834_boxes(bsz, height, width, cfg, generator)
    if A.whole_image_crops(height, width, cfg):
        out = x.to(torch.float32)
    else:
        out = A.resized_crops(x, boxes, cfg.out_size)
    flip = torch.rand((bsz,), generator=generator, dtype=torch.float64) < cfg.flip_p
    if cfg.flip_p > 0:
        out = torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)
    if cfg.color_jitter > 0:
        lo, span = 1.0 - cfg.color_jitter, 2.0 * cfg.color_jitter
        coef = lo + span * torch.rand((bsz, 3), generator=generator, dtype=torch.float64)
        if ch == 3:
            mats = _fcd0834_color_matrices(coef[:, 0], coef[:, 1], coef[:, 2]).to(torch.float32)
            out = torch.einsum("bij,bjhw->bihw", mats, out)
        else:
            out = out * coef[:, 0].to(torch.float32).view(-1, 1, 1, 1)
        out = out.clamp_(0.0, 255.0)
    if cfg.pca_std > 0 and ch == 3:
        alpha = torch.randn((bsz, 3), generator=generator, dtype=torch.float64) * cfg.pca_std
        vec = torch.tensor(A.PCA_EIGVEC, dtype=alpha.dtype)
        val = torch.tensor(A.PCA_EIGVAL, dtype=alpha.dtype)
        out = out + ((alpha * val) @ vec.T).to(dtype=torch.float32).view(bsz, 3, 1, 1)
    m, s = _fcd0834_mean_std(cfg, ch, x.device)
    return (out - m) / s

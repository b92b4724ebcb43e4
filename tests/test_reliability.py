"""Reliability: crashed trials resume bitwise from their checkpoints, diverging trials are
recorded as such, and a trial's numbers do not depend on what else runs beside it.

See docs/reliability.md for the promises these tests back.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from conftest import KILL_AFTER_EPOCH, cli_env
from harness.recipe import named_recipe
from harness.scales import SCALES, SMOKE
from harness.spec import TrialSpec
from harness.store import Store
from harness.trainer import TrainOptions, run_trial

pytestmark = pytest.mark.usefixtures("ray_down_after_module")

TIMING = ("epoch_s", "img_per_s")  # the only fields allowed to differ between two runs


def _numbers(history: list[dict]) -> list[dict]:
    """A history without its wall-clock fields (loss, lr, top1, top5 per epoch)."""
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def _quiet(threads: int = 1, **kw) -> TrainOptions:
    return TrainOptions(threads=threads, log=lambda m: None, **kw)


@pytest.fixture
def multi_epoch_scale():
    """A test-only scale: smoke with 3x the epochs (120 paper epochs -> 3, mixup's 200 -> 5)."""
    scale = replace(SMOKE, name="smoke_x3", epoch_factor=3 / 120)
    SCALES[scale.name] = scale
    yield scale
    del SCALES[scale.name]


@pytest.fixture
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


class _Stop(Exception):
    pass


def test_resume_from_checkpoint_is_bitwise_identical(tmp_path, multi_epoch_scale, keep_threads):
    """Without Ray: a trial stopped after epoch 2 and resumed from its checkpoint ends with
    exactly (bitwise, CPU) the loss/lr/top1/top5 history of an uninterrupted run.

    Mixup + cosine + warmup + label smoothing, so the model, optimizer, schedule position,
    torch RNG and the data generator must all be restored for the numbers to agree.
    """
    spec = TrialSpec(model="resnet50_d", recipe=named_recipe("mixup"), scale=multi_epoch_scale.name, seed=3)
    assert multi_epoch_scale.epochs(spec.recipe) == 5
    full = run_trial(spec, _quiet(checkpoint_dir=str(tmp_path / "full")))
    assert full.status == "done" and full.epochs == 5

    def stop_after_2(row):
        if row["epoch"] == 2:
            raise _Stop

    with pytest.raises(_Stop):
        run_trial(spec, _quiet(checkpoint_dir=str(tmp_path / "resumed")), on_epoch=stop_after_2)
    ckpt = torch.load(tmp_path / "resumed" / "ckpt.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    resumed_epochs: list[int] = []
    resumed = run_trial(spec, _quiet(checkpoint_dir=str(tmp_path / "resumed")),
                        on_epoch=lambda row: resumed_epochs.append(row["epoch"]))
    assert resumed_epochs == [3, 4, 5], "the resumed run must not redo epochs 1-2"
    assert resumed.status == "done" and resumed.epochs == 5
    assert _numbers(resumed.history) == _numbers(full.history)
    assert (resumed.top1, resumed.top5) == (full.top1, full.top5)


@pytest.mark.slow
def test_killed_ray_worker_is_retried_from_checkpoint(mixed_ray_run, keep_threads):
    """A Ray trial whose worker is SIGKILLed right after its epoch-2 checkpoint is retried by
    Tune (max_failures) and resumes from that checkpoint; its stored result equals an
    uninterrupted run of the same spec bitwise (CPU, one thread each)."""
    run = mixed_ray_run
    assert run.marker.exists(), "the kill hook never fired: " + "\n".join(run.log[-5:])
    assert f"after epoch {KILL_AFTER_EPOCH}" in run.marker.read_text()
    spec = run.spec("killed")
    with Store(run.store, readonly=True) as st:
        rec = st.get_trial(spec.hash)
    assert rec is not None and rec.status == "done", rec and rec.error
    assert rec.epochs == 3
    # the trial's log shows two starts: the killed attempt and the retry
    log = (run.results / "logs" / f"{spec.hash}.log").read_text()
    assert log.count("== ") == 2, log

    ref = run_trial(spec, _quiet())  # uninterrupted, in this process, no Ray
    stored = [{k: r[k] for k in ("epoch", "loss", "lr", "top1", "top5")} for r in rec.epochs_rows]
    assert stored == _numbers(ref.history)
    assert (rec.top1, rec.top5) == (ref.top1, ref.top5)


@pytest.mark.slow
def test_diverging_trial_is_stored_as_diverged_and_neighbours_finish(mixed_ray_run):
    """A recipe whose loss turns NaN (base_lr 1e6) is stored with status 'diverged' and a
    'non-finite loss' message; the other trials of the same run still finish."""
    run = mixed_ray_run
    with Store(run.store, readonly=True) as st:
        df = st.trials_df()
    status = {r.row_label: r.status for r in df.itertuples()}
    errors = {r.row_label: r.error for r in df.itertuples()}
    assert status["diverges"] == "diverged"
    assert "non-finite loss" in errors["diverges"]
    assert status["plain"] == "done" and status["killed"] == "done"
    assert run.summary.diverged == 1 and run.summary.done == 2


@pytest.mark.slow
def test_same_spec_same_numbers_alone_or_beside_another(tmp_path, keep_threads):
    """Determinism on CPU: one spec and seed give identical per-epoch numbers when trained
    alone (in this process) and when two copies train at the same time in two processes."""
    recipe = named_recipe("baseline").replace(epochs=360, label_smoothing=0.1)
    spec = TrialSpec(model="resnet50_d", recipe=recipe, scale="smoke", seed=7)
    alone = _numbers(run_trial(spec, _quiet()).history)
    assert len(alone) == 3
    code = (
        "import json\n"
        "from harness.recipe import named_recipe\n"
        "from harness.spec import TrialSpec\n"
        "from harness.trainer import TrainOptions, run_trial\n"
        "r = named_recipe('baseline').replace(epochs=360, label_smoothing=0.1)\n"
        "res = run_trial(TrialSpec(model='resnet50_d', recipe=r, scale='smoke', seed=7),\n"
        "                TrainOptions(threads=1, log=lambda m: None))\n"
        "print(json.dumps(res.history))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=cli_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    beside = [_numbers(json.loads(out.strip().splitlines()[-1])) for out, _ in outs]
    assert beside[0] == alone
    assert beside[1] == alone

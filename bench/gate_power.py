"""How often the regression gate fails a night with nothing changed, and how often it
catches a change (docs/nightly.md, "What the gate catches"). Results: bench/RESULTS.md.

Nights are resampled and judged by the gate's own decision loop
(:func:`harness.regress.run_night`: Holm over every check, floors, the rerun band with its
looks and budget), so the figures are the gate's, not a model of it.

  # cells drawn from a normal model: DESIGN.md's seed SDs (ResNet-50-D 0.3, MobileNet 0.9,
  # Inception-V3 1.0 points), means and speeds of the committed Table 6 baseline
  python bench/gate_power.py --synthetic [--base-seeds 2] [--nights 600] [--detect-nights 60] [--write-results]

  # a bank of real runs: a store holding >= 8 seeds a cell of the table, e.g. made with
  #   python -m harness run paper_table6 --scale local --seeds 8 --store results/bank.sqlite
  python bench/gate_power.py --store results/bank.sqlite [--table paper_table6 --scale local]

  # real bugs injected into the training stack, each trained end to end in its own
  # subprocess and gated against a clean baseline of the same seeds
  python bench/gate_power.py --bugs --scale local [--bug NAME ...] [--work DIR]
  python bench/gate_power.py --bugs --scale smoke --table bench/gate_bugs.yaml --seeds 1
  python bench/gate_power.py --bugs --scale local --table bench/gate_bugs_transfer.yaml \
      --bug backbone_not_loaded --no-speed   # a fine-tune from a random backbone

A night: the baseline side has ``--base-seeds`` seeds a cell, today ``--now-seeds`` (two
disjoint seed sets of the same cells: a null night); a rerun adds seeds to the cells the
gate asks for, up to ``--max-seeds``, within ``--budget`` trials. Injected changes shift
today's values (and the seeds a rerun adds): every cell of one model by -0.5 or -1.0
points; one trick's delta to 0 (its row and the rows stacked on it lose the row's delta over
its parent); one cell by -1.0 or -2.0 points (the issue's measure, beside the old rule
``now < base - max(1, 3 pooled SD)``). Last stdout lines: one JSON object per scenario.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import provenance  # noqa: E402
from harness.experiments import load_experiment, make_plan  # noqa: E402
from harness.regress import (THRESHOLDS, Looks, column_tricks, load_baseline,  # noqa: E402
                             parents_of, run_night, select_entry)
from harness.regress.gate import models_of  # noqa: E402
from harness.scales import get_scale  # noqa: E402

SEED_SD = {"ResNet-50-D": 0.3, "MobileNet": 0.9, "Inception-V3": 1.0}  # DESIGN.md, local
TRIAL_SPEED_CV = 0.08  # seed-to-seed spread of a local trial's images/s (shared 2-core CPU)
EPOCH_SPEED_CV = 0.02  # epoch-to-epoch within a trial
DEVICE = "cpu:synthetic [avx2] AVX2 x1 | fp32=ieee"
MARK = "<!-- gate_power {}: {} -->"  # one section per configuration in bench/RESULTS.md
Key = tuple[str, str]


# ---- sources of trials ------------------------------------------------------------------
@dataclasses.dataclass
class Synthetic:
    """Cells of a normal model: mean and speed from a baseline file, SD per model."""

    means: dict[Key, float]
    speeds: dict[Key, float]
    epochs: dict[Key, int]
    rng: np.random.Generator

    def draw(self, key: Key, seed: int, shift: float) -> dict[str, Any]:
        sd = SEED_SD.get(key[1], 0.5)
        speed = self.speeds[key] * (1 + TRIAL_SPEED_CV * self.rng.standard_normal())
        eps = [speed * (1 + EPOCH_SPEED_CV * self.rng.standard_normal()) for _ in range(self.epochs[key])]
        return {"seed": seed, "status": "done", "top1": self.means[key] + sd * self.rng.standard_normal() - shift,
                "img_per_s": float(np.mean(eps)), "img_per_s_epochs": eps, "device": DEVICE,
                "precision": "fp32", "requested_precision": "fp16", "torch_version": "synthetic"}

    def night(self, nb: int, nn: int, shift: dict[Key, float]):
        base = {k: [self.draw(k, s, 0.0) for s in range(nb)] for k in self.means}
        now = {k: [self.draw(k, 100 + s, shift.get(k, 0.0)) for s in range(nn)] for k in self.means}
        return base, now, lambda key, seed: self.draw(key, seed, shift.get(key, 0.0))


@dataclasses.dataclass
class Bank:
    """Real trials: per cell every done seed of a store, shuffled into disjoint sets."""

    cells: dict[Key, list[dict[str, Any]]]
    rng: np.random.Generator

    @property
    def means(self) -> dict[Key, float]:
        return {k: float(np.mean([t["top1"] for t in ts])) for k, ts in self.cells.items()}

    def night(self, nb: int, nn: int, shift: dict[Key, float]):
        order = {k: list(self.rng.permutation(len(ts))) for k, ts in self.cells.items()}
        base = {k: [self.cells[k][i] for i in order[k][:nb]] for k in self.cells}
        now = {k: [_shifted(self.cells[k][i], shift.get(k, 0.0)) for i in order[k][nb:nb + nn]]
               for k in self.cells}
        pools = {k: [self.cells[k][i] for i in order[k][nb + nn:]] for k in self.cells}

        def draw(key: Key, seed: int) -> dict[str, Any] | None:
            return _shifted(pools[key].pop(), shift.get(key, 0.0)) if pools[key] else None
        return base, now, draw


def bank_summary(bank: Bank) -> str:
    """Seeds a cell, trials and the machine classes the bank's trials ran on."""
    n = [len(ts) for ts in bank.cells.values()]
    devices: dict[str, int] = {}
    for ts in bank.cells.values():
        for t in ts:
            devices[str(t.get("device"))] = devices.get(str(t.get("device")), 0) + 1
    where = "; ".join(f"{d} ({k} trials)" for d, k in sorted(devices.items(), key=lambda x: -x[1]))
    return f"{min(n)}-{max(n)} seeds a cell, {sum(n)} trials, run on: {where}"


def _shifted(t: dict[str, Any], shift: float) -> dict[str, Any]:
    return dict(t, top1=t["top1"] - shift) if shift else t


def synthetic_source(table: str, scale: str, rng: np.random.Generator) -> Synthetic:
    exp = load_experiment(table)
    sc = get_scale(scale)
    plan = make_plan(exp, sc, seeds=1)
    path = ROOT / "results" / "baselines" / f"{table}-{scale}.json"
    data = load_baseline(path)  # the entry saved last (a file may hold several machine classes)
    entry = select_entry(data, None, (data.get("entries") or [{}])[0].get("machine_class"))
    cells = {(c["row"], c["column"]): c["trials"] for c in entry["cells"]}
    means = {k: float(np.mean([t["top1"] for t in cells[k]])) for k in plan.trials}
    speeds = {k: float(np.mean([t["img_per_s"] for t in cells[k]])) for k in plan.trials}
    epochs = {k: sc.epochs(specs[0].recipe) for k, specs in plan.trials.items()}
    return Synthetic(means, speeds, epochs, rng)


def bank_source(store: str, table: str, scale: str, rng: np.random.Generator, need: int) -> Bank:
    from harness.regress import read_cells
    from harness.store import Store

    plan = make_plan(load_experiment(table), get_scale(scale), seeds=64)
    with Store(store, readonly=True) as st:
        cells = {k: [t for t in ts if t["status"] == "done" and t["top1"] is not None]
                 for k, ts in read_cells(plan, st).items()}
    short = [f"{r} / {c} ({len(ts)})" for (r, c), ts in cells.items() if len(ts) < need]
    if short:
        sys.exit(f"{store}: cells with fewer than {need} done seeds: " + "; ".join(short))
    return Bank(cells, rng)


# ---- scenarios --------------------------------------------------------------------------
def descendants(parents: dict[str, str], row: str) -> list[str]:
    """``row`` and every row stacked on it (they all carry its trick)."""
    out = [row]
    for r, p in parents.items():
        if p in out and r not in out:
            out.append(r)
    return out


@dataclasses.dataclass(frozen=True)
class Layout:
    """What the gate needs of a table's shape: its cells, the stacked rows' parents, the
    column tricks (Table 3) and each cell's model (harness.regress.gate)."""

    keys: list[Key]
    parents: dict[str, str]
    tricks: list[Any]
    models: dict[Key, str]


def layout_of(plan) -> Layout:
    return Layout(list(plan.trials), parents_of(plan), column_tricks(plan), models_of(plan))


def scenarios(lay: Layout, means: dict[Key, float]):
    """(name, shift per cell, what a shift means) for every injected change."""
    keys, parents = lay.keys, lay.parents
    cols = list(dict.fromkeys(c for _, c in keys))
    yield "null", {}, "nothing changed"
    for size in (0.5, 1.0):
        for model in dict.fromkeys(lay.models.values()):
            yield (f"model {model} -{size:g}", {k: size for k in keys if lay.models[k] == model},
                   "every cell of one model")
    for row, parent in parents.items():
        hit = descendants(parents, row)
        shift = {(r, c): means[(row, c)] - means[(parent, c)] for r in hit for c in cols}
        delta = float(np.mean([means[(row, c)] - means[(parent, c)] for c in cols]))
        yield f"trick {row} delta 0 ({delta:+.2f})", shift, "the trick's delta set to 0"
    for t in lay.tricks:  # a column vs the reference column, model by model
        shift = {k: means[k] - means[pk] for k, pk in t.pairs}
        delta = float(np.mean(list(shift.values())))
        yield f"trick {t.name} delta 0 ({delta:+.2f})", shift, "the trick's delta set to 0"
    victim = keys[len(cols)] if len(keys) > len(cols) else keys[0]  # a second-row cell
    for size in (1.0, 2.0):
        for col in cols:
            key = (victim[0], col)
            yield f"cell {key[0]} / {col} -{size:g}", {key: size}, "one cell"


def old_rule(base: dict[Key, list], now: dict[Key, list]) -> bool:
    """Today's (before this gate) rule: a cell fails when now < base - max(1, 3 pooled SD)."""
    for k in base:
        b = [t["top1"] for t in base[k]]
        n = [t["top1"] for t in now[k]]
        df = len(b) + len(n) - 2
        vb = np.var(b, ddof=1) if len(b) > 1 else 0.0
        vn = np.var(n, ddof=1) if len(n) > 1 else 0.0
        sd = math.sqrt((vb * (len(b) - 1) + vn * (len(n) - 1)) / df) if df > 0 else 0.0
        if np.mean(n) < np.mean(b) - max(1.0, 3 * sd):
            return True
    return False


def one_night(source, th, looks: Looks, lay: Layout, budget: int, shift: dict[Key, float],
              nb: int, nn: int, step: int, max_seeds: int, speed: bool = True) -> dict[str, Any]:
    base, now, draw = source.night(nb, nn, shift)
    entry = {"cells": [{"row": r, "column": c, "seeds": [t["seed"] for t in ts], "trials": ts}
                       for (r, c), ts in base.items()], "seeds": list(range(nb))}
    state = {k: list(v) for k, v in now.items()}

    def more(cells: list[Key], left: int):
        used = 0
        for key in cells:
            n = min(step, max_seeds - len(state[key]))
            if n <= 0 or used + n > left:
                continue
            got = [draw(key, 1000 + len(state[key]) + i) for i in range(n)]
            got = [dict(t, seed=1000 + len(state[key]) + i) for i, t in enumerate(got) if t is not None]
            state[key] += got
            used += len(got)
        return ({k: list(v) for k, v in state.items()}, used) if used else None

    ev, _, extra = run_night(entry, {k: list(v) for k, v in now.items()}, th, looks=looks,
                             more=more, budget=budget, parents=lay.parents, speed=speed,
                             tricks=lay.tricks, models=lay.models)
    failed = ev.failing
    return {"failed": failed, "undecided": any(c.outcome == "undecided" for c in ev.checks),
            "extra": extra, "old": old_rule(base, now),
            "by": sorted({c.kind for c in ev.checks if c.failed}
                         | ({"cell"} if any(v.failed for v in ev.cells) else set()))}


def thresholds(args):
    """The scale's thresholds, with --alpha / --band when given (to explore)."""
    th = THRESHOLDS[args.scale]
    over = {k: v for k, v in (("alpha", args.alpha), ("band", args.band)) if v is not None}
    return dataclasses.replace(th, **over)


def make_source(args, index: int):
    """The scenario's own source: its random stream depends on (rng seed, scenario) only."""
    rng = np.random.default_rng([args.rng_seed, index])
    if args.synthetic:
        return synthetic_source(args.table, args.scale, rng)
    return bank_source(args.store, args.table, args.scale, rng, args.base_seeds + args.now_seeds)


def run_scenario(job: tuple) -> dict[str, Any]:
    args, index, name, shift, what, lay = job
    keys = lay.keys
    gc.freeze()  # statsmodels' Holm calls gc.collect(): keep it from walking torch's objects
    source = make_source(args, index)
    th = thresholds(args)
    looks = Looks(args.now_seeds, args.now_seeds, args.max_seeds, args.base_seeds)
    budget = args.budget if args.budget is not None else len(keys) * args.now_seeds
    nights = args.nights if name == "null" else args.detect_nights
    res = [one_night(source, th, looks, lay, budget, shift, args.base_seeds,
                     args.now_seeds, args.now_seeds, args.max_seeds, not args.no_speed)
           for _ in range(nights)]
    fails = sum(r["failed"] for r in res)
    row = {"scenario": name, "change": what, "nights": nights,
           "failed": round(fails / nights, 3), "failed_ci95": _wilson(fails, nights),
           "undecided": round(sum(r["undecided"] for r in res) / nights, 3),
           "rerun_trials_mean": round(float(np.mean([r["extra"] for r in res])), 2),
           "old_rule_failed": round(sum(r["old"] for r in res) / nights, 3),
           "caught_by": ",".join(sorted({b for r in res for b in r["by"]})),
           "failed_by": {k: round(sum(k in r["by"] for r in res) / nights, 3)
                         for k in sorted({b for r in res for b in r["by"]})}}
    print(json.dumps(row), flush=True)
    return row


def measure(args, lay: Layout) -> list[dict[str, Any]]:
    means = make_source(args, 0).means
    jobs = [(args, i, name, shift, what, lay)
            for i, (name, shift, what) in enumerate(scenarios(lay, means))
            if not args.only or any(o in name for o in args.only)]
    if args.jobs <= 1:
        return [run_scenario(j) for j in jobs]
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        return pool.map(run_scenario, jobs, chunksize=1)


def _wilson(k: int, n: int, z: float = 1.96) -> str:
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return f"{max(0.0, c - h):.3f}-{min(1.0, c + h):.3f}"


# ---- real bugs, end to end -------------------------------------------------------------
def _patch(obj: Any, name: str, value: Any, undo: list) -> None:
    undo.append((obj, name, getattr(obj, name)))
    setattr(obj, name, value)


def _bug_label_smoothing_off(undo: list) -> None:
    """Label smoothing silently off: targets are one-hot whatever the recipe's epsilon."""
    from harness.tasks import classification as cl
    orig = cl.smooth_targets
    _patch(cl, "smooth_targets", lambda y, n, eps, form="paper": orig(y, n, 0.0, form), undo)


def _bug_weight_decay_on_all(undo: list) -> None:
    """No-bias-decay ignored: weight decay on every parameter (BN gammas/betas, biases)."""
    from harness.tasks import classification as cl
    orig = cl.param_groups
    _patch(cl, "param_groups", lambda model, wd, no_bias_decay: orig(model, wd, False), undo)


def _bug_wrong_normalisation(undo: list) -> None:
    """Inputs not divided by the per-channel std (train and eval): a 0-255-scale input."""
    from harness.data import augment
    orig = augment._mean_std

    def mean_std(*a, **k):
        m, s = orig(*a, **k)
        return m, s.new_ones(s.shape)
    _patch(augment, "_mean_std", mean_std, undo)


def _bug_cosine_as_step(undo: list) -> None:
    """The cosine schedule silently falls back to step decay."""
    from harness.tasks import classification as cl
    orig = cl.make_schedule

    def schedule(recipe, scale, iters):
        s = orig(recipe, scale, iters)
        return dataclasses.replace(s, kind="step") if s.kind == "cosine" else s
    _patch(cl, "make_schedule", schedule, undo)


def _bug_mixup_off(undo: list) -> None:
    """Mixup returns the batch unmixed (lambda = 1)."""
    from harness.tasks import classification as cl
    _patch(cl, "mixup_batch", lambda x, targets, alpha, gen: (x, targets, 1.0), undo)


def _bug_zero_gamma_off(undo: list) -> None:
    """Zero-gamma init skipped: residual blocks' last BN starts at gamma 1."""
    from harness.tasks import model_tricks  # where a trial's model gets zero-gamma
    _patch(model_tricks, "apply_zero_gamma", lambda model: 0, undo)


def _bug_backbone_not_loaded(undo: list) -> None:
    """A fine-tune (Tables 8, 9) starts from a randomly initialised backbone instead of its
    classification trial's checkpoint (run it on bench/gate_bugs_transfer.yaml)."""
    import harness.transfer as tr
    orig = tr.load_backbone
    _patch(tr, "load_backbone",
           lambda spec, opts, settings, device: orig(spec, opts, {**settings, "random_init": True}, device),
           undo)


BUGS: dict[str, Callable[[list], None]] = {
    "label_smoothing_off": _bug_label_smoothing_off,
    "weight_decay_on_all": _bug_weight_decay_on_all,
    "wrong_normalisation": _bug_wrong_normalisation,
    "cosine_as_step": _bug_cosine_as_step,
    "mixup_off": _bug_mixup_off,
    "zero_gamma_off": _bug_zero_gamma_off,
    "backbone_not_loaded": _bug_backbone_not_loaded,  # a transfer table's bug only
}
TRANSFER_BUGS = ("backbone_not_loaded",)  # not in a classification table's default list


def train_in_process(plan, store: str, run_options=None) -> None:
    """Train what ``store`` lacks of ``plan`` in this process (no Ray: the bug's patches
    hold), stage by stage, recording the device as harness.machine.device_label after each
    trial."""
    import torch

    from harness import machine, provenance
    from harness.records import trial_record
    from harness.store import Store
    from harness.trainer import run_trial
    from harness.trial import TrainOptions

    root = Path(store).resolve().parent
    with Store(store) as st:
        done = st.done_hashes()
        for stage in plan.stages():
            for spec in stage:
                if spec.hash in done:
                    continue
                dep = {k: st.get_trial(d.hash).checkpoint for k, d in
                       (("teacher_ckpt", spec.teacher), ("backbone_ckpt", spec.backbone)) if d is not None}
                opts = TrainOptions(checkpoint_dir=str(root / "checkpoints" / spec.hash), threads=1,
                                    log=lambda m: None, **dep)
                started = provenance.utc_now()
                res = run_trial(spec, opts)
                # labelled after the trial, as a worker does: the label counts the threads the
                # trial ran with (taken before the first trial it read torch's default, 2 here,
                # and a rerun's trials then differed from the night's: "mixed")
                label = machine.device_label(torch.device("cpu"))
                d = {**res.to_json(), "history": res.history, "device": label}
                st.put_trial(trial_record(spec, "bugs", d, started_at=started, git_commit="bugs"))
                done.add(spec.hash)


def apply_bug(args) -> None:
    """The subprocess of one bug: patch, train, gate against the clean baseline, one JSON line."""
    from harness.regress import GateOptions, freeze, regress
    from harness.store import Store

    undo: list = []
    if args.apply_bug not in ("none", "clean"):
        BUGS[args.apply_bug](undo)
    plan = make_plan(load_experiment(args.table), get_scale(args.scale), seeds=args.seeds)
    train_in_process(plan, args.bug_store)
    if args.freeze:
        with Store(args.bug_store, readonly=True) as st:
            data = freeze(plan, st)
        from harness.regress import save_baseline
        save_baseline(data, args.freeze)
        print(json.dumps({"bug": args.apply_bug, "froze": args.freeze}))
        return
    baseline = load_baseline(args.baseline)
    baseline["_path"] = args.baseline
    r = regress(plan, baseline, store=args.bug_store, train=train_in_process, log=lambda m: None,
                out_dir=Path(args.bug_store).parent / "reports",
                options=GateOptions(budget=args.budget, max_seeds=args.max_seeds,
                                       speed=not args.no_speed))
    s = r.summary
    print(json.dumps({"bug": args.apply_bug, "exit_code": r.exit_code, "status": s["status"],
                      "failures": s["failures"], "undecided": s["undecided"],
                      "computation_changed": s["computation_changed"], "rerun_trials": s["rerun_trials"],
                      "report": str(r.report)}), flush=True)


def _kind(failure: str) -> str:
    """The check kind a gate failure line names (a cell's line starts with the cell)."""
    word = failure.split(" ", 1)[0]
    return word if word in ("model", "trick", "trick-gone", "mechanism", "invariant", "speed-model") else "cell"


def run_bugs(args) -> list[dict[str, Any]]:
    """Clean baseline, a clean night, then every bug; one subprocess each (its own patches)."""
    work = Path(args.work or tempfile.mkdtemp(prefix="gate-bugs-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    table = str(Path(args.table).resolve()) if Path(args.table).is_file() else args.table
    common = ["--table", table, "--scale", args.scale, "--seeds", str(args.seeds)]
    if args.budget is not None:
        common += ["--budget", str(args.budget)]
    if args.max_seeds_bugs:
        common += ["--max-seeds", str(args.max_seeds_bugs)]
    if args.no_speed:
        common += ["--no-speed"]

    def sub(bug: str, *extra: str) -> dict[str, Any]:
        store = work / bug / "store.sqlite"
        store.parent.mkdir(parents=True, exist_ok=True)
        out = subprocess.run([sys.executable, __file__, "--apply-bug", bug, "--bug-store", str(store),
                              *common, *extra], cwd=work, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"bug {bug}: exit {out.returncode}: {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    baseline = work / "baseline.json"
    sub("clean", "--freeze", str(baseline))
    bugs = ["none"] + (args.bug or [b for b in BUGS if b not in TRANSFER_BUGS])
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:  # one subprocess a bug
        results = pool.map(lambda b: sub(b, "--baseline", str(baseline)), bugs)
        rows = []
        for r in results:
            r["caught"] = r["exit_code"] == 1
            r["changed_cells"] = len(r.pop("computation_changed"))
            r["caught_by"] = sorted({_kind(f) for f in r["failures"]})
            r["failures"] = len(r["failures"])
            r["undecided"] = len(r["undecided"])
            rows.append(r)
            print(json.dumps(r), flush=True)
    return rows


# ---- output -----------------------------------------------------------------------------
def write_results(path: Path, config: str, title: str, notes: list[str],
                  rows: list[dict[str, Any]]) -> None:
    """Replace this configuration's section of bench/RESULTS.md (between its markers)."""
    begin, end = MARK.format(config, "begin"), MARK.format(config, "end")
    section = "\n".join([begin, f"## {title}", ""] + notes + ["",
                        tabulate(rows, headers="keys", tablefmt="pipe"), "", end])
    text = path.read_text() if path.is_file() else "# Benchmark results\n"
    if begin in text and end in text:
        a, b = text.index(begin), text.index(end) + len(end)
        text = text[:a] + section + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--synthetic", action="store_true", help="cells from a normal model")
    mode.add_argument("--store", help="a bank: a store with >= base+now seeds a cell of --table")
    mode.add_argument("--bugs", action="store_true", help="real bugs, trained end to end")
    mode.add_argument("--apply-bug", help=argparse.SUPPRESS)  # the bugs' subprocess
    ap.add_argument("--table", default="paper_table6")
    ap.add_argument("--scale", default="local")
    ap.add_argument("--nights", type=int, default=600, help="null nights (false alarms)")
    ap.add_argument("--detect-nights", type=int, default=60, help="nights per injected change")
    ap.add_argument("--base-seeds", type=int, default=2)
    ap.add_argument("--now-seeds", type=int, default=2)
    ap.add_argument("--max-seeds", type=int, default=6, help="seeds a cell may grow to in reruns")
    ap.add_argument("--budget", type=int, default=None, help="rerun trials a night (default: the plan's)")
    ap.add_argument("--only", nargs="*", help="scenarios whose name contains one of these")
    ap.add_argument("--rng-seed", type=int, default=2019)
    ap.add_argument("--jobs", type=int, default=2, help="processes; --bugs: bugs trained at once, one core each (default 2)")
    ap.add_argument("--alpha", type=float, default=None, help="override the scale's family-wise alpha")
    ap.add_argument("--band", type=float, default=None, help="override the scale's rerun band")
    ap.add_argument("--seeds", type=int, default=2, help="--bugs: seeds a cell")
    ap.add_argument("--max-seeds-bugs", type=int, default=None, help="--bugs: the gate's --max-seeds")
    ap.add_argument("--bug", nargs="*", choices=sorted(BUGS), help="--bugs: only these")
    ap.add_argument("--work", default=None, help="--bugs: folder for the stores (default: a temp dir)")
    ap.add_argument("--no-speed", action="store_true",
                    help="the gate judges accuracy and mechanism only (--bugs: bugs trained side by "
                    "side share the cores; a bank's trials ran under other loads than each other)")
    ap.add_argument("--baseline", help=argparse.SUPPRESS)
    ap.add_argument("--bug-store", help=argparse.SUPPRESS)
    ap.add_argument("--freeze", help=argparse.SUPPRESS)
    ap.add_argument("--write-results", nargs="?", const=str(ROOT / "bench" / "RESULTS.md"), default=None,
                    help="replace this benchmark's section of bench/RESULTS.md")
    a = ap.parse_args()
    if a.apply_bug:
        a.max_seeds = a.max_seeds_bugs or a.max_seeds
        return apply_bug(a)
    if a.bugs:
        rows = run_bugs(a)
        notes = [f"- real bugs injected into the training stack (bench/gate_power.py `BUGS`), table "
                 f"`{Path(a.table).name if a.table.endswith(('.yaml', '.toml')) else a.table}` at `{a.scale}`, {a.seeds} seed(s) a cell, each trained end to end in "
                 "its own subprocess and gated against a clean baseline of the same seeds; "
                 f"{sum(r['caught'] for r in rows if r['bug'] != 'none')} of {len(rows) - 1} caught "
                 "on the first night (reruns included); `changed_cells`: cells whose same-seed top-1 "
                 "differs from the clean baseline (the determinism tier: the bug was applied); "
                 "`caught_by`: the check kinds that failed"
                 + ("; speed not gated (--no-speed: the bugs trained side by side, the baseline alone)"
                    if a.no_speed else "")]
        from harness.machine import class_label, machine_class
        notes.append(f"- machine: `{class_label(machine_class('cpu'))}`, 1 thread a trial, "
                     f"{a.jobs} bug(s) at once")
        if a.scale == "smoke":
            notes.append("- SMOKE: accuracy never gates at smoke (floor 100 points): what catches a "
                         "bug there is the invariant checks (what ran). The `local` figures: python "
                         "bench/gate_power.py --bugs --scale local --table bench/gate_bugs.yaml "
                         "--no-speed (their own section)")
        if a.write_results:
            table = [{k: v for k, v in r.items() if k != "report"} for r in rows]
            stem = Path(a.table).stem if a.table.endswith((".yaml", ".toml")) else a.table
            own = "" if stem == "gate_bugs" else f" {stem}"  # gate_bugs.yaml keeps its marks
            write_results(Path(a.write_results), f"bugs {a.scale}{own}",
                          f"Regression gate: real bugs, end to end ({a.scale}{own})", notes, table)
        return
    plan = make_plan(load_experiment(a.table), get_scale(a.scale), seeds=1)
    lay = layout_of(plan)
    keys = lay.keys
    rows = measure(a, lay)
    th = thresholds(a)
    kind = ("SYNTHETIC: cells drawn from a normal model with DESIGN.md's seed SDs (ResNet-50-D 0.3, "
            "MobileNet 0.9, Inception-V3 1.0 points) around the committed baseline's cell means; "
            f"speed: trial CV {TRIAL_SPEED_CV:g}, epoch CV {EPOCH_SPEED_CV:g}" if a.synthetic
            else f"bank: {a.store} (every done seed a cell, resampled)")
    notes = [f"- {kind}",
             f"- {a.table} at `{a.scale}`: {len(keys)} cells; {a.base_seeds} baseline seeds vs {a.now_seeds} "
             f"today (disjoint), reruns up to {a.max_seeds} seeds a cell within "
             f"{a.budget if a.budget is not None else len(keys) * a.now_seeds} trials a night",
             f"- gate: Holm over every check, family-wise alpha {th.alpha:g} one-sided a night, Pocock-type "
             f"spending over looks {Looks(a.now_seeds, a.now_seeds, a.max_seeds, a.base_seeds).seeds}; "
             f"floors: cell {th.floor:g}, model/trick {th.pooled_floor:g} points, speed {th.speed_frac:g}",
             f"- `failed`: share of nights the gate exits 1 (null: false alarms; else: caught on the first "
             "night, reruns included), with its 95% Wilson interval; `old_rule_failed`: the rule before "
             "(`now < base - max(1, 3 pooled SD)` per cell, no reruns) on the same nights; "
             f"{a.nights} null nights, {a.detect_nights} a change; rng seed {a.rng_seed}; `failed_by`: "
             "share of nights on which each check kind failed"
             + ("; speed not gated (--no-speed: the bank's trials ran under other loads than each "
                "other on a shared 2-core machine)" if a.no_speed else "")]
    if not a.synthetic:
        notes.append(f"- {bank_summary(make_source(a, 0))}; gate code at commit "
                     f"{provenance.git_commit() or 'unknown'}, {time.strftime('%Y-%m-%d')}")
    if a.write_results:
        src = "synthetic" if a.synthetic else "bank"
        title = (f"Regression gate power ({src}{'' if a.table == 'paper_table6' else ', ' + a.table}): "
                 f"{a.base_seeds} baseline seeds, {a.now_seeds} tonight, "
                 f"{a.nights} null nights" + (", accuracy only" if a.no_speed else ""))
        config = (f"{src} b{a.base_seeds} n{a.now_seeds}" + (" no-speed" if a.no_speed else "")
                  + ("" if a.table == "paper_table6" else f" {a.table}"))  # Table 6's keep their marks
        write_results(Path(a.write_results), config, title, notes, rows)


if __name__ == "__main__":
    main()

"""Regression baselines: a table's stored results frozen into one JSON file.

``results/baselines/<table>-<scale>[-<name>].json`` holds, per cell (row, column), every
seed's top-1/top-5 (and a transfer table's own metric), the mean logit gap (the gate's
mechanism metric), training images/s (the trial's mean
and each epoch's), device, precision, torch version and spec hash, plus provenance (git
commit, library versions, date, scale, store path).
``harness regress`` compares a new run with it: :func:`read_cells` gives today's trials in
the same per-seed format.

Format 2 holds one *entry* per machine class (:mod:`harness.regress.identity`): the top
level is the entry saved last (``machine_class``, ``seeds``, ``provenance``, ``cells``) and
``machines`` lists the others. :func:`save_baseline` into an existing file of the same table
and scale replaces the entry of the same class and keeps the others. Format 1 (one entry,
no precision, no per-epoch speed) is still read: :func:`load_baseline` returns every
file as ``entries``; :func:`select_entry` picks the one to compare with.

Names that become file names (the table's name and ``--name``) may use only
``[A-Za-z0-9_.-]``, may not contain ``..`` and must resolve inside ``results/baselines``;
anything else is a :class:`HarnessError` (exit code 2) before any file is written.
"""
from __future__ import annotations

import json
import platform
import re
import sys
from pathlib import Path
from typing import Any

from harness import provenance
from harness.atomic import atomic_write
from harness.errors import HarnessError
from harness.experiments import Experiment, Plan, paper_tables
from harness.metrics import main_metric, number
from harness.regress.comparison import Key, cell_device
from harness.regress.identity import identity
from harness.store import DEFAULT_STORE
from harness.results import metric_value, read_trials
from harness.spec import TrialSpec
from harness.store import Store, TrialRecord

FORMAT_VERSION = 2
READ_FORMATS = (1, 2)
BASELINES_DIR = Path("results") / "baselines"  # relative to the working directory, like the store
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
CELL_KEYS = ("row", "column", "seeds", "trials")
TRIAL_KEYS = ("seed", "spec_hash", "status", "top1", "top5", "img_per_s", "device")  # format 1
ENTRY_KEYS = ("machine_class", "machine", "seeds", "provenance", "cells")


# ---- names and paths ------------------------------------------------------------------
def check_name(value: str, what: str = "name") -> str:
    """A name that will become part of a file name: [A-Za-z0-9_.-], no '..', not empty."""
    if not isinstance(value, str) or not value or not _NAME_RE.match(value) or ".." in value:
        raise HarnessError(f"bad baseline {what} {value!r}; valid: letters, digits, '_', '.', '-' "
                           "(no '..', no '/')")
    return value


def baseline_path(table: str, scale: str, name: str | None = None,
                  root: str | Path | None = None) -> Path:
    """``<root>/<table>-<scale>[-<name>].json``; raises HarnessError for unsafe names."""
    base_dir = Path(root) if root is not None else BASELINES_DIR
    parts = [check_name(table, "table name"), check_name(scale, "scale")]
    if name is not None:
        parts.append(check_name(name, "name"))
    path = base_dir / ("-".join(parts) + ".json")
    # Belt and braces: the resolved file must sit directly inside the baselines folder.
    if path.resolve().parent != base_dir.resolve():
        raise HarnessError(f"baseline path {path} would leave {base_dir}; choose another --name")
    return path


def save_command(table: str, scale: str, name: str | None = None) -> str:
    """The command that creates the baseline regress looks for."""
    return (f"python -m harness baseline save {table} --scale {scale}"
            + (f" --name {name}" if name else ""))


# ---- a plan's trials, per seed ---------------------------------------------------------
def seed_entry(spec: TrialSpec, rec: TrialRecord | None, metric: str = "top1",
               epoch_speeds: list[float] | None = None) -> dict[str, Any]:
    """One planned seed in the baseline's format: TRIAL_KEYS, precision (the one it ran in
    and the recipe's), torch version and per-epoch images/s, plus the gated ``metric`` when
    it is not top-1 (e.g. ``map``); status 'missing' when the store does not have the trial."""
    def value(m: str) -> float | None:
        return metric_value(rec, m) if rec is not None else None

    entry = {"seed": int(spec.seed), "spec_hash": spec.hash,
             "status": rec.status if rec is not None else "missing",
             "top1": value("top1"), "top5": value("top5"), "img_per_s": value("img_per_s"),
             "img_per_s_epochs": list(epoch_speeds or []),
             "device": rec.device if rec is not None else None,
             "precision": rec.precision if rec is not None else None,
             "requested_precision": spec.recipe.precision,
             "torch_version": rec.torch_version if rec is not None else None}
    if metric != "top1":
        entry[metric] = value(metric)
    gap = logit_gap_mean(rec) if rec is not None else None
    if gap is not None:
        entry["logit_gap"] = gap
    applied = record_facts(rec) if rec is not None else {}
    if applied:
        entry["applied"] = applied  # what ran: the invariant checks (harness.regress.invariants)
    return entry


def record_facts(rec: TrialRecord) -> dict[str, Any]:
    """What a stored trial says it ran: the trainer's measured facts (``metrics.applied``,
    harness.applied) and, for every trial, the global batch, base learning rate,
    epochs run and parameter count the trainer recorded."""
    facts = dict((rec.metrics or {}).get("applied") or {})
    extra = rec.extra or {}
    recorded = {"global_batch": extra.get("global_batch"), "base_lr": extra.get("lr"),
                "epochs": rec.epochs, "params": rec.params}
    facts.update({k: v for k, v in recorded.items() if v is not None})
    return facts


def logit_gap_mean(rec: TrialRecord) -> float | None:
    """The trial's mean logit gap (Sec 5.2, Figure 4; classification trials store it in
    ``metrics``): the gate's mechanism metric for label smoothing, mixup and distillation."""
    gap = (rec.metrics or {}).get("logit_gap")
    return number(gap.get("mean")) if isinstance(gap, dict) else None


def _epoch_speeds(store: Store, hashes: list[str]) -> dict[str, list[float]]:
    """Each trial's per-epoch training images/s (the speed gate's repeats)."""
    if not hashes:
        return {}
    df = store.epochs_df(hashes)
    out: dict[str, list[float]] = {}
    for h, v in zip(df["spec_hash"], df["img_per_s"]):
        if v is not None and v == v:  # NaN: an epoch without a number
            out.setdefault(h, []).append(float(v))
    return out


def read_cells(plan: Plan, store: Store) -> dict[Key, list[dict[str, Any]]]:
    """Per cell of ``plan``, one :func:`seed_entry` per planned seed from ``store``.

    The gated metric is the experiment's main one (:func:`harness.metrics.main_metric`).
    Teachers are not cells.
    """
    metric = main_metric(plan.experiment.kind)
    hashes = [t.hash for ts in plan.trials.values() for t in ts]
    stored = read_trials(store, hashes).records
    speeds = _epoch_speeds(store, [h for h in hashes if h in stored])
    return {key: [seed_entry(spec, stored.get(spec.hash), metric, speeds.get(spec.hash))
                  for spec in specs]
            for key, specs in plan.trials.items()}


def entry_class(cells: list[dict[str, Any]] | dict[Key, list[dict[str, Any]]]) -> str:
    """The machine class of a side: every done trial's (a format-1 file: derived from its
    device strings alone). Cells: a baseline entry's list, or :func:`read_cells`' dict."""
    if isinstance(cells, dict):
        trials = [t for ts in cells.values() for t in ts]
    else:
        trials = [t for c in cells for t in c.get("trials", [])]
    done = [t for t in trials if t.get("status", "done") == "done"]
    return identity(done, pool=done).hardware or "unknown"


def provenance_info(store_path: str | Path | None, scale: str) -> dict[str, Any]:
    """Who/what/when produced the numbers: commit, versions, date, scale, store."""
    info: dict[str, Any] = {"git_commit": provenance.git_commit(), "created_at": provenance.utc_now(),
                            "scale": scale,
                            "store": str(Path(store_path).resolve()) if store_path else None,
                            "python": platform.python_version(), "host": platform.node(),
                            "argv": list(sys.argv)}
    info["versions"] = {**provenance.versions()}
    try:
        import numpy

        info["versions"]["numpy_version"] = numpy.__version__
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    return info


def _table_arg(exp: Experiment) -> str:
    """How the user names this table on the command line."""
    return exp.name if exp.name in paper_tables() or not exp.source else exp.source


def freeze(plan: Plan, store: Store) -> dict[str, Any]:
    """The baseline dict of ``plan``'s cells from ``store`` (done trials only).

    Raises HarnessError listing every cell without a single done trial.
    """
    cells = read_cells(plan, store)
    empty = [f"{r} / {c}" for (r, c), ts in cells.items() if not any(t["status"] == "done" for t in ts)]
    if empty:
        raise HarnessError(f"cannot freeze {plan.experiment.name} @ {plan.scale.name} from "
                           f"{store.path}: no done trials for {len(empty)} cell(s): "
                           + "; ".join(empty) + f" (run: python -m harness run "
                           f"{_table_arg(plan.experiment)} --scale {plan.scale.name})")
    out_cells = []
    for (row, col), trials in cells.items():
        done = [t for t in trials if t["status"] == "done"]
        out_cells.append({"row": row, "column": col, "seeds": [t["seed"] for t in done],
                          "device": cell_device(done), "spec_hashes": [t["spec_hash"] for t in done],
                          "trials": done,
                          "not_done": [{"seed": t["seed"], "status": t["status"]}
                                       for t in trials if t["status"] != "done"]})
    return {"format": FORMAT_VERSION, "table": plan.experiment.name, "scale": plan.scale.name,
            "scale_fingerprint": plan.scale.fingerprint(), "seeds": list(plan.seeds),
            "metric": main_metric(plan.experiment.kind), "machine_class": entry_class(out_cells),
            "provenance": provenance_info(getattr(store, "path", None), plan.scale.name),
            "cells": out_cells}


# ---- files ----------------------------------------------------------------------------
def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON through :func:`harness.atomic.atomic_write`."""
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")
    return Path(path)


def _entry(data: dict[str, Any]) -> dict[str, Any]:
    """The entry keys of a baseline dict (an entry of ``machines`` is one already)."""
    out = {k: data.get(k) for k in ENTRY_KEYS}
    out["cells"] = data.get("cells") or []
    out["machine_class"] = data.get("machine_class") or entry_class(out["cells"])
    return out


def save_baseline(baseline: dict[str, Any], path: str | Path) -> Path:
    """Atomically write a frozen baseline; an OSError becomes a one-line HarnessError.

    When ``path`` already holds a baseline of the same table and scale, its entries of
    other machine classes are kept (``machines``); one of the same class is replaced."""
    path = Path(path)
    out = {k: v for k, v in baseline.items() if k not in ("_path", "entries", "machines")}
    out["format"] = FORMAT_VERSION
    mine = _entry(out)
    out["machine_class"] = mine["machine_class"]
    others: list[dict[str, Any]] = []
    if path.is_file():
        try:
            old = load_baseline(path)
        except HarnessError:
            old = None  # not ours to keep: overwritten, as before format 2
        if old is not None and (old.get("table"), old.get("scale")) == (out.get("table"), out.get("scale")):
            others = [e for e in old["entries"] if e["machine_class"] != mine["machine_class"]]
    out["machines"] = others
    try:
        return write_json_atomic(path, out)
    except OSError as exc:
        raise HarnessError(f"cannot write baseline {path}: {exc.strerror or exc}") from None


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read and check a baseline file; HarnessError names the path and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"no baseline at {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"baseline {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise HarnessError(f"baseline {path} is malformed: expected an object with a 'cells' list")
    if data.get("format") not in READ_FORMATS:
        raise HarnessError(f"baseline {path} has format {data.get('format')!r}; this harness reads "
                           f"formats {', '.join(map(str, READ_FORMATS))}; re-create it with "
                           "'harness baseline save'")
    machines = data.get("machines") or []
    if not isinstance(machines, list) or not all(isinstance(m, dict) for m in machines):
        raise HarnessError(f"baseline {path} is malformed: 'machines' must be a list of objects")
    for where, entry in [("", data)] + [(f"machines[{j}].", m) for j, m in enumerate(machines)]:
        if not isinstance(entry.get("cells"), list):
            raise HarnessError(f"baseline {path}: {where}cells must be a list")
        for i, cell in enumerate(entry["cells"]):
            if not isinstance(cell, dict) or any(k not in cell for k in CELL_KEYS):
                raise HarnessError(f"baseline {path}: {where}cells[{i}] lacks one of {', '.join(CELL_KEYS)}")
            if not isinstance(cell["trials"], list) or not all(isinstance(t, dict) for t in cell["trials"]):
                raise HarnessError(f"baseline {path}: {where}cells[{i}].trials must be a list of objects")
    data["entries"] = [_entry(data)] + [_entry(m) for m in machines]
    return data


def select_entry(baseline: dict[str, Any], now_class: str | None,
                 machine: str | None = None) -> dict[str, Any]:
    """The entry to compare with, as a baseline dict of its own (table, scale, metric and
    path kept): the one of class ``machine`` when given; else the one of today's class
    ``now_class``; else the only one (then speed is ``not comparable`` and accuracy compared
    where the precision matches); else a HarnessError naming the classes the file holds."""
    entries = baseline.get("entries") or [_entry(baseline)]
    classes = [e["machine_class"] for e in entries]
    path = baseline.get("_path", "the baseline")

    def pick(e: dict[str, Any], how: str) -> dict[str, Any]:
        meta = {k: v for k, v in baseline.items() if k not in ENTRY_KEYS + ("entries", "machines")}
        return {**meta, **e, "selected_by": how, "machine_classes": classes}

    if machine is not None:
        for e in entries:
            if e["machine_class"] == machine:
                return pick(e, "--machine")
        raise HarnessError(f"bad --machine {machine!r}; {path} holds: " + "; ".join(map(repr, classes)))
    for e in entries:
        if now_class is not None and e["machine_class"] == now_class:
            return pick(e, "today's machine class")
    if len(entries) == 1:
        return pick(entries[0], "the only entry (another machine class)")
    raise HarnessError(f"{path} holds no entry for today's machine class {now_class!r}; it holds: "
                       + "; ".join(map(repr, classes)) + " (pass --machine CLASS to compare with one, "
                       "or add this machine with 'harness baseline save')")


def resolve_baseline(exp_name: str, table_arg: str, scale: str, name: str | None,
                     baseline_file: str | None, store: str | None = None,
                     default_store: str = DEFAULT_STORE) -> dict[str, Any]:
    """Load the baseline (explicit file, or the named/default one) or raise a one-line
    HarnessError naming the expected path and the command that creates it."""
    if baseline_file:
        path = Path(baseline_file)
        how = f"pass an existing file to --baseline, or create one with: {save_command(table_arg, scale, name)}"
    else:
        path = baseline_path(exp_name, scale, name)
        how = "create it with: " + save_command(table_arg, scale, name)
    if store and store != default_store:
        how += f" --store {store}"
    if not path.is_file():
        raise HarnessError(f"no baseline at {path}; {how}")
    data = load_baseline(path)
    if data.get("table") != exp_name or data.get("scale") != scale:
        raise HarnessError(f"baseline {path} is for {data.get('table')} @ {data.get('scale')}, "
                           f"not {exp_name} @ {scale}; {how}")
    data["_path"] = str(path)
    return data

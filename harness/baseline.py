"""Regression baselines: a table's stored results frozen into one JSON file.

``results/baselines/<table>-<scale>[-<name>].json`` holds, per cell (row, column), every
seed's top-1/top-5, training images/s, device and spec hash, plus provenance (git commit,
library versions, date, scale, store path). ``harness regress`` compares a new run with it.

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

from harness.atomic import atomic_write
from harness.errors import HarnessError

FORMAT_VERSION = 1
BASELINES_DIR = Path("results") / "baselines"  # relative to the working directory, like the store
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
CELL_KEYS = ("row", "column", "seeds", "trials")
TRIAL_KEYS = ("seed", "spec_hash", "status", "top1", "top5", "img_per_s", "device")

Key = tuple[str, str]


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


# ---- collecting results ---------------------------------------------------------------
def _num(value: Any) -> float | None:
    """A float, or None for missing / NaN (SQLite gives NaN back as NULL anyway)."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


# The metric the gate watches per experiment kind: top-1 for classification, the task's own
# metric for the transfer tables (Sec 6: mAP for Table 8, mIoU for Table 9).
GATE_METRIC = {"classification": "top1", "detection": "map", "segmentation": "miou"}


def gate_metric(plan) -> str:
    return GATE_METRIC.get(plan.experiment.kind, "top1")


def collect(plan, store) -> dict[Key, list[dict[str, Any]]]:
    """Per cell of ``plan``, one dict per planned seed from ``store``.

    Each dict has TRIAL_KEYS (plus the gate metric of a transfer table, e.g. ``map``); a
    trial the store does not have gets status 'missing'. Teachers are not cells.
    """
    metric = gate_metric(plan)
    hashes = [t.hash for ts in plan.trials.values() for t in ts]
    df = store.trials_df(spec_hash=hashes) if hashes else None
    rows = {} if df is None else {r["spec_hash"]: r for r in df.to_dict("records")}
    out: dict[Key, list[dict[str, Any]]] = {}
    for key, specs in plan.trials.items():
        cell = []
        for spec in specs:
            rec = rows.get(spec.hash)
            if rec is None:
                cell.append({"seed": spec.seed, "spec_hash": spec.hash, "status": "missing",
                             "top1": None, "top5": None, "img_per_s": None, "device": None}
                            | ({metric: None} if metric != "top1" else {}))
                continue
            trial = {"seed": int(spec.seed), "spec_hash": spec.hash, "status": rec["status"],
                     "top1": _num(rec["top1"]), "top5": _num(rec["top5"]),
                     "img_per_s": _num(rec["train_img_per_s"]), "device": rec["device"]}
            if metric != "top1":
                trial[metric] = _num((rec.get("extra") or {}).get(metric))
            cell.append(trial)
        out[key] = cell
    return out


def cell_device(trials: list[dict[str, Any]]) -> str | None:
    """The device of a cell's trials: one string, or 'mixed: a | b' when they differ."""
    devices = sorted({t["device"] for t in trials if t.get("device")})
    if not devices:
        return None
    return devices[0] if len(devices) == 1 else "mixed: " + " | ".join(devices)


def provenance_info(store_path: str | Path | None, scale: str) -> dict[str, Any]:
    """Who/what/when produced the numbers: commit, versions, date, scale, store."""
    from harness import provenance

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


def _table_arg(exp) -> str:
    """How the user names this table on the command line."""
    from harness.experiments import paper_tables

    return exp.name if exp.name in paper_tables() or not exp.source else exp.source


def freeze(plan, store) -> dict[str, Any]:
    """The baseline dict of ``plan``'s cells from ``store`` (done trials only).

    Raises HarnessError listing every cell without a single done trial.
    """
    cells = collect(plan, store)
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
            "metric": gate_metric(plan),
            "provenance": provenance_info(getattr(store, "path", None), plan.scale.name),
            "cells": out_cells}


# ---- files ----------------------------------------------------------------------------
def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON through :func:`harness.atomic.atomic_write`."""
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")
    return Path(path)


def save_baseline(baseline: dict[str, Any], path: str | Path) -> Path:
    """Atomically write a frozen baseline; an OSError becomes a one-line HarnessError."""
    try:
        return write_json_atomic(path, baseline)
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
    if data.get("format") != FORMAT_VERSION:
        raise HarnessError(f"baseline {path} has format {data.get('format')!r}; this harness reads "
                           f"format {FORMAT_VERSION}; re-create it with 'harness baseline save'")
    for i, cell in enumerate(data["cells"]):
        if not isinstance(cell, dict) or any(k not in cell for k in CELL_KEYS):
            raise HarnessError(f"baseline {path}: cells[{i}] lacks one of {', '.join(CELL_KEYS)}")
        if not isinstance(cell["trials"], list) or not all(isinstance(t, dict) for t in cell["trials"]):
            raise HarnessError(f"baseline {path}: cells[{i}].trials must be a list of objects")
    return data


def baseline_cells(baseline: dict[str, Any]) -> dict[Key, dict[str, Any]]:
    """The baseline's cells keyed by (row, column)."""
    return {(c["row"], c["column"]): c for c in baseline["cells"]}

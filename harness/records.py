"""Build the store's trial rows from a spec and what the trainer reported."""
from __future__ import annotations

import json
from typing import Any

from harness import provenance
from harness.spec import TrialSpec
from harness.store import EPOCH_KEYS, TrialRecord


def trial_record(spec: TrialSpec, run_id: str, result: dict[str, Any], *, started_at: str,
                 git_commit: str, macs: int | None = None) -> TrialRecord:
    """A TrialRecord from a trainer result dict (TrialResult.to_json() + 'history'), whose
    keys are the store's column names; provenance without a column goes to the extras."""
    history = result.get("history") or []
    extra = {k: result[k] for k in ("cuda_visible_devices", "node", "node_id", "attempts", "workers",
                                    "global_batch", "lr") if result.get(k) is not None}
    return TrialRecord(
        spec_hash=spec.hash, run_id=run_id, table_name=spec.table, row_label=spec.row,
        column_label=spec.column, model=spec.model, recipe_json=json.dumps(spec.recipe.to_dict()),
        scale=spec.scale, seed=spec.seed, data=spec.dataset, status=result.get("status", "failed"),
        top1=result.get("top1"), top5=result.get("top5"),
        train_img_per_s=result.get("train_img_per_s"), epoch_s=result.get("epoch_s"),
        wall_s=result.get("wall_s"), epochs=result.get("epochs"), device=result.get("device"),
        precision=result.get("precision"), git_commit=git_commit,
        dataset_fingerprint=result.get("dataset_fingerprint"), started_at=started_at,
        finished_at=provenance.utc_now(), error=result.get("error"),
        checkpoint=result.get("checkpoint"), teacher_hash=spec.teacher.hash if spec.teacher else None,
        params=result.get("params"), macs=macs,
        epochs_rows=[{k: h.get(k) for k in EPOCH_KEYS} for h in history],
        extra=extra, metrics=dict(result.get("metrics") or {}), **provenance.versions())


def failed_record(spec: TrialSpec, run_id: str, error: str, *, started_at: str,
                  git_commit: str) -> TrialRecord:
    """A row for a trial that raised or could not start; the error is kept to one line."""
    line = error.strip().splitlines()[-1] if error.strip() else "unknown error"
    return trial_record(spec, run_id, {"status": "failed", "error": line[:500]},
                        started_at=started_at, git_commit=git_commit)

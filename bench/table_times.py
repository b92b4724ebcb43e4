"""Wall time of whole-table runs, read from the results store (no training here).

    python bench/table_times.py [--store results/harness.sqlite] [--scale local] [--concurrency 2]

For each table, the latest finished run that trained at least one trial: its wall time,
the trials it trained and skipped, the sum of those trials' compute seconds, and Ray's
overhead = 1 - compute / (wall x concurrency) (concurrency = trials at a time; 2 for the
`local` scale on a 2-core machine). Prints one JSON line per table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path


def table_times(store: str, scale: str = "local", concurrency: int = 2) -> list[dict]:
    if not Path(store).exists():
        return []
    from harness.store import Store

    with Store(store, readonly=True) as st:
        runs, trials = st.runs_df(), st.trials_df(scale=scale)
    runs = runs[(runs.scale == scale) & runs.finished_at.notna()]
    rows = []
    for table, group in runs.groupby("table_name"):
        for _, run in group.sort_values("started_at", ascending=False).iterrows():
            trained = trials[trials.run_id == run.run_id]
            if trained.empty:
                continue
            wall = (dt.datetime.fromisoformat(run.finished_at) - dt.datetime.fromisoformat(run.started_at)).total_seconds()
            compute = float(trained.wall_s.sum())
            rows.append({"table": table, "scale": scale, "run_id": run.run_id, "started": run.started_at[:19],
                         "trained": len(trained), "skipped": int(run.n_skipped or 0),
                         "failed": int(run.n_failed or 0), "wall_min": round(wall / 60, 1),
                         "compute_min": round(compute / 60, 1), "concurrency": concurrency,
                         "ray_overhead": round(1 - compute / (wall * concurrency), 3)})
            break
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="results/harness.sqlite")
    ap.add_argument("--scale", default="local")
    ap.add_argument("--concurrency", type=int, default=2)
    a = ap.parse_args()
    for row in table_times(a.store, a.scale, a.concurrency):
        print(json.dumps(row))


if __name__ == "__main__":
    main()

"""``harness baseline``: freeze a table's stored results as a regression baseline.

  python -m harness baseline save paper_table6 --scale local [--name NAME] [--store PATH]
  python -m harness baseline list
"""
from __future__ import annotations

import argparse
import json
import sys

from harness.commands.args import dataset, emit_json, json_arg, seeds_args, table_args
from harness.errors import HarnessError
from harness.experiments import load_experiment, make_plan
from harness.scales import get_scale


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baseline", help="freeze stored results as a regression baseline",
                       description="Freeze the stored results of a table into "
                       "results/baselines/<table>-<scale>[-<name>].json for 'harness regress'.")
    bsub = p.add_subparsers(dest="baseline_cmd", required=True)
    s = bsub.add_parser("save", help="write results/baselines/<table>-<scale>[-<name>].json",
                        description="Freeze every cell's stored results (done trials: per-seed "
                        "top-1/top-5, images/s, device, spec hashes) plus provenance. Refuses "
                        "when a cell has no done trial.")
    s.add_argument("table", help="paper_table2 .. paper_table9 or PATH.yaml|.toml")
    table_args(s)
    s.add_argument("--name", default=None, help="suffix of the file name ([A-Za-z0-9_.-])")
    seeds_args(s, offset=True)
    json_arg(s)
    s.set_defaults(func=cmd_baseline_save)
    ls = bsub.add_parser("list", help="list the baselines in results/baselines")
    ls.set_defaults(func=cmd_baseline_list)


def build_plan(args: argparse.Namespace):
    """The table's plan at --scale with --seeds / --seed-offset applied (shared with regress)."""
    from harness.regress import offset_seeds  # pandas, tabulate

    scale = get_scale(args.scale)
    if args.table == "grid":
        raise HarnessError("baselines need a fixed table: write the grid as an experiment file "
                           "(.yaml/.toml) and pass its path")
    exp = load_experiment(args.table)
    plan = make_plan(exp, scale, args.seeds, data=dataset(args, exp))
    return offset_seeds(plan, args.seed_offset)


def cmd_baseline_save(args: argparse.Namespace) -> int:
    # Lazy, as every import of harness.regress or harness.store here: pandas, tabulate.
    from harness.regress import baseline_path, freeze, save_baseline
    from harness.store import Store

    plan = build_plan(args)
    path = baseline_path(plan.experiment.name, plan.scale.name, args.name)  # validated first
    with Store(args.store, readonly=True) as store:
        data = freeze(plan, store)
    data["name"] = args.name
    save_baseline(data, path)
    n_trials = sum(len(c["trials"]) for c in data["cells"])
    partial = [f"{c['row']} / {c['column']}" for c in data["cells"] if c["not_done"]]
    if partial:
        print(f"warning: {len(partial)} cell(s) frozen with fewer seeds than planned: "
              + "; ".join(partial), file=sys.stderr)
    if args.json:
        emit_json({"baseline": str(path), "cells": len(data["cells"]), "trials": n_trials})
    else:
        print(f"baseline {path}: {len(data['cells'])} cells, {n_trials} trials "
              f"({plan.experiment.name} @ {plan.scale.name}, seeds {plan.seeds})")
    return 0


def cmd_baseline_list(args: argparse.Namespace) -> int:
    from harness.regress import BASELINES_DIR

    files = sorted(BASELINES_DIR.glob("*.json"))
    if not files:
        print(f"no baselines in {BASELINES_DIR}")
        return 0
    for f in files:
        try:
            d = json.loads(f.read_text())
            prov = d.get("provenance") or {}
            print(f"{f}  {d.get('table')} @ {d.get('scale')}  {len(d.get('cells', []))} cells  "
                  f"commit {prov.get('git_commit')}  {prov.get('created_at')}")
        except (OSError, ValueError):
            print(f"{f}  (unreadable)")
    return 0

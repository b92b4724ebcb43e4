"""``harness run TABLE``: plan a table's trials, train the missing ones on Ray Tune, report."""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from harness.commands.args import (check_storage, cluster_args, dataset, emit_json, json_arg,
                                   loading_args, run_options, seeds_args, table_args)
from harness.experiments import load_experiment, make_plan
from harness.experiments.grid import grid_experiment
from harness.ray_env import check_address
from harness.scales import get_scale


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a paper table, an experiment file, or a trick grid",
                       description="Run every trial of TABLE (paper_table2..9, a .yaml/.toml "
                       "experiment file, or 'grid' with --model/--tricks/--design) through Ray "
                       "Tune, store the results and write the report. Stored trials are reused.")
    p.add_argument("table", help="paper_table2 .. paper_table9, PATH.yaml|.toml, or grid")
    table_args(p)
    seeds_args(p)
    cluster_args(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan and a compute estimate; train nothing")
    p.add_argument("--no-report", action="store_true", help="skip writing the report")
    json_arg(p)
    p.add_argument("--model", default=None, help="grid: the model")
    p.add_argument("--tricks", default=None, help="grid: comma-separated tricks")
    p.add_argument("--design", default="factorial", help="grid: factorial | loo | stack")
    loading_args(p)
    p.set_defaults(func=cmd_run)


def load_table(args: argparse.Namespace):
    if args.table == "grid":
        return grid_experiment(args.model, args.tricks, args.design, getattr(args, "seeds", None))
    return load_experiment(args.table)


def cmd_run(args: argparse.Namespace) -> int:
    scale = get_scale(args.scale)
    if args.address and not args.dry_run:
        check_address(args.address)  # unreachable cluster: one line, exit 2, nothing written
    exp = load_table(args)
    plan = make_plan(exp, scale, args.seeds, data=dataset(args, exp))
    if args.dry_run:
        from harness.estimate import print_plan  # tabulate

        print_plan(plan, args.store)
        return 0
    from harness.orchestrator import run_plan  # Ray
    from harness.store import Store  # pandas

    check_storage(args)  # unreachable or unwritable --storage: one line, exit 2, nothing written
    Store(args.store).close()  # an unwritable or corrupt store fails here, before Ray starts
    summary = run_plan(plan, run_options(args), argv=sys.argv)
    report = None
    if not args.no_report:
        from harness.report import write_report  # pandas, matplotlib

        report = str(write_report(exp, scale, args.store, seeds=plan.seeds,
                                  data=dataset(args, exp), data_root=args.data_root))
        print(f"report: {report}", file=sys.stderr)
    out = {**asdict(summary), "report": report}
    if args.json:
        emit_json(out)
    else:
        print(f"{summary.table} @ {summary.scale}: {summary.trials} trials, {summary.done} done, "
              f"{summary.failed} failed, {summary.diverged} diverged, {summary.skipped} skipped "
              f"in {summary.wall_s:.0f}s" + (f"; report {report}" if report else ""))
    return 0 if summary.failed == 0 else 1

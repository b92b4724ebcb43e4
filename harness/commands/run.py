"""``harness run TABLE``: plan a table's trials, train the missing ones on Ray Tune, report."""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from harness.commands.args import (check_plan_overrides, check_storage, check_tracking, cluster_args, dataset,
                                   decisive_args, emit_json, json_arg, loading_args, looks,
                                   parse_duration, run_options, scale_override_args, scale_overrides,
                                   schedule_warnings, seeds_args, table_args, tracking_args)
from harness.errors import HarnessError
from harness.experiments import load_experiment, make_plan
from harness.experiments.decompose import decompose_experiment
from harness.experiments.grid import grid_experiment
from harness.ray_env import check_address
from harness.scales import get_scale
from harness.storage import Storage


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a paper table, an experiment file, or a trick grid",
                       description="Run every trial of TABLE (paper_table2..9, a .yaml/.toml "
                       "experiment file, or 'grid' with --model/--tricks/--design) through Ray "
                       "Tune, store the results and write the report. Stored trials are reused.")
    p.add_argument("table", help="paper_table2 .. paper_table9, PATH.yaml|.toml, or grid")
    table_args(p)
    seeds_args(p)
    cluster_args(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan and a compute estimate; train "
                   "nothing (the flags a run would refuse are refused here too; --storage is not probed)")
    p.add_argument("--no-report", action="store_true", help="skip writing the report")
    json_arg(p)
    p.add_argument("--model", default=None, help="grid: the model")
    p.add_argument("--tricks", default=None, help="grid: comma-separated tricks")
    p.add_argument("--design", default="factorial", help="grid: factorial | loo | stack")
    loading_args(p)
    tracking_args(p)
    scale_override_args(p)
    decisive_args(p)
    p.add_argument("--decompose", default=None, metavar="ROW",
                   help="run the 2^k corners between ROW (a row changing several knobs, e.g. "
                   "'+ mixup w/o distill': mixing and 200 epochs) and its parent instead of the table")
    p.add_argument("--budget", default=None, metavar="DURATION",
                   help="--until-decisive: stop adding waves once this much wall time is spent "
                   "(e.g. 90s, 30m, 2h, 1h30m)")
    p.set_defaults(func=cmd_run)


def load_table(args: argparse.Namespace):
    if args.table == "grid":
        return grid_experiment(args.model, args.tricks, args.design, getattr(args, "seeds", None))
    exp = load_experiment(args.table)
    if getattr(args, "decompose", None):
        return decompose_experiment(exp, args.decompose)
    return exp


def _report(args: argparse.Namespace, exp, scale, seeds, rule) -> str | None:
    if args.no_report:
        return None
    from harness.report import write_report  # pandas, matplotlib

    report = str(write_report(exp, scale, args.store, seeds=seeds, data=dataset(args, exp),
                              data_root=args.data_root, looks=rule, overrides=scale_overrides(args)))
    print(f"report: {report}", file=sys.stderr)
    return report


def _run_decisive(args: argparse.Namespace, exp, scale, rule, budget: float | None) -> int:
    """--until-decisive: waves of seeds until the verdicts decide (harness/adaptive.py)."""
    from harness.adaptive import until_decisive  # Ray

    opts = run_options(args)
    summary = until_decisive(exp, scale, opts, rule, budget, data=dataset(args, exp), log=opts.log,
                             overrides=scale_overrides(args))
    report = _report(args, exp, scale, None, rule)
    out = {**summary.to_json(), "report": report}
    last = summary.waves[-1] if summary.waves else None
    if args.json:
        emit_json(out)
    else:
        print(f"{summary.table} @ {summary.scale}: {len(summary.waves)} waves, {summary.trials} trials, "
              f"{summary.failed} failed in {summary.wall_s:.0f}s; stopped: {summary.stopped}"
              + (f"; {last.decided}/{last.comparisons} verdicts decided" if last else "")
              + (f"; report {report}" if report else ""))
    return 0 if summary.failed == 0 else 1


def _budget(args: argparse.Namespace, rule: Any) -> float | None:
    """--budget in seconds (None: none); only with --until-decisive (``rule``)."""
    if args.budget is None:
        return None
    budget = parse_duration(args.budget)
    if rule is None:
        raise HarnessError(f"bad --budget {args.budget!r} without --until-decisive; valid: "
                           "--budget with --until-decisive")
    return budget


def cmd_run(args: argparse.Namespace) -> int:
    scale = get_scale(args.scale)
    if args.address and not args.dry_run:
        check_address(args.address)  # unreachable cluster: one line, exit 2, nothing written
    exp = load_table(args)
    plan = make_plan(exp, scale, args.seeds, data=dataset(args, exp), overrides=scale_overrides(args))
    check_plan_overrides(plan)
    rule = looks(args)
    budget = _budget(args, rule)
    check_tracking(args)  # --log-dir without --log mlflow: one line, exit 2, nothing written
    if args.dry_run:  # every flag above is checked; --storage's form too (it is not probed)
        from harness.estimate import print_plan  # tabulate

        if args.storage:
            Storage.parse(args.storage)
        print_plan(plan, args.store, args.data_root)
        schedule_warnings(plan, args.data_root, refuse_small=False)
        return 0
    from harness.orchestrator import run_plan  # Ray
    from harness.store import Store  # pandas

    check_storage(args)  # unreachable or unwritable --storage: one line, exit 2, nothing written
    schedule_warnings(plan, args.data_root)  # measures a user's folder once, before the workers
    Store(args.store).close()  # an unwritable or corrupt store fails here, before Ray starts
    if rule is not None:
        return _run_decisive(args, exp, scale, rule, budget)
    summary = run_plan(plan, run_options(args), argv=sys.argv)
    report = _report(args, exp, scale, plan.seeds, None)
    out = {**asdict(summary), "report": report}
    if args.json:
        emit_json(out)
    else:
        print(f"{summary.table} @ {summary.scale}: {summary.trials} trials, {summary.done} done, "
              f"{summary.failed} failed, {summary.diverged} diverged, {summary.skipped} skipped "
              f"in {summary.wall_s:.0f}s" + (f"; report {report}" if report else ""))
    return 0 if summary.failed == 0 else 1

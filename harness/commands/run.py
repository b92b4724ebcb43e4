"""``harness run TABLE``: plan a table's trials, train the missing ones on Ray Tune, report."""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict


def register(sub: argparse._SubParsersAction, common) -> None:
    p = sub.add_parser("run", help="run a paper table, an experiment file, or a trick grid",
                       description="Run every trial of TABLE (paper_table2..9, a .yaml/.toml "
                       "experiment file, or 'grid' with --model/--tricks/--design) through Ray "
                       "Tune, store the results and write the report. Stored trials are reused.")
    p.add_argument("table", help="paper_table2 .. paper_table9, PATH.yaml|.toml, or grid")
    common(p)
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the scale's)")
    p.add_argument("--address", default=None, help="join this Ray cluster (HOST:PORT or auto); default: embedded local Ray")
    p.add_argument("--max-concurrent", type=int, default=None, help="at most K trials at once")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial (default: 1 at the paper scale, 0.25 for miniatures, 0 without GPUs)")
    p.add_argument("--workers-per-trial", type=int, default=None,
                   help="data-parallel workers per trial (Ray Train TorchTrainer, DDP; gloo on CPU). "
                   "Default: --gpus-per-trial when it is above 1, else 1")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a crashed trial (from its checkpoint)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and a compute estimate; train nothing")
    p.add_argument("--no-report", action="store_true", help="skip writing the report")
    p.add_argument("--json", action="store_true", help="last stdout line: a JSON summary")
    p.add_argument("--model", default=None, help="grid: the model")
    p.add_argument("--tricks", default=None, help="grid: comma-separated tricks")
    p.add_argument("--design", default="factorial", help="grid: factorial | loo | stack")
    from harness.cli import data_loading_args

    data_loading_args(p)
    p.set_defaults(func=cmd_run)


def load_table(args: argparse.Namespace):
    from harness.experiments import load_experiment

    if args.table == "grid":
        from harness.experiments.grid import grid_experiment

        return grid_experiment(args.model, args.tricks, args.design, getattr(args, "seeds", None))
    return load_experiment(args.table)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.cli import emit_json
    from harness.experiments import make_plan
    from harness.scales import get_scale

    scale = get_scale(args.scale)
    for name in ("seeds", "max_concurrent"):
        v = getattr(args, name)
        if v is not None and v < 1:
            from harness.errors import HarnessError

            raise HarnessError(f"bad --{name.replace('_', '-')} {v}; valid: an integer >= 1")
    if args.address and not args.dry_run:
        from harness.ray_env import check_address

        check_address(args.address)  # unreachable cluster: one line, exit 2, nothing written
    exp = load_table(args)
    plan = make_plan(exp, scale, args.seeds, data=_data_arg(args, exp))
    if args.dry_run:
        from harness.estimate import print_plan

        print_plan(plan, args.store)
        return 0
    from harness.orchestrator import RunOptions, run_plan
    from harness.store import Store
    from harness.trial import TrainOptions

    Store(args.store).close()  # an unwritable or corrupt store fails here, before Ray starts
    workers, gpus = _workers(args)
    opts = RunOptions(store=args.store, address=args.address, max_concurrent=args.max_concurrent,
                      cpus_per_trial=args.cpus_per_trial, gpus_per_trial=gpus, workers_per_trial=workers,
                      max_failures=args.max_failures,
                      train=TrainOptions(data_root=args.data_root, decode=args.decode,
                                         loader_workers=args.loader_workers))
    summary = run_plan(plan, opts, argv=sys.argv)
    report = None
    if not args.no_report:
        from harness.report import write_report

        report = str(write_report(exp, scale, args.store, seeds=plan.seeds,
                                  data=_data_arg(args, exp), data_root=args.data_root))
        print(f"report: {report}", file=sys.stderr)
    out = {**asdict(summary), "report": report}
    if args.json:
        emit_json(out)
    else:
        print(f"{summary.table} @ {summary.scale}: {summary.trials} trials, {summary.done} done, "
              f"{summary.failed} failed, {summary.diverged} diverged, {summary.skipped} skipped "
              f"in {summary.wall_s:.0f}s" + (f"; report {report}" if report else ""))
    return 0 if summary.failed == 0 else 1


def _workers(args: argparse.Namespace) -> tuple[int, float | None]:
    """--gpus-per-trial N > 1 means N DDP workers with one GPU each (global batch unchanged)."""
    from harness.errors import HarnessError

    gpus = args.gpus_per_trial
    if gpus is not None and gpus < 0:
        raise HarnessError(f"bad --gpus-per-trial {gpus}; valid: a number >= 0")
    workers = args.workers_per_trial or (int(gpus) if gpus and gpus > 1 else 1)
    if workers < 1:
        raise HarnessError(f"bad --workers-per-trial {workers}; valid: an integer >= 1")
    if gpus and gpus > 1:
        if gpus != int(gpus):
            raise HarnessError(f"bad --gpus-per-trial {gpus}; above 1 it must be a whole number of GPUs")
        gpus = 1.0
    return workers, gpus


def _data_arg(args: argparse.Namespace, exp) -> str | None:
    """An ImageFolder --data-root is the dataset itself for tables that need one (Table 7)."""
    if exp.requires_imagefolder and args.data_root:
        return args.data_root
    return None

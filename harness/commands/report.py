"""``harness report TABLE``: write reports/<scale>/<table>.md from the results store.
``harness report history TABLE``: the regression gate's nights, reports/history/<table>-<scale>.md."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.args import (dataset, decisive_args, looks, scale_override_args, scale_overrides, seeds_args,
                                   table_args)
from harness.errors import HarnessError
from harness.experiments import load_experiment
from harness.experiments.decompose import decompose_experiment
from harness.scales import get_scale


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the paper-style report of a table from the store",
                       description="Write reports/<scale>/<table>.md (the paper's layout, ours "
                       "beside the paper's numbers, deltas and verdicts, figures) from the trials "
                       "stored for TABLE, and refresh reports/README.md. Trains nothing.")
    p.add_argument("table", help="paper_table2 .. paper_table9 or PATH.yaml|.toml; or 'history' "
                   "followed by the table: the gate's runs of it over the nights")
    p.add_argument("history_table", nargs="?", default=None, metavar="TABLE",
                   help="with 'history': the table whose gate history to plot")
    table_args(p)
    scale_override_args(p)
    seeds_args(p, help="seeds per cell the table was run with (default: the scale's)")
    p.add_argument("--out", default="reports", help="reports folder (default reports)")
    p.add_argument("--no-figures", action="store_true", help="write the markdown only")
    p.add_argument("--decompose", default=None, metavar="ROW",
                   help="the report of ROW's decomposition (run TABLE --decompose ROW)")
    decisive_args(p, report=True)
    p.set_defaults(func=cmd_report)


def cmd_history(args: argparse.Namespace) -> int:
    """One plot per gated metric over the gate's runs, with change points (ruptures)."""
    from harness.report.history import write_history  # matplotlib, ruptures

    if not args.history_table:
        raise HarnessError("report history needs a table: python -m harness report history TABLE "
                           "[--scale S] [--store PATH]")
    scale = get_scale(args.scale)
    exp = load_experiment(args.history_table)
    if not Path(args.store).is_file():
        raise HarnessError(f"no results store at {args.store}; the gate's history lives in the store "
                           "`harness regress` used (pass --store PATH)")
    print(write_history(args.store, exp.name, scale.name, args.out, figures=not args.no_figures))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import write_report  # pandas, matplotlib

    if args.table == "history":
        return cmd_history(args)
    if args.history_table is not None:
        raise HarnessError(f"bad argument {args.history_table!r} after {args.table!r}; valid: "
                           "`report TABLE` or `report history TABLE`")
    if args.table == "grid":
        raise HarnessError("grid reports come from `python -m harness run grid --model M --tricks "
                           "T1,T2 ...` (it writes the grid's report); `report` takes a paper table "
                           "or an experiment file")
    scale = get_scale(args.scale)
    exp = load_experiment(args.table)
    if args.decompose:
        exp = decompose_experiment(exp, args.decompose)
    if not Path(args.store).is_file():
        raise HarnessError(f"no results store at {args.store}; run `python -m harness run "
                           f"{args.table} --scale {scale.name}` first or pass --store PATH")
    path = write_report(exp, scale, args.store,
                        seeds=list(range(args.seeds)) if args.seeds else None,
                        out_dir=args.out, data=dataset(args, exp), data_root=args.data_root,
                        figures=not args.no_figures, looks=looks(args), overrides=scale_overrides(args))
    print(path)
    return 0

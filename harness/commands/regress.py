"""``harness regress``: the nightly gate (exit 0 pass, 1 regression, 2 bad input).

  python -m harness regress paper_table6 --scale local            # train missing, compare
  python -m harness regress paper_table6 --scale local --rerun    # retrain everything
  python -m harness regress paper_table6 --scale local --no-train # compare stored results
"""
from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction, common) -> None:
    p = sub.add_parser("regress", help="nightly gate: run a table and compare it with its baseline",
                       description="Run TABLE through the orchestrator (stored trials of the same "
                       "spec are reused), compare every cell with the frozen baseline and write "
                       "reports/regress/<table>-<scale>-<stamp>.md/.json. Exit 0: pass, "
                       "1: regression (the cells are named), 2: bad input or no baseline.")
    p.add_argument("table", help="paper_table2 .. paper_table9 or PATH.yaml|.toml")
    common(p)
    p.add_argument("--baseline", default=None, metavar="FILE",
                   help="baseline file (default results/baselines/<table>-<scale>[-<name>].json)")
    p.add_argument("--name", default=None, help="compare with the baseline saved under this --name")
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the table's/scale's)")
    p.add_argument("--seed-offset", type=int, default=0,
                   help="use seeds K..K+N-1, e.g. a seed set other than the baseline's (default 0)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--rerun", action="store_true",
                      help="retrain every trial into a fresh temporary store (nothing reused)")
    mode.add_argument("--no-train", action="store_true",
                      help="train nothing: compare the results already in --store")
    p.add_argument("--address", default=None, help="join this Ray cluster (HOST:PORT or auto)")
    p.add_argument("--max-concurrent", type=int, default=None, help="at most K trials at once")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial (default: the orchestrator's choice)")
    p.add_argument("--json", action="store_true", help="last stdout line: a JSON summary")
    p.set_defaults(func=cmd_regress)


def cmd_regress(args: argparse.Namespace) -> int:
    from harness.commands.baseline import build_plan
    from harness.errors import HarnessError
    from harness.regress import EXIT_PASS, regress, resolve_baseline

    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise HarnessError(f"bad --max-concurrent {args.max_concurrent}; valid: an integer >= 1")
    plan = build_plan(args)
    # The baseline is checked before anything trains: a missing one costs nothing.
    baseline = resolve_baseline(plan.experiment.name, args.table, plan.scale.name, args.name,
                                args.baseline, store=args.store)
    run_options = {"data_root": args.data_root, "address": args.address,
                   "max_concurrent": args.max_concurrent, "gpus_per_trial": args.gpus_per_trial}
    result = regress(plan, baseline, store=args.store, rerun=args.rerun, no_train=args.no_train,
                     run_options=run_options)
    if result.exit_code != EXIT_PASS:
        print(f"regression: {result.message}", file=sys.stderr)
    if args.json:
        from harness.cli import emit_json

        emit_json({k: v for k, v in result.summary.items() if k != "baseline_provenance"})
    else:
        print(result.message)
    return result.exit_code

"""``harness regress``: the nightly gate (exit 0 pass, 1 regression, 2 bad input).

  python -m harness regress paper_table6 --scale local            # train missing, compare
  python -m harness regress paper_table6 --scale local --rerun    # retrain everything
  python -m harness regress paper_table6 --scale local --no-train # compare stored results
  python -m harness regress paper_table6 --scale paper --gpus-per-trial 8  # trials as `run` trains them
  python -m harness regress paper_table6 --budget 12 --strict-determinism   # reruns, determinism

Exit 0: pass (also when checks stayed undecided: they are listed), 1: regression, 2: bad input.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from harness.commands.args import (DEFAULT_STORE, check_storage, cluster_args, emit_json, integer, json_arg,
                                   loading_args, run_options, seeds_args, table_args, tracking_args)
from harness.commands.baseline import build_plan
from harness.ray_env import check_address
from harness.storage import Storage


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("regress", help="nightly gate: run a table and compare it with its baseline",
                       description="Run TABLE through the orchestrator (stored trials of the same "
                       "spec are reused), compare every cell with the frozen baseline (seed-noise "
                       "checks of each cell, model and trick, the tricks' mechanisms, what each "
                       "trial applied, speed; docs/nightly.md) and write "
                       "reports/regress/<table>-<scale>-<stamp>.md/.json. Exit 0: pass, "
                       "1: regression (the cells are named), 2: bad input or no baseline.")
    p.add_argument("table", help="paper_table2 .. paper_table9 or PATH.yaml|.toml")
    table_args(p)
    p.add_argument("--baseline", default=None, metavar="FILE",
                   help="baseline file (default results/baselines/<table>-<scale>[-<name>].json)")
    p.add_argument("--name", default=None, help="compare with the baseline saved under this --name")
    seeds_args(p, offset=True)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--rerun", action="store_true",
                      help="retrain every trial into a fresh temporary store (nothing reused)")
    mode.add_argument("--no-train", action="store_true",
                      help="train nothing: compare the results already in --store")
    gate_args(p)
    cluster_args(p)
    loading_args(p)
    tracking_args(p)
    json_arg(p)
    p.set_defaults(func=cmd_regress)


def gate_args(p: argparse.ArgumentParser) -> None:
    """How the gate decides (docs/nightly.md: outcomes, machine classes)."""
    g = p.add_argument_group("decisions")
    g.add_argument("--rerun-undecided", action=argparse.BooleanOptionalAction, default=True,
                   help="give checks between a clear pass and a clear regression more seeds and "
                   "look again, and confirm a statistical regression with more seeds before "
                   "failing (default on; never with --no-train)")
    g.add_argument("--budget", type=integer(0), default=None, metavar="N",
                   help="at most N extra trials for those reruns (default: the plan's cell trials)")
    g.add_argument("--max-seeds", type=integer(1), default=None, metavar="N",
                   help="seeds a cell may grow to in reruns (default: 3 x the plan's seeds)")
    g.add_argument("--strict-determinism", action="store_true",
                   help="fail a cell whose same-seed result changed on the same machine class and "
                   "software (default: a note)")
    g.add_argument("--machine", default=None, metavar="CLASS",
                   help="compare with the baseline entry of this machine class (default: today's)")
    g.add_argument("--no-speed", action="store_true",
                   help="gate accuracy only: no speed check (a shared CI runner, or a machine "
                   "busy with other work, whose load is not the baseline's)")
    g.add_argument("--no-history", action="store_true",
                   help="do not append this run to the store's gate_history")


def _fresh_prefix(storage: str) -> str:
    return Storage.parse(storage).uri(f"regress-rerun-{time.strftime('%Y%m%d-%H%M%S')}")


def cmd_regress(args: argparse.Namespace) -> int:
    from harness.regress import EXIT_PASS, GateOptions, regress, resolve_baseline  # pandas, tabulate

    plan = build_plan(args)
    # The baseline is checked before anything trains: a missing one costs nothing.
    baseline = resolve_baseline(plan.experiment.name, args.table, plan.scale.name, args.name,
                                args.baseline, store=args.store, default_store=DEFAULT_STORE)
    # --no-train starts no trial, so it needs neither Ray nor the cluster flags' checks.
    opts = None if args.no_train else run_options(args)
    gate = GateOptions(rerun_undecided=args.rerun_undecided, budget=args.budget,
                       max_seeds=args.max_seeds, strict_determinism=args.strict_determinism,
                       machine=args.machine, speed=not args.no_speed, history=not args.no_history)
    if opts is not None:
        if args.address:
            check_address(args.address)  # unreachable or refusing cluster: one line, exit 2
        check_storage(args)  # unreachable or unwritable --storage: one line, exit 2, nothing written
        if args.rerun and opts.storage:  # nothing reused: a fresh prefix, like the fresh store
            opts = dataclasses.replace(opts, storage=_fresh_prefix(opts.storage))
    result = regress(plan, baseline, store=args.store, rerun=args.rerun, no_train=args.no_train,
                     run_options=opts, options=gate)
    if result.exit_code != EXIT_PASS:
        print(f"regression: {result.message}", file=sys.stderr)
    if result.summary.get("undecided"):
        print("warning: undecided (rerun band, seeds or budget ran out): "
              + "; ".join(result.summary["undecided"]), file=sys.stderr)
    if args.json:
        emit_json({k: v for k, v in result.summary.items() if k != "baseline_provenance"})
    else:
        print(result.message)
    return result.exit_code

"""``harness list``: models, tables, scales, recipes, runs, trials."""
from __future__ import annotations

import argparse
import json

from harness.commands.args import store_arg
from harness.experiments import load_experiment, make_plan, paper_tables
from harness.models import MODEL_NAMES, model_stats
from harness.recipe import NAMED_RECIPES
from harness.scales import SCALES

WHAT = ("models", "tables", "scales", "recipes", "runs", "trials")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list models, tables, scales, recipes, runs or trials")
    p.add_argument("what", choices=WHAT)
    p.add_argument("--json", action="store_true", help="print a JSON array")
    store_arg(p)
    p.add_argument("--table", default=None, help="with 'trials': only this table")
    p.set_defaults(func=cmd_list)


def _models() -> list[dict]:
    return [model_stats(name) for name in MODEL_NAMES]


def _tables() -> list[dict]:
    out = []
    for name in paper_tables():
        exp = load_experiment(name)
        counts = {}
        for s in SCALES.values():
            try:
                counts[s.name] = len(make_plan(exp, s, data="ImageFolder" if exp.requires_imagefolder else None).all_trials())
            except Exception as exc:  # a table that cannot be planned at a scale says why
                counts[s.name] = f"n/a ({exc})"
        out.append({"name": name, "title": exp.title, "rows": len(exp.rows),
                    "columns": len(exp.columns), "trials": counts})
    return out


def _scales() -> list[dict]:
    return [{"name": s.name, "dataset": s.dataset, "image_size": s.image_size, "seeds": s.seeds,
             "epoch_factor": s.epoch_factor, "batch_factor": s.batch_factor,
             "lr_factor": s.lr_factor,
             "deviations": list(s.deviations)} for s in SCALES.values()]


def _recipes() -> list[dict]:
    return [{"name": k, "tricks": r.tricks(), "lr": r.lr, "batch_size": r.batch_size,
             "epochs": r.epochs} for k, r in NAMED_RECIPES.items()]


def _store_rows(args, kind: str) -> list[dict]:
    from harness.store import Store  # pandas

    with Store(args.store, readonly=True) as st:
        df = st.runs_df() if kind == "runs" else st.trials_df(**({"table_name": args.table} if args.table else {}))
    if kind == "trials":
        cols = [c for c in ("spec_hash", "table_name", "row_label", "column_label", "model", "scale",
                            "seed", "status", "top1", "top5", "train_img_per_s", "wall_s") if c in df]
        df = df[cols]
    return json.loads(df.to_json(orient="records"))


def cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    if args.what in ("runs", "trials"):
        rows = _store_rows(args, args.what)
    else:
        rows = {"models": _models, "tables": _tables, "scales": _scales, "recipes": _recipes}[args.what]()
    if args.json:
        print(json.dumps(rows, default=str))
    elif rows:
        flat = [{k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()} for r in rows]
        print(tabulate(flat, headers="keys"))
        if args.what == "models":
            print("\nand any timm:NAME (timm.list_models(); pip install "
                  "'bag-of-tricks-harness[models]') or torchvision:NAME "
                  "(torchvision.models.list_models()), built untrained")
    else:
        print(f"no {args.what}")
    return 0

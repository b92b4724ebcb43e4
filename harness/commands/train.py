"""``harness train``: one trial, standalone (torch and torchvision only; no Ray)."""
from __future__ import annotations

import argparse
import sys

from harness.commands.args import (emit_json, loading_args, scale_override_args, scale_overrides, table_args,
                                   train_options)
from harness.data_scale import schedule_warning, trial_scale
from harness.errors import HarnessError
from harness.models import check_model
from harness.recipe import named_recipe
from harness.scales import get_scale
from harness.spec import TrialSpec
from harness.trainer import run_trial


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train and evaluate one model (no Ray needed)",
                       description="Train one trial. Progress goes to stderr; the last line "
                       "of stdout is one JSON object (status, top1, top5, epochs, train_img_per_s, wall_s, ...).")
    p.add_argument("--model", required=True, help="a model name (see 'list models'), or timm:NAME / torchvision:NAME "
                   "(any model of those libraries, built untrained for the data's classes and channels)")
    p.add_argument("--recipe", default="baseline", help="a named recipe (see 'list recipes')")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override any recipe knob, e.g. --set lr_schedule=cosine (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default="", help="dataset name (fashion_mnist, synthetic) or ImageFolder path; default: the scale's")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when present)")
    p.add_argument("--checkpoint-dir", default=None, help="write ckpt.pt here each epoch; resume from it")
    p.add_argument("--teacher", default=None, help="teacher checkpoint for distill=true (Sec 5.3)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: the scale's default)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-small-map-convs", dest="small_map_convs", action="store_false",
                   help="on a CPU, keep torch's kernels for convs on <=2x2 feature maps instead "
                   "of the dense-map fast path (harness/models/small_maps.py)")
    p.add_argument("--compile-mode", default=None, metavar="MODE",
                   help="torch.compile mode (implies --compile): default, reduce-overhead (CUDA graphs), "
                   "max-autotune, max-autotune-no-cudagraphs")
    table_args(p)
    loading_args(p)
    scale_override_args(p)
    p.set_defaults(func=cmd_train)


def parse_sets(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HarnessError(f"bad --set {item!r}; expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def cmd_train(args: argparse.Namespace) -> int:
    scale = get_scale(args.scale)
    check_model(args.model)  # a registered model, timm:NAME or torchvision:NAME
    sets = parse_sets(args.sets)
    if args.compile or args.compile_mode:
        sets["compile"] = "true"
    if args.compile_mode:
        sets["compile_mode"] = args.compile_mode
    recipe = named_recipe(args.recipe).replace(**sets).validate()
    spec = TrialSpec(model=args.model, recipe=recipe, scale=scale.name, seed=args.seed, data=args.data,
                     overrides=scale_overrides(args))
    warning = schedule_warning(trial_scale(spec, args.data_root, count_folder=bool(args.epochs)), recipe)  # bad --image-size: exit 2 here
    if warning:
        print(warning, file=sys.stderr, flush=True)
    opts = train_options(args, device=args.device, checkpoint_dir=args.checkpoint_dir,
                         teacher_ckpt=args.teacher, threads=args.threads,
                         small_map_convs=args.small_map_convs)
    result = run_trial(spec, opts)
    emit_json({**result.to_json(), "spec_hash": spec.hash, "model": spec.model,
               "scale": scale.name, "recipe": args.recipe, "tricks": recipe.tricks()})
    return 0 if result.status == "done" else 1

"""Turn an Experiment into trials: cells (row x column) x seeds, with teachers first.

Each row's recipe is stacked as :func:`harness.experiments.schema.row_recipes` says; column
deltas (e.g. Table 4's batch 256 vs 1024) apply last.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from harness.errors import HarnessError, unknown
from harness.experiments.schema import Experiment, Row, read_experiment_file, row_recipes
from harness.recipe import Recipe
from harness.scales import Scale, ScaleOverrides
from harness.spec import TrialSpec

HERE = Path(__file__).resolve().parent
TEACHER_SEED = 0  # one teacher per recipe, shared by every student seed (like a pretrained one)


def paper_tables() -> dict[str, Path]:
    return {p.stem: p for p in sorted(HERE.glob("paper_table*.yaml"))}


def load_experiment(name: str) -> Experiment:
    """A paper table by name (``paper_table6``) or a user's experiment file by path."""
    tables = paper_tables()
    if name in tables:
        return read_experiment_file(tables[name])
    path = Path(name)
    if path.suffix in (".yaml", ".yml", ".toml"):
        return read_experiment_file(path)
    raise unknown("table", name, list(tables) + ["grid", "<path to .yaml/.toml>"])


@dataclass(frozen=True)
class Cell:
    row: str
    column: str
    model: str
    recipe: Recipe
    teacher: TrialSpec | None = None


@dataclass
class Plan:
    experiment: Experiment
    scale: Scale
    seeds: list[int]
    cells: list[Cell] = field(default_factory=list)
    trials: dict[tuple[str, str], list[TrialSpec]] = field(default_factory=dict)
    teachers: list[TrialSpec] = field(default_factory=list)
    backbones: list[TrialSpec] = field(default_factory=list)  # transfer tables (Sec 6)

    def stages(self) -> list[list[TrialSpec]]:
        """Trials grouped by dependency depth: a stage holds every trial whose teacher
        (Sec 5.3) and backbone (Sec 6) lie in earlier stages, so trials that need nothing
        train beside the teachers instead of waiting for them. Within a stage, trials that
        others depend on (teachers, then backbones) come first; then the cells in order."""
        cells = [t for ts in self.trials.values() for t in ts]
        ordered = list(dict.fromkeys([*self.teachers, *self.backbones, *cells]))
        depth: dict[str, int] = {}

        def depth_of(t: TrialSpec) -> int:
            if t.hash not in depth:
                deps = [d for d in (t.teacher, t.backbone) if d is not None]
                depth[t.hash] = 1 + max(map(depth_of, deps)) if deps else 0
            return depth[t.hash]

        stages: list[list[TrialSpec]] = [[] for _ in range(1 + max(map(depth_of, ordered), default=-1))]
        seen: set[str] = set()
        for t in ordered:
            if t.hash not in seen:
                seen.add(t.hash)
                stages[depth_of(t)].append(t)
        return [s for s in stages if s]

    def all_trials(self) -> list[TrialSpec]:
        return [t for stage in self.stages() for t in stage]


def _teacher_spec(exp: Experiment, row: Row, scale: Scale, data: str,
                  overrides: ScaleOverrides) -> TrialSpec | None:
    if row.teacher is None:
        return None
    model = row.teacher.model or scale.teacher_model
    return TrialSpec(model=model, recipe=row.teacher.recipe.validate(), scale=scale.name,
                     seed=TEACHER_SEED, data=data, overrides=overrides, table=exp.name,
                     row=f"teacher of '{row.label}'", column=model)


def make_plan(exp: Experiment, scale: Scale, seeds: int | None = None,
              data: str | None = None, overrides: ScaleOverrides = ScaleOverrides()) -> Plan:
    """Validate every recipe and build the trial list; raises before any compute.
    ``overrides``: --image-size / --epochs, carried in every trial's spec (and hash)."""
    n = seeds or exp.seeds or scale.seeds
    dataset = data or exp.data or ""
    if exp.requires_imagefolder and not data and scale.dataset != "imagefolder":
        raise HarnessError(f"{exp.name} needs its own dataset as an ImageFolder: pass "
                           "--data-root PATH (a folder with train/<class>/* and val/<class>/*)")
    plan = Plan(experiment=exp, scale=scale, seeds=list(range(n)))
    recipes = row_recipes(exp)
    teachers: dict[str, TrialSpec] = {}
    for row in exp.rows:
        teacher = _teacher_spec(exp, row, scale, dataset, overrides)
        if teacher is not None:
            teacher = teachers.setdefault(teacher.hash, teacher)
        for col in exp.columns:
            recipe = recipes[row.label].replace(**dict(col.recipe)).validate()
            if recipe.distill and teacher is None:
                raise HarnessError(f"{exp.source or exp.name}: row {row.label!r} has distill=true "
                                   "but no teacher; add 'teacher: {recipe: ...}' to the row")
            model = row.model or col.model
            assert model is not None  # checked by parse_experiment
            cell = Cell(row.label, col.label, model, recipe, teacher)
            plan.cells.append(cell)
            specs = [TrialSpec(model=model, recipe=recipe, scale=scale.name, seed=s, data=dataset,
                               teacher=teacher, overrides=overrides, table=exp.name, row=row.label,
                               column=col.label)
                     for s in plan.seeds]
            if exp.kind != "classification":
                plan.backbones.extend(specs)
                specs = [_transfer_spec(exp, b) for b in specs]
            plan.trials[(row.label, col.label)] = specs
    plan.teachers = list(teachers.values())
    return plan


def _transfer_spec(exp: Experiment, backbone: TrialSpec) -> TrialSpec:
    """Sec 6: fine-tune the backbone trial's network for detection or segmentation."""
    return replace(backbone, task=exp.kind, backbone=backbone, teacher=None,
                   task_args=json.dumps(dict(exp.transfer), sort_keys=True))


def subplan(plan: Plan, seeds: Mapping[tuple[str, str], int]) -> Plan:
    """``plan`` with each cell cut to its first ``seeds[cell]`` seeds (cells not named keep
    all theirs), and only the teachers and backbones those trials need: one wave of an
    adaptive run. Seeds are kept in order, so a wave's trials are ordinary trials."""
    trials = {cell: specs[:seeds.get(cell, len(specs))] for cell, specs in plan.trials.items()}
    kept = [t for ts in trials.values() for t in ts]
    teachers = {t.teacher.hash for t in kept if t.teacher is not None}
    backbones = {t.backbone.hash for t in kept if t.backbone is not None}
    n = max((len(ts) for ts in trials.values()), default=0)
    return Plan(experiment=plan.experiment, scale=plan.scale, seeds=plan.seeds[:n], cells=plan.cells,
                trials=trials, teachers=[t for t in plan.teachers if t.hash in teachers],
                backbones=[b for b in plan.backbones if b.hash in backbones])

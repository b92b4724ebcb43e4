"""A trial: one (model, recipe, data, scale, seed), identified by a stable hash.

The hash covers everything that changes the numbers a trial produces (model, recipe,
dataset, the scale's settings, seed, teacher) and nothing else: the table/row/column
labels are excluded, so tables that contain the same trial share it in the store
(Table 4's last row is Table 5's first).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.models import default_input_size
from harness.models.external import is_external, library_version
from harness.recipe import Recipe, stable_hash
from harness.scales import Scale, ScaleOverrides, get_scale

# Recipe fields that change speed only, not results: kept out of the trial hash.
EXECUTION_FIELDS = ("channels_last", "compile", "compile_mode")
BUILTIN_DATA = ("fashion_mnist", "synthetic")  # in-memory sets; anything else is an ImageFolder
# The rule a scale follows on a user's ImageFolder at smoke/local (harness/data_scale.py):
# native image size, the training split's own mean/std, the step floor. In such a trial's
# hash, so those trials are not confused with the ones stored before the rule existed.
USER_DATA_RULE = "user-data-v1"
# --image-size 224 used to leave a model whose own crop differs (Inception-V3: 299) at that
# crop; since 2026-12-01 it is every model's crop (harness.tasks.classification.own_crop_model),
# so such a trial's hash says which rule trained it
PAPER_CROP = 224
CROP_RULE = "explicit-size-v2"


@dataclass(frozen=True)
class TrialSpec:
    """Everything needed to train one trial; ``teacher`` is another trial (Sec 5.3)."""

    model: str
    recipe: Recipe
    scale: str
    seed: int
    data: str = ""  # dataset name or ImageFolder path; "" = the scale's dataset
    teacher: "TrialSpec | None" = None
    task: str = "classification"  # | detection | segmentation (Sec 6 transfer)
    backbone: "TrialSpec | None" = None  # the classification trial a transfer trial starts from
    task_args: str = ""  # JSON of the transfer settings (experiment's 'transfer' block)
    overrides: ScaleOverrides = ScaleOverrides()  # --image-size, --epochs (harness/data_scale.py)
    table: str = field(default="", compare=False)
    row: str = field(default="", compare=False)
    column: str = field(default="", compare=False)

    @property
    def scale_obj(self) -> Scale:
        return get_scale(self.scale)

    @property
    def dataset(self) -> str:
        return self.data or self.scale_obj.dataset

    @property
    def user_folder(self) -> bool:
        """An ImageFolder named by the spec itself at a miniature scale: the scale is then
        derived from that folder (harness/data_scale.py)."""
        return bool(self.data) and self.data not in BUILTIN_DATA and self.data != "imagefolder" \
            and self.scale != "paper"

    def hash_payload(self) -> dict[str, Any]:
        recipe = {k: v for k, v in self.recipe.to_dict().items() if k not in EXECUTION_FIELDS}
        return {
            "model": self.model,
            "recipe": recipe,
            "scale": self.scale,
            "scale_fp": self.scale_obj.fingerprint(),
            "seed": self.seed,
            "data": self.dataset,
            "teacher": self.teacher.hash if self.teacher else None,
        } | self._task_payload() | self._library_payload() | self._scale_payload()

    def _scale_payload(self) -> dict[str, Any]:
        """A user folder's derived scale and the user's overrides; a Fashion-MNIST, synthetic
        or paper-scale trial without overrides adds nothing (its hash is unchanged)."""
        out: dict[str, Any] = dict(self.overrides.payload())
        if self.user_folder:
            out["scale_rule"] = USER_DATA_RULE
        if self.overrides.image_size == PAPER_CROP and default_input_size(self.model) != PAPER_CROP:
            out["crop_rule"] = CROP_RULE  # such a trial trained at its own crop before the rule
        return out

    def _task_payload(self) -> dict[str, Any]:
        """Transfer trials add their task; classification hashes stay as they always were."""
        if self.task == "classification":
            return {}
        return {"task": self.task, "backbone": self.backbone.hash if self.backbone else None,
                "task_args": self.task_args}

    def _library_payload(self) -> dict[str, Any]:
        """An external model (``timm:NAME``) is the network of one library version: a new
        version is a new trial. The harness's own models' hashes stay as they always were."""
        return {"model_library": library_version(self.model)} if is_external(self.model) else {}

    @property
    def hash(self) -> str:
        return stable_hash(self.hash_payload())

    def describe(self) -> str:
        label = " / ".join(x for x in (self.table, self.row, self.column) if x)
        return f"{label or self.model} seed={self.seed} [{self.hash[:8]}]"


def spec_to_dict(spec: TrialSpec) -> dict[str, Any]:
    """Plain-data form (for Ray configs and checkpoints); ``spec_from_dict`` inverts it."""
    return {"model": spec.model, "recipe": spec.recipe.to_dict(), "scale": spec.scale,
            "seed": spec.seed, "data": spec.data, "table": spec.table, "row": spec.row,
            "column": spec.column, "teacher": spec_to_dict(spec.teacher) if spec.teacher else None,
            "task": spec.task, "task_args": spec.task_args,
            "backbone": spec_to_dict(spec.backbone) if spec.backbone else None,
            "overrides": spec.overrides.payload()}


def spec_from_dict(d: dict[str, Any]) -> TrialSpec:
    return TrialSpec(model=d["model"], recipe=Recipe.from_dict(d["recipe"]), scale=d["scale"],
                     seed=int(d["seed"]), data=d.get("data", ""),
                     teacher=spec_from_dict(d["teacher"]) if d.get("teacher") else None,
                     task=d.get("task", "classification"), task_args=d.get("task_args", ""),
                     backbone=spec_from_dict(d["backbone"]) if d.get("backbone") else None,
                     overrides=ScaleOverrides(**d.get("overrides", {})),
                     table=d.get("table", ""), row=d.get("row", ""), column=d.get("column", ""))

"""Every knob of one training run, in the paper's units.

Defaults are the paper's baseline (Sec. 2.1): NAG with momentum 0.9, weight decay 1e-4,
batch 256, lr 0.1, 120 epochs, step decay /10 at epochs 30/60/90, FP32, Xavier init.
Epoch counts, milestones and warmup stay in paper epochs; a ``Scale`` maps them onto the
scale's (shorter) schedule proportionally, so one recipe means the same thing at every
scale. Tricks are switched on by fields, never by code paths outside ``tricks/``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any, Mapping

from harness.errors import HarnessError, unknown
from tricks.linear_scaling import scaled_lr
from tricks.registry import recipe_changes, tricks_on

SCHEDULES = ("step", "cosine")
PRECISIONS = ("fp32", "fp16", "bf16")
SMOOTHING_FORMS = ("paper", "uniform")  # eps/(K-1) as Eq. in Sec 5.2 | eps/K (GluonCV, torch)
DISTILL_FORMS = ("paper", "gluoncv")  # sum of both terms | 0.5/0.5 weighting (GluonCV)
OPTIMIZERS = ("nag", "sgd")
INITS = ("xavier_uniform", "kaiming_normal")
# torch.compile modes; "reduce-overhead" captures CUDA graphs (static shapes: the trainer drops
# the last partial training batch)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class Recipe:
    """A training recipe. Field comments give units; defaults are Sec. 2.1's baseline."""

    batch_size: int = 256  # images per step, paper units (scaled by the Scale)
    base_lr: float = 0.1  # lr for batch 256; see linear_scaling
    linear_scaling: bool = False  # Sec 3.1: lr = base_lr * batch_size / 256
    optimizer: str = "nag"  # Nesterov accelerated gradient (Sec 2.1)
    momentum: float = 0.9  # not stated in the paper; GluonCV default
    weight_decay: float = 1e-4  # not stated in the paper; GluonCV default
    epochs: float = 120.0  # paper epochs (mixup rows: 200)
    lr_schedule: str = "step"  # "step" (Sec 2.1) | "cosine" (Sec 5.1)
    step_milestones: tuple[float, ...] = (30.0, 60.0, 90.0)  # paper epochs
    step_gamma: float = 0.1
    warmup_epochs: float = 0.0  # Sec 3.1 uses 5
    zero_gamma: bool = False  # Sec 3.1
    no_bias_decay: bool = False  # Sec 3.1
    precision: str = "fp32"  # "fp16" (Sec 3.2) becomes bf16 on a CPU
    label_smoothing: float = 0.0  # eps of Sec 5.2; 0 = off
    label_smoothing_form: str = "paper"
    mixup: bool = False  # Sec 5.4
    mixup_alpha: float = 0.2
    distill: bool = False  # Sec 5.3; needs a teacher
    distill_temperature: float = 20.0
    distill_form: str = "paper"
    init: str = "xavier_uniform"  # Sec 2.1
    channels_last: bool = True  # memory format only; no effect on the maths
    compile: bool = False  # torch.compile the model
    compile_mode: str = "default"  # one of COMPILE_MODES; "reduce-overhead" = CUDA graphs

    # ---- derived values -------------------------------------------------------------
    @property
    def lr(self) -> float:
        """Initial learning rate after linear scaling (Sec 3.1)."""
        return scaled_lr(self.base_lr, self.batch_size) if self.linear_scaling else self.base_lr

    def tricks(self) -> list[str]:
        """Names of the paper's tricks this recipe switches on (for reports and logs)."""
        return tricks_on(self)

    # ---- validation -----------------------------------------------------------------
    def validate(self) -> "Recipe":
        """Raise HarnessError naming the first bad value; return self when all is well."""
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _check(self.base_lr > 0, "base_lr", self.base_lr, "a number > 0")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "[0, 1)")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")
        _check(self.epochs > 0, "epochs", self.epochs, "a number > 0")
        _check(0 <= self.warmup_epochs < self.epochs, "warmup_epochs", self.warmup_epochs,
               f"[0, epochs={self.epochs})")
        # options a recipe does not use are not held against it (milestones under cosine,
        # mixup's alpha without mixup, ...): they change nothing the trial computes
        if self.lr_schedule == "step":
            _check(all(0 < m < self.epochs for m in self.step_milestones), "step_milestones",
                   self.step_milestones, f"values in (0, epochs={self.epochs}) for the step "
                   "schedule (set step_milestones, or epochs)")
            _check(0 < self.step_gamma <= 1, "step_gamma", self.step_gamma, "(0, 1]")
        _check(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing, "[0, 1)")
        if self.mixup:
            _check(self.mixup_alpha > 0, "mixup_alpha", self.mixup_alpha, "a number > 0")
        if self.distill:
            _check(self.distill_temperature > 0, "distill_temperature", self.distill_temperature,
                   "a number > 0")
        for name, choices in (("lr_schedule", SCHEDULES), ("precision", PRECISIONS),
                              ("label_smoothing_form", SMOOTHING_FORMS),
                              ("distill_form", DISTILL_FORMS), ("optimizer", OPTIMIZERS),
                              ("init", INITS), ("compile_mode", COMPILE_MODES)):
            if getattr(self, name) not in choices:
                raise unknown(name, getattr(self, name), choices)
        return self

    # ---- construction from text -----------------------------------------------------
    def replace(self, **changes: Any) -> "Recipe":
        """A copy with ``changes`` applied (values coerced to each field's type)."""
        return dataclasses.replace(self, **coerce_fields(changes))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["step_milestones"] = list(self.step_milestones)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Recipe":
        return cls().replace(**dict(data))


def _check(ok: bool, name: str, value: object, valid: str) -> None:
    if not ok:
        raise HarnessError(f"bad recipe value {name}={value!r}; valid: {valid}")


_FIELD_TYPES = {f.name: f.type for f in fields(Recipe)}


def coerce_fields(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Check names against Recipe's fields and coerce strings ("0.1", "true") to their types."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in _FIELD_TYPES:
            raise unknown("recipe key", key, _FIELD_TYPES)
        out[key] = _coerce(key, _FIELD_TYPES[key], value)
    return out


def _coerce(key: str, typ: str, value: Any) -> Any:
    try:
        if typ == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if typ == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if typ == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ == "str":
            if not isinstance(value, str):
                raise ValueError
            return value
        if typ.startswith("tuple"):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(float(v) for v in items if str(v).strip() != "")
    except (TypeError, ValueError):
        pass
    raise HarnessError(f"bad recipe value {key}={value!r}; expected type {typ}")


# ---- named recipes ------------------------------------------------------------------
# Each is the Sec 2.1 baseline plus the recipe changes (tricks/registry.py) of the tricks it
# stacks: Sec 3's efficient training, then Table 6's refinements.
SEC3_TRICKS = ("linear_scaling", "warmup", "zero_gamma", "no_bias_decay", "fp16")  # BS 1024, FP16
RECIPE_TRICKS: dict[str, tuple[str, ...]] = {
    "baseline": (),
    "efficient": SEC3_TRICKS,
    "cosine": (*SEC3_TRICKS, "cosine"),
    "label_smoothing": (*SEC3_TRICKS, "cosine", "label_smoothing"),
    "distill": (*SEC3_TRICKS, "cosine", "label_smoothing", "distill"),
    "mixup": (*SEC3_TRICKS, "cosine", "label_smoothing", "mixup"),  # mixup trains 200 epochs
    "distill_mixup": (*SEC3_TRICKS, "cosine", "label_smoothing", "mixup", "distill"),
}
BASELINE = Recipe()
NAMED_RECIPES: dict[str, Recipe] = {name: BASELINE.replace(**recipe_changes(tricks))
                                    for name, tricks in RECIPE_TRICKS.items()}


def named_recipe(name: str) -> Recipe:
    if name not in NAMED_RECIPES:
        raise unknown("recipe", name, NAMED_RECIPES)
    return NAMED_RECIPES[name]


def stable_hash(payload: Mapping[str, Any]) -> str:
    """16 hex chars of sha256 over canonical JSON: equal inputs give equal hashes forever."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

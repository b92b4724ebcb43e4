"""Image classification (Sec 2-5): the model, optimizer, schedule, loss and step of a
trial, built from its recipe. Tricks enter only here and only through the recipe, at fixed
points: model graph (model name), init (zero-gamma), parameter groups (no bias decay),
per-iteration schedule (linear scaling, warmup, step/cosine), precision (fp16/bf16 autocast +
loss scaling), targets (label smoothing, mixup) and loss (distillation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from harness import provenance
from harness.batches import BatchSource, make_batches
from harness.compile_cache import use_compile_cache
from harness.data_scale import trial_scale
from harness.cpu_heap import keep_freed_memory
from harness.distributed import all_gather_cat, all_sum, data_parallel, for_evaluation, shard_batches, world
from harness.errors import HarnessError
from harness.models import check_input_size, create_model
from harness.models.external import is_external
from harness.models.small_maps import use_small_map_convs
from harness.recipe import Recipe
from harness.scales import Scale
from harness.spec import TrialSpec
from harness.applied import (TargetTally, input_facts, optimizer_facts, schedule_facts,
                                   zero_gamma_facts)
from harness.tasks.model_tricks import apply_model_tricks
from harness.trial import TrainOptions, TrialResult, load_classifier, pick_device, seed_everything, set_threads
from tricks.distillation import distillation_loss
from tricks.label_smoothing import smooth_targets, soft_cross_entropy
from tricks.lr_schedule import LRSchedule
from tricks.mixed_precision import autocast, guard_skipped_first_step, make_scaler, resolve_precision, set_tf32
from tricks.mixup import mixup_batch
from tricks.no_bias_decay import param_groups

GAP_QUANTILES = 101  # Figure 4: the logit-gap distribution kept as this many quantiles


def make_schedule(recipe: Recipe, scale: Scale, iters_per_epoch: int) -> LRSchedule:
    """Map the recipe's paper-epoch schedule onto this scale's iterations, proportionally."""
    epochs = scale.epochs(recipe)
    total = epochs * iters_per_epoch
    frac = total / recipe.epochs  # iterations per paper epoch
    return LRSchedule(base_lr=scale.lr(recipe), total_iters=total,
                      warmup_iters=int(round(recipe.warmup_epochs * frac)),
                      kind=recipe.lr_schedule,
                      milestones=tuple(int(round(m * frac)) for m in recipe.step_milestones),
                      gamma=recipe.step_gamma)


def build_model(spec: TrialSpec, num_classes: int, in_chans: int, device: torch.device,
                small_map_convs: bool = True, crop: int | None = None
                ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model with the paper's init (Sec 2.1) and zero-gamma when asked (Sec 3.1); on a
    CPU, convs on <=2x2 maps take the dense-map fast path unless ``small_map_convs`` is off.
    ``meta["tricks"]``: what each model-level trick did to it (``harness.tasks.model_tricks``).
    ``crop``: the training crop, which an external model is built for (a timm ViT's grid)."""
    kwargs = dict(spec.scale_obj.model_kwargs_for(spec.model), num_classes=num_classes,
                  in_chans=in_chans, init=spec.recipe.init)
    if is_external(spec.model) and crop is not None:
        kwargs["img_size"] = crop
    model = create_model(spec.model, **kwargs)
    tricks = apply_model_tricks(model, spec.model, spec.recipe)  # zero-gamma when asked (Sec 3.1)
    if small_map_convs and device.type == "cpu":
        use_small_map_convs(model)
    fmt = torch.channels_last if spec.recipe.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=fmt)
    meta = {"name": spec.model, "kwargs": {k: list(v) if isinstance(v, tuple) else v
                                           for k, v in kwargs.items()}, "tricks": tricks}
    return model, meta


def own_crop_model(spec: TrialSpec) -> str | None:
    """The model whose own training crop applies (``harness.batches.input_size``:
    Inception-V3's 299 px at the paper scale, Sec 4), or None when ``--image-size`` set the
    crop: the user's size is then every model's, as the report's deviations say."""
    return None if spec.overrides.image_size else spec.model


FUSED_SGD_DEVICES = ("cuda", "cpu")


def build_optimizer(model: torch.nn.Module, recipe: Recipe,
                    device: torch.device) -> torch.optim.Optimizer:
    """NAG (Sec 2.1) over param groups that honour no-bias-decay (Sec 3.1).

    The fused kernel (one pass over all parameters) serves CUDA and CPU: on a CPU the
    per-parameter loop cost ~1.9 ms a step for a miniature ResNet-50-D, the fused one 0.3 ms,
    with the same update (tests/test_optimizer.py checks it against the formula by hand)."""
    groups = param_groups(model, recipe.weight_decay, recipe.no_bias_decay)
    fused = {"fused": True} if device.type in FUSED_SGD_DEVICES else {}
    return torch.optim.SGD(groups, lr=0.0, momentum=recipe.momentum,  # lr set per iteration
                           nesterov=recipe.optimizer == "nag", **fused)


@dataclass
class StepContext:
    """Everything one training step needs; built once per trial."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: LRSchedule
    recipe: Recipe
    precision: str
    device: torch.device
    num_classes: int
    generator: torch.Generator  # on the device: batches, augmentation
    host_generator: torch.Generator  # on the CPU: mixup's lambda/permutation without a GPU sync
    teacher: torch.nn.Module | None = None


def compute_loss(ctx: StepContext, x: torch.Tensor, y: torch.Tensor,
                 tally: TargetTally | None = None) -> torch.Tensor:
    """Targets (label smoothing Sec 5.2, mixup Sec 5.4) and loss (distillation Sec 5.3);
    ``tally``, when given, counts the targets the loss gets (harness.applied)."""
    r = ctx.recipe
    soft = r.label_smoothing > 0 or r.mixup or r.distill
    targets = smooth_targets(y, ctx.num_classes, r.label_smoothing, r.label_smoothing_form) if soft else None
    if r.mixup:
        x, targets, _ = mixup_batch(x, targets, r.mixup_alpha, ctx.host_generator)
    if tally is not None:
        tally.add(targets)
    with autocast(ctx.precision, ctx.device.type):
        logits = ctx.model(x)
        teacher_logits = None
        if ctx.teacher is not None:
            with torch.no_grad():
                teacher_logits = ctx.teacher(x)  # the teacher sees the mixed input too
    if teacher_logits is not None:
        return distillation_loss(logits.float(), targets, teacher_logits.float(),
                                 r.distill_temperature, r.distill_form)
    if targets is not None:
        return soft_cross_entropy(logits, targets)
    return F.cross_entropy(logits.float(), y)


def train_step(ctx: StepContext, it: int, x: torch.Tensor, y: torch.Tensor,
               tally: TargetTally | None = None) -> torch.Tensor:
    """One SGD step; ``tally`` counts its targets (the trial's ``applied`` facts)."""
    ctx.schedule.apply(ctx.optimizer, it)
    if ctx.recipe.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    loss = compute_loss(ctx, x, y, tally)
    ctx.optimizer.zero_grad(set_to_none=True)
    ctx.scaler.scale(loss).backward()
    ctx.scaler.step(ctx.optimizer)
    ctx.scaler.update()
    return loss.detach()


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: BatchSource, precision: str,
             device: torch.device, channels_last: bool,
             gaps: list[torch.Tensor] | None = None, split: str = "test") -> tuple[float, float]:
    """Top-1 and top-5 accuracy (percent) on the test/val split. With ``gaps``, each test
    image's logit gap (max logit - mean of the others, Sec 5.2's Figure 4) is appended.
    Data-parallel: each worker scores its shard of the split; counts and gaps are gathered.
    ``split="train"``: the source's training images under the evaluation transform."""
    model = for_evaluation(model)
    model.eval()
    correct1 = torch.zeros((), device=device)
    correct5 = torch.zeros((), device=device)
    n = 0
    for x, y in (batches.eval_batches() if split == "test" else batches.train_eval_batches()):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(precision, device.type):
            logits = model(x)
        k = min(5, logits.shape[1])
        z = logits.float()
        top = z.topk(k, dim=1).indices
        hit = top == y[:, None]
        correct1 += hit[:, 0].sum()
        correct5 += hit.any(dim=1).sum()
        n += len(y)
        if gaps is not None:
            zmax = z.max(dim=1).values
            gaps.append(zmax - (z.sum(dim=1) - zmax) / (z.shape[1] - 1))
    model.train()
    counts = all_sum(torch.stack([correct1, correct5, torch.tensor(float(n), device=device)]))
    if gaps is not None and world()[1] > 1:
        gaps[:] = [all_gather_cat(torch.cat(gaps) if gaps else torch.zeros(0, device=device))]
    c1, c5, total = counts.tolist()
    return 100.0 * c1 / total, 100.0 * c5 / total


def logit_gap_summary(gaps: list[torch.Tensor], num_classes: int) -> dict[str, Any]:
    """Figure 4's data, stored with the trial: mean, count and quantiles of the logit gap."""
    g = torch.cat(gaps).cpu().double().numpy()
    g = g[np.isfinite(g)]
    if g.size == 0:
        return {"classes": num_classes, "n": 0, "mean": None, "quantiles": []}
    q = np.quantile(g, np.linspace(0.0, 1.0, GAP_QUANTILES))
    return {"classes": num_classes, "n": int(g.size), "mean": float(g.mean()),
            "quantiles": [round(float(v), 4) for v in q]}


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under torch.compile's and DDP's wrappers (state_dict keys without prefix)."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


class ClassificationTask:
    """A classification trial on its device, ready for ``harness.fit.fit``. Built in the
    order that fixes the random streams (seed, data, model, generators), so the same spec
    gives the same numbers."""

    log_prefix = ""

    def __init__(self, spec: TrialSpec, opts: TrainOptions) -> None:
        spec.recipe.validate()
        if spec.recipe.distill and not opts.teacher_ckpt:
            raise HarnessError("recipe has distill=true but no teacher checkpoint was given "
                               "(--teacher PATH, or run the table so the teacher trains first)")
        scale = trial_scale(spec, opts.data_root, count_folder=False)  # a user's folder: its own size, mean/std, schedule
        self.spec, self.opts = spec, opts
        self.device = device = pick_device(opts.device)
        if opts.keep_heap and device.type == "cpu":
            keep_freed_memory()
        set_threads(opts, scale.threads_per_trial, device)
        seed_everything(spec.seed)
        self.batch_size = scale.batch_size(spec.recipe)
        batches = make_batches(spec.dataset, scale, self.batch_size, device, spec.seed,
                               opts.data_root, opts.decode, opts.loader_workers,
                               model=own_crop_model(spec))
        model, self.meta = build_model(spec, batches.num_classes, batches.in_chans, device,
                                       opts.small_map_convs, batches.aug.out_size)
        applied = zero_gamma_facts(model)  # what ran, for the gate's invariant checks
        if is_external(spec.model) or spec.user_folder or spec.overrides.image_size:  # built-in trials: untouched
            check_input_size(model, spec.model, batches.aug.out_size, batches.in_chans, device)
        precision = resolve_precision(spec.recipe.precision, device.type)
        if device.type == "cuda":  # speed: cuDNN picks its fastest kernels; TF32 chosen, not defaulted
            torch.backends.cudnn.benchmark = True
            set_tf32(opts.tf32)
        self.rank, self.world_size = world()
        if self.world_size > 1:
            batches = shard_batches(batches, self.rank, self.world_size)
            model = data_parallel(model, device)
        if spec.recipe.compile:
            use_compile_cache()
            model = torch.compile(model, mode=spec.recipe.compile_mode)
        gen = torch.Generator(device=device).manual_seed(spec.seed)
        # on a CPU one generator serves both (results unchanged); on a GPU a host one for mixup
        host_gen = gen if device.type == "cpu" else torch.Generator().manual_seed(spec.seed + 1)
        teacher = (load_classifier(opts.teacher_ckpt, device, opts.small_map_convs)
                   if spec.recipe.distill else None)
        self.ctx = StepContext(model=model, optimizer=build_optimizer(model, spec.recipe, device),
                               scaler=make_scaler(precision, device.type),
                               schedule=make_schedule(spec.recipe, scale, batches.iters_per_epoch),
                               recipe=spec.recipe, precision=precision, device=device,
                               num_classes=batches.num_classes, generator=gen,
                               host_generator=host_gen, teacher=teacher)
        self._applied = {**applied, **optimizer_facts(self.ctx.optimizer),
                         **schedule_facts(self.ctx.schedule)}
        self._batch_facts: dict[str, float] | None = None  # the first training batch's
        self._targets = TargetTally()  # every step's targets
        if self.ctx.scaler.is_enabled():  # fp16: a skipped first step must not leave garbage momentum
            guard_skipped_first_step(self.ctx.optimizer)
        self.batches = batches
        self.iters_per_epoch = batches.iters_per_epoch
        self.epochs = scale.epochs(spec.recipe)
        self._gaps: dict[str, Any] | None = None
        self._train_top1: float | None = None  # top-1 on training images (eval transform)
        model.train()

    def result(self) -> TrialResult:
        return TrialResult(status="done", device=provenance.device_name(self.device),
                           precision=provenance.recorded_precision(self.ctx.precision, self.device,
                                                                   self.opts.tf32),
                           params=sum(p.numel() for p in unwrap(self.ctx.model).parameters()),
                           dataset_fingerprint=self.batches.fingerprint, workers=self.world_size,
                           global_batch=self.batch_size, lr=self.ctx.schedule.base_lr)

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches.train_epoch(epoch, self.ctx.generator)

    def step(self, it: int, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        if self._batch_facts is None:  # the first batch as the model sees it
            self._batch_facts = input_facts(batch[0])
        return train_step(self.ctx, it, *batch, tally=self._targets)

    def lr(self) -> float:
        return self.ctx.optimizer.param_groups[0]["lr"]

    def evaluate(self, epoch: int) -> dict[str, float | None]:
        """Top-1/top-5 after every epoch; the last epoch also keeps Figure 4's logit gaps."""
        gaps: list[torch.Tensor] | None = [] if epoch + 1 == self.epochs else None
        top1, top5 = evaluate(self.ctx.model, self.batches, self.ctx.precision, self.device,
                              self.spec.recipe.channels_last, gaps)
        if gaps is not None:
            self._gaps = logit_gap_summary(gaps, self.ctx.num_classes)
            if hasattr(self.batches, "train_eval_batches"):  # in-memory data: the regime
                self._train_top1 = evaluate(self.ctx.model, self.batches, self.ctx.precision,
                                            self.device, self.spec.recipe.channels_last,
                                            split="train")[0]
        return {"top1": top1, "top5": top5}

    def finish(self, result: TrialResult) -> None:
        if result.status == "done" and self._gaps is None and result.history:
            self.evaluate(self.epochs - 1)  # resumed after its last epoch: the saved model
        if result.status == "done" and self._gaps is not None:
            result.metrics["logit_gap"] = self._gaps
        if result.status == "done" and self._train_top1 is not None:
            result.metrics["train_top1"] = self._train_top1
        result.metrics["model_tricks"] = dict(self.meta["tricks"])  # provenance: applied / skipped
        result.metrics["applied"] = {**self._applied, **(self._batch_facts or {}),
                                      **self._targets.value()}  # measured: applied.py

    def state_dict(self) -> dict[str, Any]:
        c = self.ctx
        return {"model": unwrap(c.model).state_dict(), "optimizer": c.optimizer.state_dict(),
                "scaler": c.scaler.state_dict(), "rng": self._rng_state(), "model_meta": self.meta,
                "batch_facts": self._batch_facts, "target_tally": self._targets.state()}

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        c = self.ctx
        unwrap(c.model).load_state_dict(ckpt["model"])
        c.optimizer.load_state_dict(ckpt["optimizer"])
        c.scaler.load_state_dict(ckpt["scaler"])
        self._batch_facts = ckpt.get("batch_facts") or self._batch_facts  # older ones: the next batch's
        self._targets.load(ckpt.get("target_tally"))  # older ones: the steps after the resume
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        c.generator.set_state(ckpt["rng"]["data"].cpu())
        if "host" in ckpt["rng"] and c.host_generator is not c.generator:
            c.host_generator.set_state(ckpt["rng"]["host"].cpu())
        if "cuda" in ckpt["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"].cpu())

    def _rng_state(self) -> dict[str, torch.Tensor]:
        c = self.ctx
        state = {"torch": torch.get_rng_state(), "data": c.generator.get_state()}
        if c.host_generator is not c.generator:
            state["host"] = c.host_generator.get_state()
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state()
        return state

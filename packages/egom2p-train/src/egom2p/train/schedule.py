"""The learning-rate rule and the cosine schedule of the original trainer (docs/original-behaviour.md#training-recipe).

One difference on purpose (quirk 15 in docs/original-behaviour.md#quirks): an "epoch" is an exact number of
*optimizer* steps,
``epoch_size // global_batch`` with ``global_batch = batch_size x accum_iter x world size``, and the
schedule is indexed by the global optimizer step, so the LR never jumps. This module is the one
place that turns epochs into steps.

The recipe is world-size independent when ``schedule.global_batch_size`` is set: gradient
accumulation is derived from it, the per-GPU micro batch (``loader.batch_size``) and the world size,
so 8, 64 or 256 GPUs run the same global batch, LR, warmup and length (:func:`resolve_accum_iter`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from egom2p.train.config import ConfigError, TrainConfig


@dataclass(frozen=True)
class Schedule:
    """Run length and LR curve, all in optimizer steps."""

    peak_lr: float
    min_lr: float
    global_batch: int  # samples per optimizer step over all ranks (batch_size x accum_iter x world)
    accum_iter: int  # micro-batches per optimizer step on each rank
    tokens_per_sample: int  # the recipe's (egom2p: input + target budgets, padding included, as in the original)
    epoch_size: int  # samples per nominal epoch over all ranks
    epochs: int
    steps_per_epoch: int
    warmup_steps: int
    total_steps: int
    frozen_steps: int = 0  # the fine-tuning warm-up (finetune.frozen_model_*): steps [0, frozen_steps) at frozen_lr
    frozen_lr: float = 0.0

    def lr_at(self, step: int) -> float:
        """LR for global optimizer step ``step`` (0-based): the frozen warm-up's constant LR, then the main schedule
        over the remaining steps: linspace warmup with the endpoint, then cosine."""
        if step < self.frozen_steps:
            return self.frozen_lr
        step -= self.frozen_steps
        if step < self.warmup_steps:
            if self.warmup_steps == 1:
                return 0.0  # linspace(0, lr, 1) == [0]
            return self.peak_lr * step / (self.warmup_steps - 1)
        i, k = step - self.warmup_steps, self.total_steps - self.frozen_steps - self.warmup_steps
        if i >= k:
            return self.min_lr
        return self.min_lr + 0.5 * (self.peak_lr - self.min_lr) * (1 + math.cos(math.pi * i / k))

    def lr_lambda(self, step: int) -> float:
        """``LambdaLR`` multiplier: the optimizer's base LR is ``peak_lr``."""
        return self.lr_at(step) / self.peak_lr

    def tokens_seen(self, step: int) -> int:
        """Budget tokens (input + target) consumed after ``step`` optimizer steps over all ranks."""
        return step * self.global_batch * self.tokens_per_sample

    def describe(self) -> str:
        """One line for the log and ``--dry-run``."""
        frozen = (f"; the first {self.frozen_steps} steps train only embeddings at lr {self.frozen_lr:.4g}"
                  if self.frozen_steps else "")
        return (f"peak lr {self.peak_lr:.4g} (min {self.min_lr:.4g}), global batch {self.global_batch} "
                f"(accum_iter {self.accum_iter}), "
                f"{self.tokens_per_sample} tokens per sample, {self.epochs} epochs x {self.steps_per_epoch} steps "
                f"= {self.total_steps} steps (warmup {self.warmup_steps}){frozen}")


def resolve_accum_iter(cfg: TrainConfig, world_size: int) -> int:
    """Micro-batches per optimizer step on ``world_size`` ranks.

    With ``schedule.global_batch_size``: ``global_batch_size / (loader.batch_size x world_size)``, which
    must be a whole number; an explicit ``schedule.accum_iter`` must agree. Without it:
    ``schedule.accum_iter`` (default 1), and the global batch grows with the world size.
    """
    sch, micro = cfg.schedule, cfg.loader.batch_size
    if world_size < 1:
        raise ConfigError(f"world size must be >= 1, got {world_size}")
    if sch.global_batch_size is None:
        return sch.accum_iter or 1
    per_step = micro * world_size
    accum, rest = divmod(sch.global_batch_size, per_step)
    if rest or accum < 1:
        raise ConfigError(
            f"config key 'schedule.global_batch_size': {sch.global_batch_size} is not a multiple of "
            f"loader.batch_size {micro} x world size {world_size} = {per_step}; choose a micro batch and a GPU count "
            f"whose product divides it", "schedule.global_batch_size")
    if sch.accum_iter is not None and sch.accum_iter != accum:
        raise ConfigError(
            f"config key 'schedule.accum_iter': {sch.accum_iter} disagrees with schedule.global_batch_size "
            f"{sch.global_batch_size} / (loader.batch_size {micro} x world size {world_size}) = {accum}; "
            "leave accum_iter unset (null) to derive it", "schedule.accum_iter")
    return accum


def derive_schedule(cfg: TrainConfig, world_size: int, tokens_per_sample: int,
                    epoch_size: int | None = None) -> Schedule:
    """Apply the LR rule and turn tokens/epochs into step counts for a run on ``world_size`` ranks.

    ``tokens_per_sample`` is the recipe's (``egom2p``: the input + target budget, the data config's
    ``max_input_tokens + max_target_tokens``; ``tokenizer``: the tokens of one window). ``epoch_size`` is the
    samples of an epoch when ``schedule.epoch_size`` is unset (the tokenizer recipe: its training windows).
    lr = blr x global batch / 256; epochs = ceil(total_tokens·1e9 / (tokens_per_sample · epoch_size));
    warmup = ceil(warmup_tokens·1e9 / (tokens_per_sample · global batch)) when given in tokens.
    """
    sch, opt = cfg.schedule, cfg.optim
    accum_iter = resolve_accum_iter(cfg, world_size)
    global_batch = cfg.loader.batch_size * accum_iter * world_size
    epoch_size = sch.epoch_size or epoch_size
    if epoch_size is None:
        raise ConfigError("config key 'schedule.epoch_size': must be set (samples per epoch over all GPUs)",
                          "schedule.epoch_size")
    steps_per_epoch = epoch_size // global_batch
    if steps_per_epoch < 1:
        raise ConfigError(
            f"config key 'schedule.epoch_size': {epoch_size} samples is less than one global batch "
            f"({global_batch} = batch_size x accum_iter {accum_iter} x world size {world_size})", "schedule.epoch_size")
    if sch.total_tokens > 0:
        epochs = math.ceil(sch.total_tokens * 1e9 / (tokens_per_sample * epoch_size))
    else:
        epochs = sch.epochs
    total_steps = epochs * steps_per_epoch
    if sch.warmup_tokens > 0:
        warmup_steps = math.ceil(sch.warmup_tokens * 1e9 / (tokens_per_sample * global_batch))
        warmup_key = "schedule.warmup_tokens"
    else:
        warmup_steps = int(sch.warmup_epochs * steps_per_epoch)
        warmup_key = "schedule.warmup_epochs"
    frozen_steps, frozen_key = _frozen_steps(cfg, tokens_per_sample, epoch_size, steps_per_epoch)
    if frozen_steps >= total_steps:
        raise ConfigError(f"config key '{frozen_key}': the frozen warm-up ({frozen_steps} steps) must be shorter than "
                          f"the run ({total_steps} steps)", frozen_key)
    if warmup_steps >= total_steps - frozen_steps:
        raise ConfigError(f"config key '{warmup_key}': warmup ({warmup_steps} steps) must be shorter than "
                          f"the run ({total_steps} steps{f' after the frozen warm-up of {frozen_steps}' if frozen_steps else ''})",
                          warmup_key)
    scale = global_batch / 256
    frozen_blr = cfg.finetune.frozen_model_blr or opt.blr
    return Schedule(peak_lr=opt.blr * scale, min_lr=opt.min_blr * scale, global_batch=global_batch, accum_iter=accum_iter,
                    tokens_per_sample=tokens_per_sample, epoch_size=epoch_size, epochs=epochs, steps_per_epoch=steps_per_epoch,
                    warmup_steps=warmup_steps, total_steps=total_steps, frozen_steps=frozen_steps,
                    frozen_lr=frozen_blr * scale if frozen_steps else 0.0)


def _frozen_steps(cfg: TrainConfig, tokens_per_sample: int, epoch_size: int, steps_per_epoch: int) -> tuple[int, str]:
    """Steps of the fine-tuning warm-up and the key that sets it: whole epochs, given or from tokens (as the
    original: ceil(frozen_model_tokens·1e9 / (tokens_per_sample · epoch_size)))."""
    ft = cfg.finetune
    if ft.frozen_model_tokens > 0:
        epochs = math.ceil(ft.frozen_model_tokens * 1e9 / (tokens_per_sample * epoch_size))
        return epochs * steps_per_epoch, "finetune.frozen_model_tokens"
    return ft.frozen_model_epochs * steps_per_epoch, "finetune.frozen_model_epochs"


def dry_run_report(cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """The resolved run on ``world_size`` ranks as plain data (``egom2p-train --dry-run`` prints it as JSON).

    Keys: recipe, world_size, global_batch_size, micro_batch, accum_iter, peak_lr, min_lr, warmup_steps,
    total_steps, epoch_size, steps_per_epoch, epochs, tokens_per_sample, frozen_steps, frozen_lr, end_step (where ``schedule.max_steps``
    stops it).
    Raises ``ConfigError`` (naming the key) when the world size cannot run the recipe. The tokenizer recipe
    reads its training windows to count them (its epoch).
    """
    from egom2p.train.recipe import build_recipe

    s = derive_schedule(cfg, world_size, *build_recipe(cfg).schedule_inputs())
    return {"recipe": cfg.recipe, "world_size": world_size, "global_batch_size": s.global_batch,
            "micro_batch": cfg.loader.batch_size, "accum_iter": s.accum_iter, "peak_lr": s.peak_lr, "min_lr": s.min_lr,
            "warmup_steps": s.warmup_steps, "total_steps": s.total_steps, "epoch_size": s.epoch_size,
            "steps_per_epoch": s.steps_per_epoch, "epochs": s.epochs, "tokens_per_sample": s.tokens_per_sample,
            "frozen_steps": s.frozen_steps, "frozen_lr": s.frozen_lr,
            "end_step": min(s.total_steps, cfg.schedule.max_steps or s.total_steps)}

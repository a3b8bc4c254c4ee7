"""The learning-rate rule and the cosine schedule of the original trainer (SPEC 6.3, 6.4).

One difference on purpose (SPEC quirk 15): an "epoch" is an exact number of *optimizer* steps,
``epoch_size // global_batch``, and the schedule is indexed by the global optimizer step, so the
LR never jumps when the loader's batch count per epoch differs from the schedule's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from egom2p.train.config import ConfigError, TrainConfig


@dataclass(frozen=True)
class Schedule:
    """Run length and LR curve, all in optimizer steps."""

    peak_lr: float
    min_lr: float
    global_batch: int  # samples per optimizer step over all ranks (batch_size x accum_iter x world)
    tokens_per_sample: int  # input + target budgets (padding included, as in the original)
    epochs: int
    steps_per_epoch: int
    warmup_steps: int
    total_steps: int

    def lr_at(self, step: int) -> float:
        """LR for global optimizer step ``step`` (0-based): linspace warmup with the endpoint, then cosine."""
        if step < self.warmup_steps:
            if self.warmup_steps == 1:
                return 0.0  # linspace(0, lr, 1) == [0]
            return self.peak_lr * step / (self.warmup_steps - 1)
        i, k = step - self.warmup_steps, self.total_steps - self.warmup_steps
        if i >= k:
            return self.min_lr
        return self.min_lr + 0.5 * (self.peak_lr - self.min_lr) * (1 + math.cos(math.pi * i / k))

    def lr_lambda(self, step: int) -> float:
        """``LambdaLR`` multiplier: the optimizer's base LR is ``peak_lr``."""
        return self.lr_at(step) / self.peak_lr

    def tokens_seen(self, step: int) -> int:
        """Budget tokens (input + target) consumed after ``step`` optimizer steps over all ranks."""
        return step * self.global_batch * self.tokens_per_sample


def derive_schedule(cfg: TrainConfig, world_size: int) -> Schedule:
    """Apply the LR rule and turn tokens/epochs into step counts for a run on ``world_size`` ranks.

    lr = blr x global batch / 256; epochs = ceil(total_tokens·1e9 / (tokens_per_sample · epoch_size));
    warmup = ceil(warmup_tokens·1e9 / (tokens_per_sample · global batch)) when given in tokens.
    """
    global_batch = cfg.batch_size * cfg.accum_iter * world_size
    tokens_per_sample = cfg.num_input_tokens + cfg.num_target_tokens
    assert cfg.epoch_size is not None  # validate_config guarantees it
    steps_per_epoch = cfg.epoch_size // global_batch
    if steps_per_epoch < 1:
        raise ConfigError(
            f"config key 'epoch_size': {cfg.epoch_size} samples is less than one global batch "
            f"({global_batch} = batch_size x accum_iter x world size {world_size})", "epoch_size")
    if cfg.total_tokens > 0:
        epochs = math.ceil(cfg.total_tokens * 1e9 / (tokens_per_sample * cfg.epoch_size))
    else:
        epochs = cfg.epochs
    total_steps = epochs * steps_per_epoch
    if cfg.warmup_tokens > 0:
        warmup_steps = math.ceil(cfg.warmup_tokens * 1e9 / (tokens_per_sample * global_batch))
        warmup_key = "warmup_tokens"
    else:
        warmup_steps = int(cfg.warmup_epochs * steps_per_epoch)
        warmup_key = "warmup_epochs"
    if warmup_steps >= total_steps:
        raise ConfigError(f"config key '{warmup_key}': warmup ({warmup_steps} steps) must be shorter than "
                          f"the run ({total_steps} steps)", warmup_key)
    scale = global_batch / 256
    return Schedule(peak_lr=cfg.blr * scale, min_lr=cfg.min_blr * scale, global_batch=global_batch,
                    tokens_per_sample=tokens_per_sample, epochs=epochs, steps_per_epoch=steps_per_epoch,
                    warmup_steps=warmup_steps, total_steps=total_steps)

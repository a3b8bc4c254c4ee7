"""When the training loop logs, checkpoints and validates, in optimizer steps.

The config gives checkpoint and validation intervals in steps (``checkpoint.every_steps``,
``metrics.val_every_steps``) or, as the original does, in epochs (``checkpoint.save_ckpt_freq``,
``metrics.eval_freq``); the last step always logs and checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from egom2p.train.config import TrainConfig


@dataclass(frozen=True)
class Cadence:
    """The loop's intervals (steps) and its last step."""

    log_every: int
    checkpoint_every: int
    validate_every: int
    end_step: int

    @classmethod
    def from_config(cls, cfg: TrainConfig, steps_per_epoch: int, end_step: int) -> Cadence:
        """The intervals of ``cfg``; those given in epochs count ``steps_per_epoch`` steps each."""
        ckpt, met = cfg.checkpoint, cfg.metrics
        return cls(log_every=met.log_every_steps,
                   checkpoint_every=ckpt.every_steps or ckpt.save_ckpt_freq * steps_per_epoch,
                   validate_every=met.val_every_steps or met.eval_freq * steps_per_epoch, end_step=end_step)

    def log_due(self, step: int) -> bool:
        """Whether a metrics line is written after ``step``."""
        return step % self.log_every == 0 or step == self.end_step

    def checkpoint_due(self, step: int) -> bool:
        """Whether a checkpoint is due after ``step`` (it waits while the step is unhealthy)."""
        return step % self.checkpoint_every == 0 or step == self.end_step

    def validate_due(self, step: int) -> bool:
        """Whether validation runs after ``step``."""
        return step % self.validate_every == 0

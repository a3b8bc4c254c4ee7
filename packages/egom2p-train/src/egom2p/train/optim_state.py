"""The optimizer across a resume: the current config's settings on a restored state, and no state where the
checkpoint had none.

A restored optimizer state carries the old run's LR, decay, betas and eps in its parameter groups: the current
config wins, and the LR schedule is recomputed at the restored step. Loading gives a parameter the checkpoint had
no AdamW state for (it had not trained yet, e.g. frozen in the fine-tuning warm-up) a zero state that has counted
a step; such a parameter must start from a fresh one when it starts training, as in the run that was not
interrupted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from egom2p.train.optim import group_weight_decays
from egom2p.train.parallel import parameter_name
from torch import nn

if TYPE_CHECKING:
    from egom2p.train.config import OptimConfig
    from egom2p.train.schedule import Schedule


def follow_config(optimizer: torch.optim.Optimizer, optim: OptimConfig, schedule: Schedule,
                  step: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Set ``optim``'s hyperparameters and ``schedule``'s peak LR on ``optimizer``; returns its LR scheduler
    positioned at ``step``."""
    peak = schedule.peak_lr
    for group, decay in zip(optimizer.param_groups, group_weight_decays(optim.weight_decay)):
        group.update(weight_decay=decay, betas=tuple(optim.opt_betas), eps=optim.opt_eps, lr=peak, initial_lr=peak)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.lr_lambda, last_epoch=step - 1)


def drop_unsaved_state(model: nn.Module, optimizer: torch.optim.Optimizer, saved: Iterable[str]) -> None:
    """Forget the optimizer state of ``model``'s parameters whose names are not in ``saved`` (the parameter names
    the checkpoint's optimizer state holds)."""
    keep = set(saved)
    for name, param in model.named_parameters():
        if parameter_name(name) not in keep:
            optimizer.state.pop(param, None)

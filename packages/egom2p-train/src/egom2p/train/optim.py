"""AdamW with the original's two parameter groups (docs/original-behaviour.md#optimizer)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from egom2p.train.parallel import parameter_name
from torch import nn

_NO_DECAY_SUFFIXES = (".bias", ".lookup_table_weight", ".gamma")


def is_no_decay(name: str, extra_names: set[str] = frozenset()) -> bool:
    """True for norms, biases and the other names the original exempts from weight decay."""
    return ("norm." in name or ".norm" in name or name.endswith(_NO_DECAY_SUFFIXES)
            or name in extra_names)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decay and a no-decay group; tied parameters appear once.

    Token embeddings, modality embeddings and the mask token *are* decayed, as in the released run.
    """
    no_wd_fn = getattr(model, "no_weight_decay", None)
    extra = set(no_wd_fn()) if callable(no_wd_fn) else set()
    decay, no_decay = [], []
    for name, param in model.named_parameters():  # named_parameters() yields a shared tensor once
        if not param.requires_grad:
            continue
        name = parameter_name(name)
        (no_decay if is_no_decay(name, extra) else decay).append(param)
    return [{"params": group, "weight_decay": wd} for group, wd in zip((decay, no_decay), group_weight_decays(weight_decay))]


def group_weight_decays(weight_decay: float) -> tuple[float, float]:
    """The weight decay of each group :func:`parameter_groups` makes, in its order (decay, then no decay)."""
    return (weight_decay, 0.0)


def build_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.05,
                    betas: Sequence[float] = (0.9, 0.95), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over ``parameter_groups(model)``; ``lr`` is the peak LR that the scheduler scales."""
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, betas=tuple(betas), eps=eps)

"""Classifier-free guidance: several versions ("passes") of the batch in one forward, and their logit mix.

Single guidance (docs/original-behaviour.md#guidance) mixes a conditional and an unconditional pass:
`uncond + (cond - uncond) * scale`. Multi-condition guidance (the original's `generate_multi_guided`,
https://arxiv.org/abs/2206.01714) runs one pass per condition plus the unconditional one and mixes
`uncond + sum_i w_i (cond_i - uncond)`. Every pass decodes the same positions.

The passes run as one forward with their rows packed (`model.encode(..., pack=True)`): an unconditional
pass holds a few decoded tokens where a conditional one holds thousands of conditioning tokens, and
padding it to the conditional width would double the work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from egom2p.core.batch import MaskedBatch
from egom2p.model import EgoM2P

from .batch import empty_target

MASK_LAYOUT = ("tensor", "input_mask", "target_mask")


def blanked(item: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A modality hidden from the encoder, as the original's `empty_img_modality` (no input, all target)."""
    return {
        "tensor": item["tensor"],
        "input_mask": torch.ones_like(item["input_mask"]),
        "target_mask": torch.zeros_like(item["target_mask"]),
    }


def pass_logits(
    model: EgoM2P,
    passes: Sequence[Mapping[str, Mapping[str, torch.Tensor]]],
    target: str,
    positions: torch.Tensor,
    pack: bool = True,
) -> list[torch.Tensor]:
    """Logits [B, k, V] of `target` at `positions` [B, k] for every pass, from ONE forward of batch P x B.

    Each pass is a flat batch (name -> {tensor, input_mask, target_mask}, [B, N]). A modality missing
    from some passes is blanked there, which the encoder treats exactly like an absent modality.
    `pack=True` packs the P x B rows so that each computes only its own tokens; `False` pads every row
    to the longest (the original's layout; same logits up to float rounding).
    """
    names = list(dict.fromkeys(name for p in passes for name in p))
    stacked: dict[str, dict[str, torch.Tensor]] = {}
    for name in names:
        some = next(p[name] for p in passes if name in p)
        batch_size, num_tokens = some["tensor"].shape
        filler = empty_target(batch_size, num_tokens, some["tensor"].device)
        stacked[name] = {key: torch.cat([p.get(name, filler)[key] for p in passes]) for key in MASK_LAYOUT}
    ctx = model.encode(stacked, pack=pack)
    logits = model.decode_positions(ctx, target, torch.cat([positions] * len(passes)))
    return list(logits.chunk(len(passes)))


def mix_guided(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """The original's single-condition mix, operation for operation."""
    return uncond + (cond - uncond) * scale


def mix_multi_guided(conds: Sequence[torch.Tensor], uncond: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """The original's multi-condition mix, operation for operation: `uncond + sum_i w_i (cond_i - uncond)`."""
    if len(conds) != len(weights):
        raise ValueError(f"{len(weights)} guidance weights for {len(conds)} conditions")
    return uncond + torch.stack([w * (cond - uncond) for w, cond in zip(weights, conds)]).sum(dim=0)


class MultiGuidance:
    """The conditions of one `generate_multi_guided` run and the growing list of finished targets.

    Pass i sees the working batch with every finished target blanked, overlaid with condition i;
    the unconditional pass sees the working batch with finished targets blanked. When the schedule
    moves to the next target, the finished one becomes one more condition (as the original), so
    later steps need one more weight.
    """

    def __init__(self, conditions: Sequence[MaskedBatch], pack: bool = True):
        self.pack = pack
        self.conditions: list[Mapping[str, Mapping[str, torch.Tensor]]] = list(conditions)
        self.given = len(self.conditions)
        self.finished: list[str] = []
        self.current: str | None = None

    def start_step(self, state: MaskedBatch, target: str) -> None:
        """Called before each step: a change of target turns the previous one into a condition."""
        if self.current is not None and target != self.current:
            self.finished.append(self.current)
            self.conditions.append({self.current: state[self.current]})
        self.current = target

    def logits(self, model: EgoM2P, state: MaskedBatch, step: Mapping, positions: torch.Tensor) -> torch.Tensor:
        """Guided logits of the step's target at `positions`."""
        weights = step["cfg_scale"]
        if len(weights) != len(self.conditions):
            raise ValueError(
                f"step for {step['target_domain']!r} has {len(weights)} guidance weights for {len(self.conditions)} "
                f"conditions ({self.given} given + finished targets {self.finished}); give one weight per condition"
            )
        base = {name: blanked(item) if name in self.finished else item for name, item in state.items()}
        passes = [{**base, **condition} for condition in self.conditions] + [base]
        *conds, uncond = pass_logits(model, passes, step["target_domain"], positions, self.pack)
        return mix_multi_guided(conds, uncond, weights)

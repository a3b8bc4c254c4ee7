"""Will the run fit? The training memory of a model estimated from its config, before anything is allocated.

The model is built on the ``meta`` device (shapes, no storage), so a config that asks for a 10-billion
parameter model on a laptop is refused in a second instead of after minutes of swapping or an
out-of-memory kill mid-step. The estimate per rank is:

- weights (float32), gradients (float32) and AdamW's two moments (float32): 16 bytes per trained parameter
  (a frozen one, like an EMA codebook, only its weight), divided over the ranks under FSDP;
- saved activations: every ``nn.Linear`` inside the blocks keeps its input and its output is kept by the
  op that follows (attention, the activation function), every norm keeps its float32 input; so per token
  a block stores the sum of its linear layers' in + out features in the compute dtype plus two float32
  copies of each norm's width. With activation checkpointing only each block's input is stored, plus
  one block's activations while it is recomputed;
- materialised logits (the recipe says how many: ``target tokens x vocabulary``, float32 with the
  softmax kept, or one chunk under the fused loss).

It is an estimate (allocator slack, temporary buffers and the CUDA context are not in it), so it refuses
only when the estimate alone exceeds what the device has free; ``check_memory: false`` skips it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from egom2p.train.lora import in_adapter
from torch import nn

if TYPE_CHECKING:
    from egom2p.train.config import TrainConfig
    from egom2p.train.distributed import DistInfo
    from egom2p.train.recipe import Recipe

__all__ = ["ActivationShape", "MemoryEstimate", "available_memory", "check_training_memory",
           "estimate_training_memory", "memory_problem", "ranks_sharing_device"]

GIB = 1024 ** 3
TRAINING_BYTES_PER_PARAM = 12  # what training adds to a float32 weight: its gradient, AdamW's exp_avg and exp_avg_sq
_STATE_BYTES_PER_PARAM = 4 + TRAINING_BYTES_PER_PARAM  # with the weight itself
_LOGIT_BYTES = 10  # compute-dtype logits, their float32 copy and the float32 log-softmax kept for backward


@dataclass(frozen=True)
class ActivationShape:
    """What passes through a model per sample: tokens through each block list, and the logits made."""

    block_tokens: Mapping[str, int]  # ModuleList path (``encoder``, ``decoder.blocks``) -> tokens per sample
    logit_elements: int = 0  # logits materialised per sample (0: none)
    logit_bytes_per_batch: int = 0  # logits held whatever the batch (a fused loss's one chunk)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per rank, by what holds them."""

    states: int  # weights, gradients, optimizer moments
    activations: int
    logits: int
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.states + self.activations + self.logits

    def describe(self) -> str:
        """``12.3 GiB (states 6.3, activations 4.0, logits 2.0)``."""
        return (f"{self.total / GIB:.1f} GiB (weights + gradients + AdamW {self.states / GIB:.1f}, "
                f"activations {self.activations / GIB:.1f}, logits {self.logits / GIB:.1f})")


def _block_bytes_per_token(block: nn.Module, compute_bytes: int) -> int:
    """Activation bytes one token leaves saved in ``block`` (see the module docstring)."""
    total = 0
    for name, module in block.named_modules():
        if in_adapter(name):  # a LoRA adapter: its input is its layer's, its inner width the small rank
            continue
        if isinstance(module, nn.Linear):
            total += (module.in_features + module.out_features) * compute_bytes
        elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
            total += 2 * 4 * int(torch.Size(module.normalized_shape).numel())
    return total


def estimate_training_memory(model: nn.Module, shape: ActivationShape, micro_batch: int, dtype: str, *,
                             world_size: int = 1, fsdp: bool = False,
                             activation_checkpointing: bool = False) -> MemoryEstimate:
    """Per-rank training memory of ``model`` (built on ``meta``) for ``micro_batch`` samples of ``shape``."""
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)  # weights only
    states = (trained * _STATE_BYTES_PER_PARAM + frozen) // (world_size if fsdp else 1)
    compute_bytes = 4 if dtype == "float32" else 2
    modules = dict(model.named_modules())
    activations, parts = 0, {}
    for path, tokens in shape.block_tokens.items():
        blocks = modules.get(path)
        if not isinstance(blocks, nn.ModuleList):
            raise ValueError(f"memory estimate: the model has no block list {path!r}")
        per_block = [_block_bytes_per_token(block, compute_bytes) for block in blocks]
        if activation_checkpointing:
            width = max((m.in_features for b in blocks for m in b.modules() if isinstance(m, nn.Linear)), default=0)
            per_token = len(per_block) * width * 4 + max(per_block, default=0)
        else:
            per_token = sum(per_block)
        parts[path] = per_token * tokens * micro_batch
        activations += parts[path]
    logits = shape.logit_elements * micro_batch * _LOGIT_BYTES + shape.logit_bytes_per_batch
    return MemoryEstimate(states, activations, logits, parts)


def available_memory(device: torch.device) -> tuple[int, str] | None:
    """Free bytes on ``device`` and what was asked (CUDA: the driver's free memory; CPU: the kernel's
    MemAvailable), or None where the platform does not say."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free), f"free on {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        try:
            with open("/proc/meminfo", encoding="ascii") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024, "available host memory (MemAvailable)"
        except OSError:
            return None
    return None


def memory_problem(estimate: MemoryEstimate, device: torch.device, ranks_here: int = 1) -> str | None:
    """One line saying the run cannot fit on ``device`` (``ranks_here`` processes share it: CPU ranks of one
    host), or None when it fits or the device does not say what it has."""
    have = available_memory(device)
    if have is None:
        return None
    free, what = have
    need = estimate.total * ranks_here
    if need <= free:
        return None
    who = f"{ranks_here} ranks x " if ranks_here > 1 else ""
    return (f"the run needs about {who}{estimate.describe()} per rank but {free / GIB:.1f} GiB is {what}; "
            "lower loader.batch_size (accumulation keeps the global batch), use dtype bfloat16, "
            "activation_checkpointing: true, fsdp: true or model.fused_loss: true, or set check_memory: false "
            "to start anyway")


def ranks_sharing_device(device: torch.device) -> int:
    """How many ranks of this job share ``device``: the local world size on CPU, 1 per GPU."""
    if device.type != "cpu":
        return 1
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def check_training_memory(recipe: Recipe, cfg: TrainConfig, info: DistInfo) -> tuple[MemoryEstimate, str | None]:
    """The recipe's model built on ``meta`` and estimated for this config on ``info.device``, with the problem
    line when it does not fit (always None under ``check_memory: false``)."""
    with torch.device("meta"):
        model = recipe.build_model()
        if recipe.name == "egom2p" and cfg.finetune.lora.rank:
            # LoRA: the base keeps only its weights; the adapters train (and the few embeddings of new modalities,
            # which init_from decides later and which are left out here).
            from egom2p.train.finetune import Finetuning

            lora = Finetuning(cfg, model, 0, enabled=True)
            lora.set_new_modalities(())
            lora.optimizer_set(model)
    estimate = estimate_training_memory(model, recipe.activation_shape(), cfg.loader.batch_size, cfg.dtype,
                                        world_size=info.world_size, fsdp=cfg.fsdp,
                                        activation_checkpointing=cfg.activation_checkpointing)
    if not cfg.check_memory:
        return estimate, None
    return estimate, memory_problem(estimate, info.device, ranks_sharing_device(info.device))

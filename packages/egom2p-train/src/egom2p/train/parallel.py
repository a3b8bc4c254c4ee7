"""Wrapping the model for training: activation checkpointing, torch.compile, then DDP or FSDP2."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from egom2p.train.distributed import DistInfo
from torch import nn

_CHECKPOINT_WRAPPER = "_checkpoint_wrapped_module."  # what activation checkpointing inserts into parameter names


def parameter_name(name: str) -> str:
    """A parameter's name as the model and its checkpoints have it (without activation checkpointing's wrapper)."""
    return name.replace(_CHECKPOINT_WRAPPER, "")


def transformer_blocks(model: nn.Module) -> Iterator[nn.Module]:
    """The encoder and decoder blocks (the units to checkpoint, compile and shard)."""
    for list_name in ("encoder", "decoder"):
        blocks = getattr(model, list_name, None)
        if isinstance(blocks, nn.ModuleList):
            yield from blocks


def apply_activation_checkpointing(model: nn.Module) -> int:
    """Recompute each block's activations in backward instead of storing them; returns the block count."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        apply_activation_checkpointing as _apply,
    )

    blocks = set(transformer_blocks(model))
    if not blocks:
        raise ValueError("activation_checkpointing: the model has no encoder/decoder ModuleList of blocks")
    _apply(model, check_fn=lambda module: module in blocks)
    return len(blocks)


def parallelize(model: nn.Module, info: DistInfo, *, fsdp: bool, compile: bool,
                activation_checkpointing: bool, broadcast_buffers: bool = True) -> nn.Module:
    """Return the module to train. Parameter names (and so checkpoints) are unchanged by every option.

    DDP is the default under a process group; ``fsdp`` shards each block and then the root with
    FSDP2 ``fully_shard`` (parameters become DTensors, the module object stays the same).
    ``broadcast_buffers=False`` stops DDP from overwriting every rank's buffers with rank 0's before each
    forward, for a model that keeps its buffers equal itself (a codebook that all-reduces its EMA update).
    """
    if activation_checkpointing:
        apply_activation_checkpointing(model)
    if compile:
        model.compile()  # in place: keeps state-dict keys, unlike torch.compile(model)
    if not info.distributed:
        if fsdp:
            raise ValueError("config key 'fsdp': needs a process group (launch with torchrun)")
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for block in transformer_blocks(model):
            fully_shard(block)
        fully_shard(model)
        return model
    return wrap_ddp(model, info, broadcast_buffers)


def wrap_ddp(model: nn.Module, info: DistInfo, broadcast_buffers: bool = True) -> nn.Module:
    """DDP over the parameters that require gradients now (collective: rank 0's weights are broadcast).

    DDP fixes that set when it is built, so a change of what trains (the fine-tuning warm-up ending) wraps the
    same module anew.
    """
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=broadcast_buffers)


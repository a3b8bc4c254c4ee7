"""LoRA adapters through ``peft`` (the ``[lora]`` extra): injecting them, and their names in checkpoints.

``peft`` replaces each adapted ``nn.Linear`` ``<module>`` by a layer holding the frozen original as
``<module>.base_layer`` and the adapter as ``<module>.lora_A.default`` / ``<module>.lora_B.default``; it computes
``W x + (alpha / rank) B A dropout(x)``. Our checkpoints keep the plain names (``<module>.weight``, so the step
directory's ``model.safetensors`` is the base model) and the adapter apart, as ``<module>.lora_A`` /
``<module>.lora_B`` in ``adapter.safetensors`` (:mod:`egom2p.core.adapters`, which also merges them for inference).
:func:`to_peft_names` and :func:`from_peft_names` translate between the two.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from egom2p.core.adapters import ADAPTER_PARTS
from torch import nn

__all__ = ["LORA_BLOCKS", "LORA_TARGETS", "adapter_config", "apply_lora", "from_peft_names", "in_adapter",
           "lora_module_names", "to_peft_names"]

# The linear projections of the blocks (egom2p.model.layers): attention (qkv, q, kv, proj) and MLP (fc1-fc3).
LORA_TARGETS = ("qkv", "q", "kv", "proj", "fc1", "fc2", "fc3")
LORA_BLOCKS = ("encoder", "decoder")
INSTALL_HINT = "pip install 'egom2p-train[lora]'"
_ADAPTER = "default"  # peft's adapter name
_BASE = ".base_layer"


def lora_module_names(model: nn.Module, targets: list[str], blocks: list[str]) -> list[str]:
    """The linear layers of ``blocks`` (encoder and/or decoder) whose last name is one of ``targets``."""
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name.partition(".")[0] in blocks
            and name.rpartition(".")[2] in targets]


def apply_lora(model: nn.Module, rank: int, alpha: float, dropout: float, targets: list[str],
               blocks: list[str]) -> list[str]:
    """Inject rank-``rank`` adapters into ``model`` in place (B starts at zero: the model's output is unchanged);
    returns the adapted module names. Which parameters train is the caller's (``egom2p.train.finetune``)."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        from egom2p.core.errors import MissingExtraError

        raise MissingExtraError(f"finetune.lora needs peft: {INSTALL_HINT}") from None
    names = lora_module_names(model, targets, blocks)
    if not names:
        raise ValueError(f"finetune.lora: no linear layer named {targets} in {blocks}")
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=names), model)
    return names


def adapter_config(rank: int, alpha: float, dropout: float, targets: list[str], blocks: list[str]) -> dict[str, Any]:
    """What ``adapter_config.json`` records (:mod:`egom2p.core.adapters`)."""
    return {"rank": rank, "alpha": alpha, "dropout": dropout, "target_modules": list(targets), "blocks": list(blocks)}


def in_adapter(name: str) -> bool:
    """Whether a parameter or module ``name`` (peft's naming) lies inside an adapter (its A or B layer)."""
    return any(f".{part}." in f".{name}." for part in ADAPTER_PARTS)


def from_peft_names(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A peft-injected model's state dict as ``(plain weights, adapter tensors)`` under our names."""
    plain, adapter = {}, {}
    for key, value in state.items():
        for part in ADAPTER_PARTS:
            marker = f".{part}.{_ADAPTER}.weight"
            if key.endswith(marker):
                adapter[key.removesuffix(marker) + f".{part}"] = value
                break
        else:
            plain[key.replace(_BASE + ".", ".")] = value
    return plain, adapter


def to_peft_names(weights: Mapping[str, torch.Tensor], modules: list[str]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`from_peft_names` (plain weights and adapter tensors in one mapping) for a model whose
    adapted layers are ``modules``."""
    adapted = set(modules)
    state = {}
    for key, value in weights.items():
        module, _, leaf = key.rpartition(".")
        if leaf in ADAPTER_PARTS:
            state[f"{module}.{leaf}.{_ADAPTER}.weight"] = value
        else:
            state[f"{module}{_BASE}.{leaf}" if module in adapted else key] = value
    return state

"""LoRA adapters beside a checkpoint's weights: their files, and merging them into plain weights (no peft needed).

A checkpoint directory trained with LoRA (``egom2p-train``'s ``finetune.lora``) holds, beside
``model.safetensors`` (the frozen base weights and whatever else trained, under their plain names):

* ``adapter.safetensors``: for each adapted linear layer ``<module>``, ``<module>.lora_A`` (rank x in) and
  ``<module>.lora_B`` (out x rank);
* ``adapter_config.json``: ``{"format": "egom2p-lora/1", "rank", "alpha", "dropout", "target_modules", "blocks"}``.

The adapted layer computes ``W x + (alpha / rank) B A x``, so the merged weight is
``W + (alpha / rank) B A`` (:func:`merge_adapter`). Every reader of a checkpoint directory
(:func:`egom2p.core.checkpoints.read_checkpoint_dir`, so ``from_pretrained``, ``egom2p-generate``, ``egom2p-convert``)
gets the merged weights; only the trainer reads the two parts apart, to resume training the adapter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from egom2p.core.checkpoint_files import read_config_json, read_safetensors

__all__ = ["ADAPTER_CONFIG_NAME", "ADAPTER_FORMAT", "ADAPTER_PARTS", "ADAPTER_WEIGHTS_NAME", "adapter_scaling",
           "merge_adapter", "read_adapter", "write_adapter"]

ADAPTER_WEIGHTS_NAME = "adapter.safetensors"
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_FORMAT = "egom2p-lora/1"
ADAPTER_PARTS = ("lora_A", "lora_B")  # an adapter tensor's key: <module>.<part>
_A, _B = (f".{part}" for part in ADAPTER_PARTS)


def adapter_scaling(config: Mapping[str, Any]) -> float:
    """``alpha / rank``: how much of ``B A`` is added to each adapted weight."""
    return float(config["alpha"]) / int(config["rank"])


def write_adapter(directory: str | os.PathLike, tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> None:
    """Write ``adapter.safetensors`` and ``adapter_config.json`` into ``directory``, each atomically and fsynced
    (the caller records them in the directory's ``integrity.json``)."""
    from egom2p.core.atomic import write_atomic
    from safetensors.torch import save_file

    directory = Path(directory)
    text = json.dumps({"format": ADAPTER_FORMAT, **dict(config)}, indent=2) + "\n"
    state = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    write_atomic(directory / ADAPTER_WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    write_atomic(directory / ADAPTER_CONFIG_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_adapter(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The adapter tensors and config of ``directory``, or None when it has none; a one-line ValueError naming the
    file when only one of the two files is there or the config is not ours."""
    directory = Path(directory)
    weights, config = directory / ADAPTER_WEIGHTS_NAME, directory / ADAPTER_CONFIG_NAME
    if not weights.is_file() and not config.is_file():
        return None
    for present, missing in ((weights, config), (config, weights)):
        if present.is_file() and not missing.is_file():
            raise ValueError(f"{directory}: has {present.name} but no {missing.name} (an adapter needs both)")
    meta = read_config_json(config)
    if meta.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"{config}: 'format' is {meta.get('format')!r}, expected {ADAPTER_FORMAT!r}")
    for key in ("rank", "alpha"):
        value = meta.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{config}: '{key}' must be a positive number, got {value!r}")
    return read_safetensors(weights), meta


def merge_adapter(state: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor],
                  config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Plain weights with the adapter folded in: ``<module>.weight += (alpha / rank) lora_B @ lora_A`` (computed in
    float64, stored in the weight's dtype). A ValueError names an adapter tensor without its pair or its weight, or
    shapes that do not multiply to the weight's."""
    merged = dict(state)
    scaling = adapter_scaling(config)
    modules = sorted({k.removesuffix(_A).removesuffix(_B) for k in tensors})
    for module in modules:
        a, b, key = tensors.get(module + _A), tensors.get(module + _B), module + ".weight"
        if a is None or b is None:
            raise ValueError(f"adapter: '{module}' has only one of {module}{_A} / {module}{_B}")
        if key not in merged:
            raise ValueError(f"adapter: '{module}' adapts no weight of the checkpoint (no '{key}')")
        weight = merged[key]
        if a.shape[0] != b.shape[1] or (b.shape[0], a.shape[1]) != tuple(weight.shape):
            raise ValueError(f"adapter: '{module}': lora_B {list(b.shape)} @ lora_A {list(a.shape)} does not make "
                             f"the weight's shape {list(weight.shape)}")
        delta = scaling * (b.double() @ a.double())
        merged[key] = (weight.double() + delta).to(weight.dtype)
    return merged

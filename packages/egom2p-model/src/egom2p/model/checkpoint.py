"""Checkpoint I/O: our format (safetensors + config.json) and the released original ``.pth``.

The original's state dict (SPEC 8.2) has our parameter names plus entries we do not store:
fixed ``pos_emb`` buffers, all-zero LayerNorm ``bias`` buffers (bias-free variants), and tied
duplicates (``decoder_embeddings.M.to_logits.weight`` = decoder ``token_emb``; decoder ``mod_emb`` =
encoder ``mod_emb``). Those are checked against what they must equal, then dropped.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .config import EgoM2PConfig
from .modalities import RELEASED_MODALITIES
from .presets import PRESETS

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def save_pretrained(model: nn.Module, directory: str | Path) -> None:
    """Write ``model.safetensors`` (parameters only) and ``config.json`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    (directory / CONFIG_NAME).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")


def _as_config(config: EgoM2PConfig | Mapping[str, Any]) -> EgoM2PConfig:
    if isinstance(config, EgoM2PConfig):
        return config
    if isinstance(config, Mapping):
        return EgoM2PConfig.from_dict(config)
    raise TypeError(f"config must be an EgoM2PConfig or a dict, got {type(config).__name__}")


def _domains(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [d for d in value.split("-") if d]
    return [str(d) for d in value]


def config_from_original_args(args: argparse.Namespace) -> EgoM2PConfig:
    """Architecture from ``args.model`` (a registry name), modalities from ``args.in_domains``/``out_domains``."""
    name = getattr(args, "model", None)
    if name not in PRESETS:
        raise ValueError(f"checkpoint args.model={name!r} is not a known architecture; known: {sorted(PRESETS)}. "
                         "Pass config= to from_pretrained.")
    domains = sorted(set(_domains(getattr(args, "in_domains", None))) | set(_domains(getattr(args, "out_domains", None))))
    if not domains:
        raise ValueError("checkpoint args has no in_domains/out_domains; pass config= to from_pretrained")
    unknown = [d for d in domains if d not in RELEASED_MODALITIES]
    if unknown:
        raise ValueError(f"checkpoint modalities {unknown} are not in the released set {sorted(RELEASED_MODALITIES)}; "
                         "pass config= to from_pretrained")
    return EgoM2PConfig(**PRESETS[name], modalities={d: RELEASED_MODALITIES[d] for d in domains})


def _check_equal(key: str, stored: torch.Tensor, expected: torch.Tensor, what: str, atol: float = 0.0) -> None:
    if tuple(stored.shape) != tuple(expected.shape):
        raise ValueError(f"checkpoint key {key!r} has shape {tuple(stored.shape)}, expected {tuple(expected.shape)} ({what})")
    if not torch.allclose(stored.float().cpu(), expected.float().cpu(), atol=atol, rtol=0.0):
        diff = (stored.float().cpu() - expected.float().cpu()).abs().max().item()
        raise ValueError(f"checkpoint key {key!r} differs from {what} (max abs diff {diff:.3g})")


def original_to_native(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an original-layout state dict onto ``model``'s keys; raise listing missing/unexpected keys."""
    ours = model.state_dict()
    buffers = dict(model.named_buffers(remove_duplicate=False))
    modules = dict(model.named_modules())
    native: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in state.items():
        if key in ours:
            native[key] = value
            continue
        prefix, _, leaf = key.rpartition(".")
        if leaf == "pos_emb" and key in buffers:
            _check_equal(key, value, buffers[key], "our sin-cos table", atol=1e-4)
        elif leaf == "bias" and isinstance(modules.get(prefix), nn.LayerNorm) and modules[prefix].bias is None:
            _check_equal(key, value, torch.zeros_like(value), "zeros (LayerNorm without bias)")
        elif key.startswith("decoder_embeddings.") and key.endswith(".to_logits.weight"):
            tied = key.replace(".to_logits.weight", ".token_emb.weight")
            if tied not in state:
                unexpected.append(key)
                continue
            _check_equal(key, value, state[tied], f"{tied} (tied output head)")
        elif key.startswith("decoder_embeddings.") and leaf == "mod_emb":
            shared = "encoder_embeddings." + key[len("decoder_embeddings."):]
            if shared not in state:
                unexpected.append(key)
                continue
            _check_equal(key, value, state[shared], f"{shared} (shared modality embedding)")
        else:
            unexpected.append(key)
    missing = sorted(set(ours) - set(native))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint does not match the architecture: missing keys {missing}; unexpected keys {sorted(unexpected)}"
        )
    return native


def _load_torch_file(path: Path) -> Any:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def load_pretrained(cls: type, source: str | Path | Mapping[str, torch.Tensor], config: EgoM2PConfig | Mapping | None = None):
    """Build ``cls`` and load weights from our directory, an original ``.pth`` or a plain state dict.

    Detection is by contents: a directory holding ``model.safetensors`` is ours; a torch file
    holding a dict with ``model`` (and usually ``args``) is the original; a mapping of tensors is a
    bare state dict in either layout (needs ``config``).
    """
    args = None
    if isinstance(source, Mapping):
        state = source
    else:
        path = Path(source)
        if path.is_dir():
            weights, cfg_file = path / WEIGHTS_NAME, path / CONFIG_NAME
            if not weights.is_file():
                raise FileNotFoundError(f"{path} has no {WEIGHTS_NAME}")
            if config is None:
                if not cfg_file.is_file():
                    raise FileNotFoundError(f"{path} has no {CONFIG_NAME}; pass config=")
                config = json.loads(cfg_file.read_text())
            state = load_file(str(weights))
        elif path.is_file():
            loaded = _load_torch_file(path)
            if isinstance(loaded, Mapping) and isinstance(loaded.get("model"), Mapping):
                state, args = loaded["model"], loaded.get("args")
            elif isinstance(loaded, Mapping) and all(isinstance(v, torch.Tensor) for v in loaded.values()):
                state = loaded
            else:
                raise ValueError(f"{path}: expected an original checkpoint (dict with 'model') or a state dict")
        else:
            raise FileNotFoundError(f"checkpoint not found: {path}")
    if config is not None:
        cfg = _as_config(config)
    elif isinstance(args, argparse.Namespace):
        cfg = config_from_original_args(args)
    else:
        raise ValueError("cannot tell the architecture of a bare state dict; pass config=")
    model = cls(cfg)
    model.load_state_dict(original_to_native(model, state), strict=True)
    return model

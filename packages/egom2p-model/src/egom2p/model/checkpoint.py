"""EgoM2P checkpoints: our directories, training runs and the released original ``.pth``, on top of egom2p.core.

The file format, the safe loader and the path rules belong to :mod:`egom2p.core.checkpoints` (a directory
with ``model.safetensors`` + ``config.json``; a run's newest ``checkpoints/step-<N>/``; an original
``.pth``/``.pt``; a Hugging Face Hub id ``org/repo`` with the ``[hub]`` extra). This module adds what is
EgoM2P's: the config is an :class:`EgoM2PConfig`, weights must fit the model the config makes, and the
original's layout is mapped onto ours. It sits below :mod:`egom2p.model.model` (which imports it for
``from_pretrained``/``save_pretrained``): what needs the model class receives it as an argument.

The original's state dict (docs/original-behaviour.md#checkpoints) has our parameter names plus entries we do not store:
fixed ``pos_emb`` buffers, all-zero LayerNorm ``bias`` buffers (bias-free variants), and tied
duplicates (``decoder_embeddings.M.to_logits.weight`` = decoder ``token_emb``; decoder ``mod_emb`` =
encoder ``mod_emb``). Those are checked against what they must equal, then dropped. The original file is
read with ``torch.load(weights_only=True)`` allowing ``argparse.Namespace`` (its ``args``) and nothing else.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from egom2p.core import checkpoints
from egom2p.core.checkpoints import (
    CONFIG_NAME,
    load_torch_file,
    parse_dtype,
    read_checkpoint_dir,
    read_checkpoint_weights,
    verify_checkpoint_dir,
)
from egom2p.core.cli import one_line
from egom2p.core.layout import domain_list
from egom2p.core.modalities import RELEASED_MODALITIES
from torch import nn

from .config import EgoM2PConfig
from .presets import PRESETS

HUB_INSTALL_HINT = "pip install 'egom2p-model[hub]'"  # what a missing [hub] extra tells an egom2p-model user


def _expected_shapes(cls: type, config: EgoM2PConfig) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of ``cls(config)``, from a model built on the meta device (no memory)."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in cls(config).state_dict().items()}


def check_state_dict(cls: type, state_dict: Mapping[str, torch.Tensor], config: EgoM2PConfig) -> None:
    """ValueError naming the missing, unexpected and wrongly shaped keys of ``state_dict`` against ``cls(config)``."""
    expected = _expected_shapes(cls, config)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict) if tuple(state_dict[k].shape) != expected[k])
    if missing or unexpected or wrong:
        raise ValueError(f"state dict does not match the config: missing keys {missing}; unexpected keys {unexpected}; "
                         f"wrong shapes {[(k, tuple(state_dict[k].shape), expected[k]) for k in wrong]}")


def resolve_checkpoint(path: str | os.PathLike, revision: str | None = None) -> Path:
    """The checkpoint that ``path`` names (:func:`egom2p.core.checkpoints.resolve_checkpoint`), for
    ``EgoM2P.from_pretrained`` and ``egom2p-convert``; a hub id without the ``[hub]`` extra names
    ``egom2p-model[hub]``."""
    return checkpoints.resolve_checkpoint(path, revision, install_hint=HUB_INSTALL_HINT)


def _as_config(config: EgoM2PConfig | Mapping[str, Any]) -> EgoM2PConfig:
    if isinstance(config, EgoM2PConfig):
        return config
    if isinstance(config, Mapping):
        return EgoM2PConfig.from_dict(config)
    raise TypeError(f"config must be an EgoM2PConfig or a dict, got {type(config).__name__}")


def _domains(value: Any) -> list[str]:
    return [] if value is None else domain_list(value)


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


def _first_misfit(cls: type, cfg: Any, state: Mapping[str, torch.Tensor]) -> str | None:
    """The first tensor of ``state`` whose shape differs from what ``cls(cfg)`` makes, or None. Missing and extra
    keys (and the original's layout) are :func:`original_to_native`'s to judge, on the real model."""
    expected = _expected_shapes(cls, cfg)
    for key, value in state.items():
        if key in expected and tuple(value.shape) != expected[key]:
            return f"'{key}' has shape {list(value.shape)}, the config makes {list(expected[key])}"
    return None


def load_pretrained(
    cls: type,
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    config: EgoM2PConfig | Mapping | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    revision: str | None = None,
) -> nn.Module:
    """Build ``cls``, load weights from a checkpoint (see ``resolve_checkpoint``) or a plain state dict,
    move it to ``device`` / ``dtype`` and return it in eval mode.

    Detection is by contents: a directory holding ``model.safetensors`` is ours; a torch file
    holding a dict with ``model`` (and usually ``args``, an ``argparse.Namespace`` or a dict) is the
    original; a mapping of tensors is a bare state dict in either layout (needs ``config``).
    """
    target_dtype = parse_dtype(dtype)
    args = None
    where = "state dict"
    if isinstance(source, Mapping):
        state = source
    else:
        path = resolve_checkpoint(source, revision)
        where = str(path)
        if path.is_dir():
            if config is None:
                if not (path / CONFIG_NAME).is_file():
                    raise FileNotFoundError(f"{path} has no {CONFIG_NAME}; pass config=")
                state, config = read_checkpoint_dir(path)
            else:
                verify_checkpoint_dir(path)  # read_checkpoint_dir does it on the other branch
                state = read_checkpoint_weights(path)
        else:
            loaded = load_torch_file(path)
            if isinstance(loaded, Mapping) and isinstance(loaded.get("model"), Mapping):
                state, args = loaded["model"], loaded.get("args")
            elif isinstance(loaded, Mapping) and all(isinstance(v, torch.Tensor) for v in loaded.values()):
                state = loaded
            else:
                raise ValueError(f"{path}: expected an original checkpoint (dict with 'model') or a state dict")
    if config is not None:
        cfg = _as_config(config)
    elif isinstance(args, (argparse.Namespace, Mapping)):
        cfg = config_from_original_args(argparse.Namespace(**args) if isinstance(args, Mapping) else args)
    else:
        raise ValueError(f"{where}: cannot tell the architecture of a bare state dict; pass config=")
    misfit = _first_misfit(cls, cfg, state)
    if misfit:  # before the real model is allocated (the released size takes seconds and gigabytes)
        raise ValueError(f"{where}: the weights do not fit the config ({misfit})")
    model = cls(cfg)
    try:
        model.load_state_dict(original_to_native(model, state), strict=True)
    except RuntimeError as err:  # e.g. a tensor of the wrong shape
        raise ValueError(f"{where}: the weights do not fit the config ({one_line(err)[:300]})") from None
    return model.to(device=device, dtype=target_dtype).eval()

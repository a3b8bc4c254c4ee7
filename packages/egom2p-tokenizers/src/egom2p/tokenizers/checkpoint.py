"""Tokenizer checkpoints: ours (``model.safetensors`` + ``config.json``), training runs, hub ids, and the
original's released ``.pth`` files, all through :mod:`egom2p.core.checkpoints`.

The original tokenizer file is ``{'model': state_dict, 'args': argparse.Namespace, 'epoch', 'scaler'}``,
read with ``torch.load(weights_only=True)`` allowing only ``argparse.Namespace`` (nothing in it runs as
code). Its state dict has our names exactly. Its architecture is read off the tensor shapes (kind, width,
depth, MLP ratio, frames, compression, codebook, post MLP); the quantizer's training settings come from
``args`` where it holds them (the original's names: ``quantizer_ema_decay``, ``commitment_weight``,
``code_replacement_policy``). The number of heads is not in any shape: the released width 768 has 12;
for another width pass ``config={"num_heads": ...}``.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from egom2p.core.checkpoints import (
    load_torch_file,
    read_checkpoint_dir,
    resolve_checkpoint,
    write_checkpoint_dir,
)

from .config import KIND_CHANNELS, TokenizerConfig

if TYPE_CHECKING:
    from .vqvae import VQVAE

INSTALL_HINT = "pip install 'egom2p-tokenizers[hub]'"
_RELEASED_HEADS = {768: 12}  # width -> heads of the released tokenizers (heads leave no trace in the shapes)
# The original trainer's argument names for the quantizer settings a state dict cannot show.
_ARGS_FIELDS = {
    "quantizer_ema_decay": "ema_decay",
    "commitment_weight": "commitment_weight",
    "code_replacement_policy": "code_replacement_policy",
}
_BLOCK = re.compile(r"encoder\.blocks\.(\d+)\.")


def save_pretrained(model: VQVAE, directory: str | os.PathLike) -> None:
    """Write ``model``'s weights (``model.safetensors``) and config (``config.json``) into ``directory``."""
    write_checkpoint_dir(directory, model.state_dict(), model.config.to_dict())


def _shape(state: Mapping[str, torch.Tensor], key: str, where: str) -> tuple[int, ...]:
    if key not in state or not isinstance(state[key], torch.Tensor):
        raise ValueError(f"{where}: no tensor {key!r}, so not a camera or gaze tokenizer state dict")
    return tuple(state[key].shape)


def config_from_state(state: Mapping[str, torch.Tensor], args: Any = None, where: str = "state dict") -> dict[str, Any]:
    """The :class:`TokenizerConfig` fields an original-layout state dict (and its ``args``) determine.

    ``num_heads`` is included only for the released width (768 -> 12).
    """
    dim, in_channels, compress = _shape(state, "encoder.conv.weight", where)
    kind = {channels: kind for kind, channels in KIND_CHANNELS.items()}.get(in_channels)
    if kind is None:
        raise ValueError(f"{where}: encoder.conv.weight has {in_channels} input channels; a camera tokenizer has "
                         f"{KIND_CHANNELS['cam']}, a gaze tokenizer {KIND_CHANNELS['gaze']}")
    num_tokens = _shape(state, "encoder.position_embeddings", where)[1]
    codebook_size, latent_dim = _shape(state, "quantize._codebook.embed", where)
    hidden = _shape(state, "encoder.blocks.0.mlp.fc1.weight", where)[0]
    fields: dict[str, Any] = {
        "kind": kind,
        "in_channels": in_channels,
        "num_frames": num_tokens * compress,
        "temporal_compress": compress,
        "codebook_size": codebook_size,
        "latent_dim": latent_dim,
        "dim_tokens": dim,
        "depth": 1 + max(int(m.group(1)) for key in state if (m := _BLOCK.match(key))),
        "mlp_ratio": hidden / dim,
        "post_mlp": "encoder.norm_mlp.weight" in state,
    }
    if dim in _RELEASED_HEADS:
        fields["num_heads"] = _RELEASED_HEADS[dim]
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if isinstance(args, Mapping):
        fields.update({ours: args[theirs] for theirs, ours in _ARGS_FIELDS.items() if args.get(theirs) is not None})
    return fields


def _resolve_config(
    base: Mapping[str, Any], config: TokenizerConfig | Mapping[str, Any] | None, where: str
) -> TokenizerConfig:
    """``config`` itself when complete, else ``base`` with the ``config`` mapping's entries on top."""
    if isinstance(config, TokenizerConfig):
        return config
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"config must be a TokenizerConfig or a mapping, got {type(config).__name__}")
    fields = {**base, **(config or {})}
    if "num_heads" not in fields:
        raise ValueError(f"{where}: the number of attention heads of width {fields.get('dim_tokens')} is not in the "
                         "checkpoint; pass config={'num_heads': N}")
    try:
        return TokenizerConfig.from_dict(fields)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _read_source(source: str | os.PathLike | Mapping[str, torch.Tensor]) -> tuple[dict, dict | None, Any, str]:
    """(state dict, our config dict or None, the original's args or None, a name for messages)."""
    if isinstance(source, Mapping):
        return dict(source), None, None, "state dict"
    path = resolve_checkpoint(source, install_hint=INSTALL_HINT)
    if path.is_dir():
        state, saved = read_checkpoint_dir(path)
        return state, saved, None, str(path)
    loaded = load_torch_file(path)
    if isinstance(loaded, Mapping) and isinstance(loaded.get("model"), Mapping):
        return dict(loaded["model"]), None, loaded.get("args"), str(path)
    if isinstance(loaded, Mapping) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return dict(loaded), None, None, str(path)
    raise ValueError(f"{path}: expected an original tokenizer checkpoint (a dict with 'model') or a state dict")


def _check_keys(model: VQVAE, state: Mapping[str, torch.Tensor], where: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [(k, tuple(state[k].shape), expected[k]) for k in sorted(set(expected) & set(state))
             if tuple(state[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        raise ValueError(f"{where}: the weights do not fit the config: missing keys {missing}; unexpected keys "
                         f"{unexpected}; wrong shapes (key, stored, expected) {wrong}")


def load_pretrained(
    cls: type[VQVAE],
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    config: TokenizerConfig | Mapping[str, Any] | None = None,
    *,
    device: torch.device | str | None = None,
) -> VQVAE:
    """A tokenizer in eval mode, float32, on ``device``, from ``source``:

    our checkpoint directory, a training run (its newest complete ``checkpoints/step-<N>/``) or its
    ``checkpoints/`` folder, a Hugging Face Hub id ``org/repo`` (the ``[hub]`` extra), an original ``.pth``/``.pt``
    file, or a state dict. ``config``: a :class:`TokenizerConfig` replaces what the source says; a mapping
    overrides single fields of it (``{"num_heads": 4}``). Mistakes are one-line ValueError/FileNotFoundError.
    """
    state, saved, args, where = _read_source(source)
    base = saved if saved is not None else config_from_state(state, args, where)
    cfg = _resolve_config(base, config, where)
    with torch.device("meta"):  # no memory and no init for weights about to be replaced
        model = cls(cfg)
    _check_keys(model, state, where)
    # Copies where the caller keeps the tensors: training updates the codebook buffers in place.
    copy = isinstance(source, Mapping)
    weights = {k: v.to(torch.float32, copy=copy) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(weights, strict=True, assign=True)
    return model.to(device=device).eval()

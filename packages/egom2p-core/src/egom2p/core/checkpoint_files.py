"""The two small files of a checkpoint directory read safely: safetensors weights and a JSON config.

Below :mod:`egom2p.core.checkpoints` and :mod:`egom2p.core.adapters`, which both read these files (and so
import each other no more). Needs torch and safetensors (core's ``[torch]`` extra).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

__all__ = ["read_config_json", "read_safetensors", "short_text"]


def short_text(text: object, limit: int = 200) -> str:
    """``text`` on one line, at most ``limit`` characters (an exception's message inside a one-line error)."""
    return " ".join(str(text).split())[:limit]


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of safetensors file ``path`` (on the CPU); a one-line ValueError naming it when unreadable."""
    try:
        return load_file(os.fspath(path))
    except SafetensorError as err:
        raise ValueError(f"{path}: not a readable safetensors file ({short_text(err)})") from None


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; a key given twice (JSON keeps the last, silently) is an error."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateKey(f"duplicate key {key!r}: which value is meant? keep one")
        data[key] = value
    return data


def read_config_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in ``path``; a one-line ValueError naming the file when it is unreadable, not an object, or
    gives a key twice."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as err:
        raise ValueError(f"{path}: {err}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON config ({short_text(err)})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of config fields, got {type(data).__name__}")
    return data

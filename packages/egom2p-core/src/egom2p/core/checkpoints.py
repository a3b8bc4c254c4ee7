"""Checkpoint file I/O shared by every egom2p package that saves or loads weights (a model's or a tokenizer's).

Needs torch and safetensors (core's ``[torch]`` extra). A checkpoint is a directory holding
``model.safetensors`` (the weights) and ``config.json`` (what its owner needs to rebuild the module), written
by :func:`write_checkpoint_dir` and read by :func:`read_checkpoint_dir` (which merges a LoRA adapter kept beside
the weights, :mod:`egom2p.core.adapters`); a trainer's
``output_dir/checkpoints/step-<N>/`` is one, with its ``train_state.pt`` beside (ignored here).
:func:`resolve_checkpoint` finds the checkpoint a path names: such a directory, a run directory or its
``checkpoints/`` folder, an original ``.pth``/``.pt`` file, or a Hugging Face Hub id ``org/repo``
(:mod:`egom2p.core.hub`, the ``[hub]`` extra).

An original file is a pickle: :func:`load_torch_file` reads it with ``torch.load(weights_only=True)``,
allowing ``argparse.Namespace`` (the originals' ``args``) and nothing else by default; a file holding other
types is refused with the exact types and a one-time conversion the user can run on a file they trust.
The file names and step-directory rule come from :mod:`egom2p.core.checkpoint_layout`, the safe reads of the
weights and config files from :mod:`egom2p.core.checkpoint_files`, the durable writes from :mod:`egom2p.core.atomic`, the integrity manifest (``integrity.json``, which a trainer's step directories
carry) from :mod:`egom2p.core.checkpoint_integrity`; all are re-exported here. Every directory read here is
verified against its manifest when it has one, and its tensors against ``config.json``'s ``dtype`` when that
is set; a write checks disk space first and says "disk full" (:mod:`egom2p.core.disk_space`) when it runs out.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from egom2p.core import hub
from egom2p.core.adapters import merge_adapter, read_adapter
from egom2p.core.atomic import fsync_dir, write_atomic
from egom2p.core.checkpoint_files import read_config_json, read_safetensors, short_text
from egom2p.core.checkpoint_integrity import INTEGRITY_NAME, verify_checkpoint_dir, write_integrity
from egom2p.core.checkpoint_layout import (
    CONFIG_NAME,
    ORIGINAL_SUFFIXES,
    STEP_DIR_RE,
    WEIGHTS_NAME,
    is_checkpoint_dir,
    newest_step,
    step_dir_name,
)
from egom2p.core.disk_space import disk_full_errors, require_free_space, tensor_bytes
from egom2p.core.errors import MissingExtraError
from safetensors.torch import save_file

__all__ = [
    "CONFIG_NAME", "INTEGRITY_NAME", "ORIGINAL_SUFFIXES", "SAFE_GLOBALS", "STEP_DIR_RE", "WEIGHTS_NAME",
    "check_config_dtype", "fsync_dir", "is_checkpoint_dir", "load_torch_file", "newest_step", "parse_dtype",
    "read_checkpoint_dir", "read_checkpoint_weights", "read_config_json", "read_safetensors", "resolve_checkpoint", "step_dir_name",
    "verify_checkpoint_dir", "write_atomic", "write_checkpoint_dir", "write_integrity",
]

# The only non-tensor type the released originals need: their ``args`` (docs/original-behaviour.md#checkpoints).
SAFE_GLOBALS = (argparse.Namespace,)


def write_checkpoint_dir(
    directory: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> None:
    """Write ``model.safetensors`` (``state_dict``) and ``config.json`` (``config``, JSON-able) into ``directory``,
    then ``integrity.json`` recording both (checked whenever the directory is read).

    The directory is created if needed. Each file is written under a temporary name, fsynced and renamed
    into place, then the directory is fsynced: a crash leaves the old files or the new ones. Tensors are
    stored contiguous, on the CPU. Too little free space for the tensors is a ``DiskFullError`` naming
    ``directory`` before anything is written; a write that runs out of room is one too.
    """
    directory = Path(directory)
    text = json.dumps(dict(config), indent=2) + "\n"  # before any write: a config that is not JSON writes nothing
    with disk_full_errors(directory):
        require_free_space(directory, tensor_bytes(state_dict), "the weights")
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
        write_atomic(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
        write_atomic(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        write_integrity(directory, (WEIGHTS_NAME, CONFIG_NAME))  # last: it records the two files above
        fsync_dir(directory)


def check_config_dtype(state: Mapping[str, torch.Tensor], dtype: Any, where: str) -> None:
    """Every floating tensor of ``state`` must be ``dtype`` (``config.json``'s ``dtype``; None: no rule).

    A one-line ValueError names ``where`` (the config file), the key ``dtype``, the tensor and both dtypes.
    """
    if dtype is None:
        return
    try:
        declared = parse_dtype(dtype)
    except ValueError as err:
        raise ValueError(f"{where}: 'dtype': {err}") from None
    for key, tensor in state.items():
        if tensor.is_floating_point() and tensor.dtype != declared:
            raise ValueError(f"{where}: 'dtype' is {str(declared).removeprefix('torch.')} but tensor '{key}' is "
                             f"{str(tensor.dtype).removeprefix('torch.')}")


def read_checkpoint_dir(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights and the config dict of checkpoint directory ``directory`` (see :func:`write_checkpoint_dir`).

    A missing file is a FileNotFoundError naming it; an unreadable one a one-line ValueError naming it. The
    directory is first checked against its ``integrity.json`` when it has one (:func:`verify_checkpoint_dir`);
    a ``dtype`` in ``config.json`` describes the stored tensors: it is checked (:func:`check_config_dtype`)
    and not returned with the config.
    """
    directory = Path(directory)
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory}: no {name} (a checkpoint directory holds {WEIGHTS_NAME} + {CONFIG_NAME})")
    verify_checkpoint_dir(directory)
    state, config = read_checkpoint_weights(directory), read_config_json(directory / CONFIG_NAME)
    check_config_dtype(state, config.pop("dtype", None), str(directory / CONFIG_NAME))
    return state, config


def read_checkpoint_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights of checkpoint directory ``directory``, with its LoRA adapter merged in when it has one
    (:mod:`egom2p.core.adapters`); the caller verifies the directory first."""
    directory = Path(directory)
    state = read_safetensors(directory / WEIGHTS_NAME)
    adapter = read_adapter(directory)
    if adapter is None:
        return state
    try:
        return merge_adapter(state, *adapter)
    except ValueError as err:
        raise ValueError(f"{directory}: {err}") from None


def _resolve_local(path: Path) -> Path | None:
    if path.is_file() and path.suffix in ORIGINAL_SUFFIXES:
        return path
    if path.is_dir():
        if (path / WEIGHTS_NAME).is_file():
            return path
        for folder in (path / "checkpoints", path):
            if folder.is_dir() and (step := newest_step(folder)) is not None:
                return step
    return None


def _resolve_snapshot(folder: Path, repo_id: str) -> Path:
    """A Hub snapshot: our files, else its one original ``.pth``/``.pt``."""
    if (folder / WEIGHTS_NAME).is_file():
        return folder
    originals = sorted(p for p in folder.iterdir() if p.suffix in ORIGINAL_SUFFIXES)
    if len(originals) == 1:
        return originals[0]
    raise FileNotFoundError(f"{repo_id}: the Hub repository holds neither {WEIGHTS_NAME} nor exactly one "
                            f"{'/'.join(ORIGINAL_SUFFIXES)} file (found {[p.name for p in originals]})")


def resolve_checkpoint(
    path: str | os.PathLike, revision: str | None = None, *, install_hint: str = hub.INSTALL_HINT
) -> Path:
    """The checkpoint that ``path`` names.

    - a directory holding ``model.safetensors`` (+ ``config.json``): itself (a step directory is one);
    - a training run's ``output_dir``, or its ``checkpoints/`` folder: the highest-numbered
      ``checkpoints/step-<N>/`` that holds both files (temporary and incomplete steps are skipped);
    - an original ``.pth``/``.pt`` file: itself;
    - a Hugging Face Hub id ``org/repo`` that is not a local path (nor under a local folder ``org``): the
      repository's snapshot in the
      local cache (downloaded first unless ``HF_HUB_OFFLINE=1``; ``revision`` picks a branch, tag or
      commit): its checkpoint directory, else its one original file. Needs the ``[hub]`` extra; without it
      the error ends in ``install_hint`` (the ``pip install`` of the caller's package).

    Raises FileNotFoundError naming the path and what was looked for otherwise.
    """
    text = os.fspath(path)  # as given: Path() would turn "./org/repo" into the hub-shaped "org/repo"
    path = Path(path)
    local = _resolve_local(path)
    if local is not None:
        return local
    # "runs/demo" is hub-shaped too: when its first folder exists here it is a local path that is missing, and a
    # missing local path is never sent to the Hub.
    if not path.exists() and hub.is_hub_id(text) and not path.parent.is_dir():
        try:
            return _resolve_snapshot(hub.download_checkpoint(text, revision, install_hint=install_hint), text)
        except MissingExtraError as err:
            raise FileNotFoundError(f"{text}: no such file or directory (if it is a Hugging Face Hub id: {err})") from None
    what = "not a checkpoint" if path.exists() else "no such file or directory" + (
        f" (not taken for a Hub id: the folder {path.parent} is here)" if hub.is_hub_id(text) else "")
    raise FileNotFoundError(
        f"{path}: {what}; expected a directory with {WEIGHTS_NAME} + {CONFIG_NAME}, a run directory with "
        f"checkpoints/step-<N>/, a checkpoints/ folder, an original {'/'.join(ORIGINAL_SUFFIXES)} file, "
        "or a Hugging Face Hub id org/repo"
    )


def _conversion_hint(path: Path) -> str:
    # Keeps the weights and the args' plain values (strings, numbers, lists), which the safe loader reads.
    safe = path.with_name(f"{path.stem}.safe{path.suffix}")
    return (f"if you trust the file, convert it once (this unpickles it): python -c \"import torch; "
            f"c = torch.load('{path}', map_location='cpu', weights_only=False); a = c.get('args') or {{}}; "
            f"a = a if isinstance(a, dict) else vars(a); torch.save({{'model': c['model'], 'args': {{k: v for k, v "
            f"in a.items() if isinstance(v, (str, int, float, bool, list, tuple, type(None)))}}}}, '{safe}')\" "
            f"and load {safe} instead")


def _refused_types(path: Path, err: Exception, allowed: Iterable[type]) -> list[str]:
    allowed_names = {f"{t.__module__}.{t.__qualname__}" for t in allowed}
    try:  # lists every global the file needs, without running the pickle
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:
        names = re.findall(r"GLOBAL ([\w.]+) (?:was not an allowed global|whose module)", str(err))
    return [n for n in names if n not in allowed_names]


def load_torch_file(path: str | os.PathLike, safe_globals: Iterable[type] = SAFE_GLOBALS) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` allowing ``safe_globals`` besides tensors
    and plain containers.

    Nothing in the file runs as code. A file that needs any other type is a one-line ValueError naming those
    types and a one-time conversion (for a file the user trusts) into one the safe loader reads; a file that is
    not a PyTorch checkpoint is a one-line ValueError naming it. OSErrors (a missing file) pass through.
    """
    path = Path(path)
    allowed = list(safe_globals)
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except pickle.UnpicklingError as err:
        with open(path, "rb") as f:  # torch files are zips ("PK") or, before torch 1.6, pickles (PROTO 0x80)
            head = f.read(2)
        looks_like_torch = head == b"PK" or head[:1] == b"\x80"
        if "Weights only load failed" not in str(err) or not looks_like_torch:
            raise ValueError(f"{path}: not a PyTorch checkpoint (UnpicklingError: {short_text(err)})") from None
        refused = _refused_types(path, err, allowed)
        if refused:
            raise ValueError(f"{path}: holds {', '.join(refused)}, which the safe loader (torch.load with "
                             f"weights_only=True) does not allow; {_conversion_hint(path)}") from None
        # The unpickler's own words: after "WeightsUnpickler error:", else the last paragraph before the docs link.
        detail = str(err).split("Check the documentation")[0].split("WeightsUnpickler error:")[-1].strip()
        reason = short_text(detail.split("\n\n")[-1])
        raise ValueError(f"{path}: the safe loader (torch.load with weights_only=True) cannot read it ({reason}); "
                         f"{_conversion_hint(path)}") from None
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError) as err:  # zip, EOF, bad-opcode errors
        raise ValueError(f"{path}: not a PyTorch checkpoint ({type(err).__name__}: {short_text(err)})") from None


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``torch.float32`` / ``"bfloat16"`` / ``"bf16"`` / ... -> a floating torch dtype (None stays None)."""
    if dtype is None:
        return None
    parsed: Any = dtype
    if not isinstance(dtype, torch.dtype):
        names = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16", "float": "float32"}
        text = str(dtype).removeprefix("torch.")
        parsed = getattr(torch, names.get(text, text), None)
    if not isinstance(parsed, torch.dtype) or not parsed.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype (float32, bfloat16, float16), got {dtype!r}")
    return parsed

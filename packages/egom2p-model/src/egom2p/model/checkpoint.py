"""Checkpoint I/O: our format (safetensors + config.json), training runs, and the released original ``.pth``.

Our checkpoint is a directory holding ``model.safetensors`` and ``config.json`` (what
:func:`write_pretrained` writes); a trainer's ``output_dir/checkpoints/step-<N>/`` is one, with its
``train_state.pt`` beside (ignored here). :func:`resolve_checkpoint` finds the checkpoint a path
names: such a directory, a run directory or its ``checkpoints/`` folder, an original file, or a Hugging
Face Hub id ``org/repo`` (:mod:`egom2p.model.hub`, the ``[hub]`` extra).

The original's state dict (SPEC 8.2) has our parameter names plus entries we do not store:
fixed ``pos_emb`` buffers, all-zero LayerNorm ``bias`` buffers (bias-free variants), and tied
duplicates (``decoder_embeddings.M.to_logits.weight`` = decoder ``token_emb``; decoder ``mod_emb`` =
encoder ``mod_emb``). Those are checked against what they must equal, then dropped. The original file is a
pickle: it is read with ``torch.load(weights_only=True)``, allowing ``argparse.Namespace`` (its ``args``)
and nothing else; a file holding other types is refused with the exact types and a one-time conversion.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from egom2p.core.modalities import RELEASED_MODALITIES
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import EgoM2PConfig
from .presets import PRESETS

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
ORIGINAL_SUFFIXES = (".pth", ".pt")
_STEP_DIR = re.compile(r"step-(\d+)")  # a trainer's step directory; "step-5.tmp" and the like do not match


def _write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """``write(temp_path)`` beside ``path``, fsync, then rename over ``path``: readers see old or new, never half."""
    # A unique hidden name in the same folder (same filesystem, so the rename is atomic).
    tmp = str(path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"))
    try:
        with open(tmp, "xb"):
            pass
        mode = os.stat(tmp).st_mode & 0o777  # what a new file gets under the umask
        write(tmp)
        os.chmod(tmp, mode)  # safetensors writes 0600; checkpoints are shared like any other file
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    # Makes the renames durable; some platforms/filesystems cannot open a directory for fsync.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_state_keys(state_dict: Mapping[str, torch.Tensor], config: EgoM2PConfig) -> None:
    from .model import EgoM2P  # checkpoint <- model import cycle; only needed here

    with torch.device("meta"):  # shapes only, no memory
        expected = {k: tuple(v.shape) for k, v in EgoM2P(config).state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict) if tuple(state_dict[k].shape) != expected[k])
    if missing or unexpected or wrong:
        raise ValueError(f"state dict does not match the config: missing keys {missing}; unexpected keys {unexpected}; "
                         f"wrong shapes {[(k, tuple(state_dict[k].shape), expected[k]) for k in wrong]}")


def write_pretrained(directory: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], config: EgoM2PConfig) -> None:
    """Write ``model.safetensors`` (``state_dict``) and ``config.json`` (``config``) into ``directory``.

    The file-writing half of ``save_pretrained``, for callers that hold a full state dict but no
    model to call it on (the trainer exporting a sharded or compiled model). The keys and shapes
    must be those of ``EgoM2P(config)`` (ValueError naming the differences otherwise), so the
    directory always opens with ``EgoM2P.from_pretrained``. Each file is written under a temporary
    name, fsynced and renamed into place.
    """
    if not isinstance(config, EgoM2PConfig):
        raise TypeError(f"config must be an EgoM2PConfig, got {type(config).__name__}")
    _check_state_keys(state_dict, config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    _write_atomic(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    text = json.dumps(config.to_dict(), indent=2) + "\n"
    _write_atomic(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    _fsync_dir(directory)


def save_pretrained(model: nn.Module, directory: str | os.PathLike) -> None:
    """Write ``model``'s ``model.safetensors`` and ``config.json`` into ``directory`` (see ``write_pretrained``)."""
    write_pretrained(directory, model.state_dict(), model.config)


def _is_checkpoint_dir(path: Path) -> bool:
    return (path / WEIGHTS_NAME).is_file() and (path / CONFIG_NAME).is_file()


def _newest_step(checkpoints: Path) -> Path | None:
    steps = [(int(m.group(1)), p) for p in checkpoints.iterdir() if (m := _STEP_DIR.fullmatch(p.name)) and p.is_dir()]
    complete = [(n, p) for n, p in steps if _is_checkpoint_dir(p)]
    return max(complete)[1] if complete else None


def _resolve_local(path: Path) -> Path | None:
    if path.is_file() and path.suffix in ORIGINAL_SUFFIXES:
        return path
    if path.is_dir():
        if (path / WEIGHTS_NAME).is_file():
            return path
        for folder in (path / "checkpoints", path):
            if folder.is_dir() and (step := _newest_step(folder)) is not None:
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


def resolve_checkpoint(path: str | os.PathLike, revision: str | None = None) -> Path:
    """The checkpoint that ``path`` names, for ``EgoM2P.from_pretrained`` and ``egom2p-convert``.

    - a directory holding ``model.safetensors`` (+ ``config.json``): itself (a step directory is one);
    - a training run's ``output_dir``, or its ``checkpoints/`` folder: the highest-numbered
      ``checkpoints/step-<N>/`` that holds both files (temporary and incomplete steps are skipped);
    - an original ``.pth``/``.pt`` file: itself;
    - a Hugging Face Hub id ``org/repo`` that is not a local path: the repository's snapshot in the
      local cache (downloaded first unless ``HF_HUB_OFFLINE=1``; ``revision`` picks a branch, tag or
      commit). Needs the ``[hub]`` extra.

    Raises FileNotFoundError naming the path and what was looked for otherwise.
    """
    text = os.fspath(path)  # as given: Path() would turn "./org/repo" into the hub-shaped "org/repo"
    path = Path(path)
    local = _resolve_local(path)
    if local is not None:
        return local
    if not path.exists():
        from . import hub  # hub builds on this module; imported only for hub ids

        if hub.is_hub_id(text):
            try:
                return _resolve_snapshot(hub.download_checkpoint(text, revision), text)
            except hub.MissingExtraError as err:
                raise FileNotFoundError(f"{text}: no such file or directory (if it is a Hugging Face Hub id: {err})") from None
    what = "no such file or directory" if not path.exists() else "not a checkpoint"
    raise FileNotFoundError(
        f"{path}: {what}; expected a directory with {WEIGHTS_NAME} + {CONFIG_NAME}, a run directory with "
        f"checkpoints/step-<N>/, a checkpoints/ folder, an original {'/'.join(ORIGINAL_SUFFIXES)} file, "
        "or a Hugging Face Hub id org/repo"
    )


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


# The only non-tensor type the original checkpoint needs: its ``args`` (SPEC 8.1).
SAFE_GLOBALS = (argparse.Namespace,)


def _conversion_hint(path: Path) -> str:
    safe = path.with_name(f"{path.stem}.safe{path.suffix}")
    return (f"if you trust the file, convert it once (this unpickles it): python -c \"import torch; "
            f"c = torch.load('{path}', map_location='cpu', weights_only=False); a = c.get('args'); "
            f"torch.save({{'model': c['model'], 'args': {{k: getattr(a, k, None) for k in "
            f"('model', 'in_domains', 'out_domains')}}}}, '{safe}')\" and load {safe} instead")


def _refused_types(path: Path, err: Exception) -> list[str]:
    allowed = {f"{t.__module__}.{t.__qualname__}" for t in SAFE_GLOBALS}
    try:  # lists every global the file needs, without running the pickle
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:
        names = re.findall(r"GLOBAL ([\w.]+) was not an allowed global", str(err))
    return [n for n in names if n not in allowed]


def _short(text: object, limit: int = 200) -> str:
    return " ".join(str(text).split())[:limit]


def _load_torch_file(path: Path) -> Any:
    """``torch.load(weights_only=True)`` allowing :data:`SAFE_GLOBALS`; ValueError naming the problem otherwise."""
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except pickle.UnpicklingError as err:
        with open(path, "rb") as f:  # torch files are zips ("PK") or, before torch 1.6, pickles (PROTO 0x80)
            head = f.read(2)
        looks_like_torch = head == b"PK" or head[:1] == b"\x80"
        if "Weights only load failed" not in str(err) or not looks_like_torch:
            raise ValueError(f"{path}: not a PyTorch checkpoint (UnpicklingError: {_short(err)})") from None
        refused = _refused_types(path, err)
        if refused:
            raise ValueError(f"{path}: holds {', '.join(refused)}, which the safe loader (torch.load with "
                             f"weights_only=True) does not allow; {_conversion_hint(path)}") from None
        reason = _short(str(err).split("WeightsUnpickler error:")[-1].split("Check the documentation")[0])
        raise ValueError(f"{path}: the safe loader (torch.load with weights_only=True) cannot read it ({reason}); "
                         f"{_conversion_hint(path)}") from None
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError) as err:  # zip, EOF, bad-opcode errors
        raise ValueError(f"{path}: not a PyTorch checkpoint ({type(err).__name__}: {_short(err)})") from None


def _read_config_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON config ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of EgoM2PConfig fields")
    return data


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
                config = _read_config_json(path / CONFIG_NAME)
            try:
                state = load_file(str(path / WEIGHTS_NAME))
            except SafetensorError as err:
                raise ValueError(f"{path / WEIGHTS_NAME}: not a readable safetensors file ({_short(err)})") from None
        else:
            loaded = _load_torch_file(path)
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
    model = cls(cfg)
    try:
        model.load_state_dict(original_to_native(model, state), strict=True)
    except RuntimeError as err:  # e.g. a tensor of the wrong shape
        raise ValueError(f"{where}: the weights do not fit the config ({_short(err, 300)})") from None
    return model.to(device=device, dtype=target_dtype).eval()

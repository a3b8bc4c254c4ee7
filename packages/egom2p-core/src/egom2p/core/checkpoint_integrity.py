"""A checkpoint directory's integrity manifest: what each file was when it was written, checked before it is believed.

:func:`write_integrity` records, in ``integrity.json`` (written last, atomically), every file of a directory
with its size and sha256, and for each ``.safetensors`` file the dtype and shape of every tensor (read from
its header, so no tensor is loaded). :func:`verify_checkpoint_dir` compares the directory with it: a missing
file, another size, another tensor dtype or shape, or other bytes (a flipped bit) is a one-line ValueError
naming the file and what differs. A directory without a manifest (older runs, converted or downloaded
checkpoints, folders a user made) is not checked. Hashes are computed in fixed-size chunks, so checking a
file never holds more than one chunk of it in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from egom2p.core.atomic import write_atomic
from egom2p.core.checkpoint_layout import INTEGRITY_NAME
from safetensors import SafetensorError, safe_open

__all__ = ["INTEGRITY_NAME", "file_sha256", "tensor_specs", "verify_checkpoint_dir", "write_integrity"]

_FORMAT = "egom2p-checkpoint-integrity/1"
_CHUNK = 1 << 20
# safetensors header dtype codes -> torch's names (what users and config.json say).
_DTYPE_NAMES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64",
    "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool", "C64": "complex64",
}


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 hex digest of ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tensor_specs(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{key: (dtype name, shape)}`` of safetensors file ``path``, from its header (no tensor is read).

    A file whose header cannot be read is a one-line ValueError naming it.
    """
    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            specs = {}
            for key in f.keys():
                part = f.get_slice(key)
                code = part.get_dtype()
                specs[key] = (_DTYPE_NAMES.get(code, code.lower()), tuple(part.get_shape()))
            return specs
    except SafetensorError as err:
        raise ValueError(f"{path}: not a readable safetensors file ({' '.join(str(err).split())[:200]})") from None


def _entry(path: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    if path.suffix == ".safetensors":
        entry["tensors"] = {k: {"dtype": d, "shape": list(s)} for k, (d, s) in tensor_specs(path).items()}
    return entry


def write_integrity(directory: str | os.PathLike, names: Iterable[str] | None = None, *, add: bool = False) -> Path:
    """Record the files ``names`` of ``directory`` (None: every file) in ``directory/integrity.json``; returns
    its path. ``add`` keeps what the manifest already records (files written earlier are not hashed again).

    Call it after the last file is written: hidden files (temporary names) and the manifest itself are
    left out. The manifest is written atomically (the caller fsyncs the directory).
    """
    directory = Path(directory)
    wanted = None if names is None else set(names)
    files = _read_manifest(directory / INTEGRITY_NAME) if add else {}
    files.update({p.name: _entry(p) for p in sorted(directory.iterdir())
                  if p.is_file() and not p.name.startswith(".") and p.name != INTEGRITY_NAME
                  and (wanted is None or p.name in wanted)})
    files = dict(sorted(files.items()))
    text = json.dumps({"format": _FORMAT, "files": files}) + "\n"  # one line: read by programs
    path = directory / INTEGRITY_NAME
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def _read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable integrity manifest ({' '.join(str(err).split())[:200]})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT or not isinstance(files, dict):
        raise ValueError(f"{path}: not an integrity manifest of format {_FORMAT}")
    for name, entry in files.items():
        # Plain names only: a manifest never makes us read outside its directory.
        if Path(name).name != name or name in ("", ".", "..") or not isinstance(entry, dict) or not (
                isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str)):
            raise ValueError(f"{path}: malformed entry {name!r}")
    return files


def _tensor_difference(recorded: dict[str, Any], actual: dict[str, tuple[str, tuple[int, ...]]]) -> str | None:
    """What differs between the recorded and the actual tensors of one file (the first difference), or None."""
    missing, extra = sorted(set(recorded) - set(actual)), sorted(set(actual) - set(recorded))
    if missing or extra:
        return f"tensors {missing} missing and {extra} unexpected"
    for key in sorted(recorded):
        dtype, shape = actual[key]
        if dtype != recorded[key].get("dtype"):
            return f"tensor '{key}' is {dtype}, {INTEGRITY_NAME} recorded {recorded[key].get('dtype')}"
        if list(shape) != recorded[key].get("shape"):
            return f"tensor '{key}' has shape {list(shape)}, {INTEGRITY_NAME} recorded {recorded[key].get('shape')}"
    return None


def verify_checkpoint_dir(directory: str | os.PathLike) -> bool:
    """Check ``directory`` against its ``integrity.json``: True when it matches, False when it has no manifest.

    A difference is a one-line ValueError naming the file and what differs (missing, size, a tensor's dtype
    or shape, content). Files the manifest does not list are not checked.
    """
    directory = Path(directory)
    manifest = directory / INTEGRITY_NAME
    if not manifest.is_file():
        return False
    deliberate = f"if the change was deliberate, delete {manifest} to load it unchecked"
    for name, entry in _read_manifest(manifest).items():
        path = directory / name
        if not path.is_file():
            raise ValueError(f"{path}: missing, but listed in {manifest}")
        if isinstance(entry.get("tensors"), dict):  # first: a re-saved tensor is named, not just a new size
            problem = _tensor_difference(entry["tensors"], tensor_specs(path))
            if problem:
                raise ValueError(f"{path}: {problem} (changed after it was written; {deliberate})")
        size = path.stat().st_size
        if size != entry["size"]:
            raise ValueError(f"{path}: {size} bytes, {INTEGRITY_NAME} recorded {entry['size']} (damaged or "
                             f"changed after it was written; {deliberate})")
        digest = file_sha256(path)
        if digest != entry["sha256"]:
            raise ValueError(f"{path}: content differs from {INTEGRITY_NAME} (sha256 {digest[:16]}..., recorded "
                             f"{entry['sha256'][:16]}...): damaged or changed after it was written; {deliberate}")
    return True

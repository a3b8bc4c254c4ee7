"""Inspect and validate token shards: counts, shapes, dtypes, token ranges and key alignment."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from egom2p.data.modalities import ModalityInfo
from egom2p.data.shards import ShardError, decode_tokens, expand_folders, expand_shard_pattern, read_tar_members

__all__ = ["FolderSummary", "ShardReport", "inspect_shards"]


@dataclass
class FolderSummary:
    """What one modality folder's tars hold."""

    samples: int = 0
    shapes: Counter = field(default_factory=Counter)
    dtypes: Counter = field(default_factory=Counter)
    min_token: int | None = None
    max_token: int | None = None


@dataclass
class ShardReport:
    """Result of :func:`inspect_shards`; ``problems`` is empty for valid shards."""

    shards: int = 0
    folders: dict[str, FolderSummary] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def format(self) -> str:
        """A human-readable summary."""
        lines = [f"shards: {self.shards}"]
        for folder, s in sorted(self.folders.items()):
            shapes = ", ".join(f"{list(k)} x{v}" for k, v in s.shapes.most_common())
            dtypes = ", ".join(f"{k} x{v}" for k, v in s.dtypes.most_common())
            lines.append(f"  {folder or '<single tar>'}: {s.samples} samples; shapes {shapes}; stored dtypes {dtypes}; "
                         f"tokens in [{s.min_token}, {s.max_token}]")
        lines.append(f"problems: {len(self.problems)}")
        lines += [f"  - {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more")
        return "\n".join(lines)


def _stored_dtype(name: str, data: bytes) -> str:
    buffer = io.BytesIO(data)
    if name.endswith(".npz"):
        with np.load(buffer) as archive:
            return str(archive["arr_0"].dtype)
    return str(np.load(buffer).dtype)


def inspect_shards(pattern: str, modalities: Mapping[str, ModalityInfo] | None = None) -> ShardReport:
    """Read every shard of ``pattern`` and report contents and problems.

    Problems: unreadable tars, keys that differ (or differ in order) across a shard's modality tars,
    undecodable members, and, when ``modalities`` is given, shapes and token ids that do not fit the
    modality of the folder (matched by ``ModalityInfo.folder``).
    """
    by_folder = {info.folder: info for info in (modalities or {}).values()}
    report = ShardReport()
    for url in expand_shard_pattern(pattern):
        report.shards += 1
        keys_per_folder: dict[str, list[str]] = {}
        for folder, folder_url in expand_folders(url).items():
            summary = report.folders.setdefault(folder, FolderSummary())
            try:
                members = read_tar_members(folder_url)
            except ShardError as exc:
                report.problems.append(str(exc))
                continue
            if modalities is not None and folder not in by_folder:
                report.problems.append(f"{folder_url}: folder '{folder}' matches no modality in the modality file")
            keys_per_folder[folder] = [key for key, _, _ in members]
            for key, ext, data in members:
                name = f"{key}.{ext}"
                try:
                    tokens = decode_tokens(name, data)
                    summary.dtypes[_stored_dtype(name, data)] += 1
                except Exception as exc:  # report every undecodable member, keep going
                    report.problems.append(f"{folder_url}:{key}: {exc}")
                    continue
                summary.samples += 1
                summary.shapes[tokens.shape] += 1
                if tokens.size:
                    lo, hi = int(tokens.min()), int(tokens.max())
                    summary.min_token = lo if summary.min_token is None else min(summary.min_token, lo)
                    summary.max_token = hi if summary.max_token is None else max(summary.max_token, hi)
                info = by_folder.get(folder)
                if info is None:
                    continue
                if tokens.shape not in (info.shape, (info.num_tokens,)):
                    report.problems.append(f"{folder_url}:{key}: shape {tokens.shape}, expected {info.shape} ({info.name})")
                elif tokens.size and (tokens.min() < 0 or tokens.max() >= info.vocab_size):
                    report.problems.append(f"{folder_url}:{key}: tokens in [{tokens.min()}, {tokens.max()}] outside "
                                           f"vocabulary {info.vocab_size} ({info.name})")
        if len(keys_per_folder) > 1:
            ref_folder, ref = next(iter(keys_per_folder.items()))
            for folder, keys in keys_per_folder.items():
                if keys != ref:
                    missing = sorted(set(ref) ^ set(keys))[:3]
                    what = f"keys differ (e.g. {missing})" if missing else "keys are in a different order"
                    report.problems.append(f"{url}: folder '{folder}' vs '{ref_folder}': {what}")
    return report

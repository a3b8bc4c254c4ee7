"""Inspect and validate token shards: counts, shapes, dtypes, token ranges and key alignment."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from egom2p.core.modalities import ModalitySpec
from egom2p.core.shards import ShardError, expand_folders, expand_shard_pattern, load_token_array, read_tar_members
from egom2p.data.shards import open_url

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


def inspect_shards(pattern: str, modalities: Mapping[str, ModalitySpec] | None = None) -> ShardReport:
    """Read every shard of ``pattern`` (local or ``s3://``) and report contents and problems.

    Problems: unreadable tars, keys that differ (or differ in order) across a shard's modality tars,
    undecodable members, non-integer arrays and, when ``modalities`` is given, arrays that do not fit
    the modality of their folder (:meth:`ModalitySpec.check_tokens`: shape, dtype, vocabulary).
    """
    by_folder = {spec.folder: spec for spec in (modalities or {}).values()}
    report = ShardReport()
    for url in expand_shard_pattern(pattern):
        report.shards += 1
        keys_per_folder: dict[str, list[str]] = {}
        for folder, folder_url in expand_folders(url).items():
            summary = report.folders.setdefault(folder, FolderSummary())
            try:
                members = read_tar_members(folder_url, open_url)
            except ShardError as exc:
                report.problems.append(str(exc))
                continue
            if modalities is not None and folder not in by_folder:
                report.problems.append(f"{folder_url}: folder '{folder}' matches no modality in the modality file")
            keys_per_folder[folder] = [key for key, _, _ in members]
            spec = by_folder.get(folder)
            for key, ext, data in members:
                try:
                    array = load_token_array(f"{key}.{ext}", data)  # the stored dtype, for the report
                except ValueError as exc:  # report every undecodable member, keep going
                    report.problems.append(f"{folder_url}:{key}: {exc}")
                    continue
                summary.samples += 1
                summary.shapes[array.shape] += 1
                summary.dtypes[str(array.dtype)] += 1
                integer = np.issubdtype(array.dtype, np.integer)
                problem = spec.check_tokens(array) if spec is not None else None
                if problem is None and not integer:
                    problem = f"dtype {array.dtype}, expected integer token ids"
                if problem is not None:
                    report.problems.append(f"{folder_url}:{key}: {problem}")
                if integer and array.size:
                    lo, hi = int(array.min()), int(array.max())
                    summary.min_token = lo if summary.min_token is None else min(summary.min_token, lo)
                    summary.max_token = hi if summary.max_token is None else max(summary.max_token, hi)
        if len(keys_per_folder) > 1:
            ref_folder, ref = next(iter(keys_per_folder.items()))
            for folder, keys in keys_per_folder.items():
                if keys != ref:
                    missing = sorted(set(ref) ^ set(keys))[:3]
                    what = f"keys differ (e.g. {missing})" if missing else "keys are in a different order"
                    report.problems.append(f"{url}: folder '{folder}' vs '{ref_folder}': {what}")
    return report

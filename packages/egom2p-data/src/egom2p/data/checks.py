"""Inspect and validate token shards: what training will read, and every problem that would lose data.

``validate`` agrees with training: each sample goes through the loader's own per-sample check
(:func:`egom2p.data.samples.decode_sample`, given a modality file), so every sample training would skip is
a problem. On top, what training cannot see:

- a tar that does not read, holds no sample, or holds a key twice;
- keys that differ (in set or order) across a shard's modality folders;
- a tar without its end-of-archive marker: cut short at a member boundary (an interrupted copy or upload),
  it still reads, and if every folder was cut at the same place the keys still agree, yet samples are gone;
- per-shard sample counts: the pattern is taken as one dataset whose shards were written full except the
  last (``egom2p-data write``, webdataset's ``ShardWriter``), so a shard before the last holding another count
  than the most common one, or the last holding more, is flagged; ``expect_samples_per_shard`` makes the
  rule exact (every shard N samples, the last 1..N). The counts are in the report either way.

Missing shard files are not a problem but an error (``FileNotFoundError``, exit 2 in the CLI): the pattern
or the data location is wrong, and nothing should be validated against it.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from egom2p.core.errors import ShardError
from egom2p.core.layout import expand_folders, expand_shard_pattern
from egom2p.core.modalities import ModalitySpec
from egom2p.core.pairing import PairedSample, key_mismatches, pair_members
from egom2p.core.shards import decode_tokens, iter_tar_members, open_url, read_token_header
from egom2p.data.samples import SampleProblem, decode_sample, member_problem
from tqdm import tqdm

__all__ = ["FolderSummary", "ShardReport", "inspect_shards"]

_TAR_BLOCK = 512


@dataclass
class FolderSummary:
    """What one modality folder's tars hold (shapes and dtypes as stored, from the file headers)."""

    samples: int = 0
    shapes: Counter = field(default_factory=Counter)
    dtypes: Counter = field(default_factory=Counter)
    min_token: int | None = None
    max_token: int | None = None

    def add_tokens(self, array: np.ndarray) -> None:
        """Widen the token range by ``array``'s ids."""
        if array.size:
            lo, hi = int(array.min()), int(array.max())
            self.min_token = lo if self.min_token is None else min(self.min_token, lo)
            self.max_token = hi if self.max_token is None else max(self.max_token, hi)


@dataclass
class ShardReport:
    """Result of :func:`inspect_shards`; ``problems`` is empty for valid shards."""

    shards: int = 0
    folders: dict[str, FolderSummary] = field(default_factory=dict)
    samples_per_shard: dict[str, int] = field(default_factory=dict)  # shard URL -> samples training reads
    problems: list[str] = field(default_factory=list)

    @property
    def samples(self) -> int:
        """Samples training would read from these shards (the keys of each shard's folders, paired as the loader
        pairs them)."""
        return sum(self.samples_per_shard.values())

    def format(self) -> str:
        """A human-readable summary."""
        counts = Counter(self.samples_per_shard.values())
        lines = [f"shards: {self.shards}; samples: {self.samples}; samples per shard: "
                 + (", ".join(f"{n} x{k}" for n, k in sorted(counts.items(), reverse=True)) or "-")]
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


def _exists(url: str) -> bool:
    if url.startswith("s3://"):
        from egom2p.core.s3 import exists_s3  # boto3 is the optional [s3] extra

        return exists_s3(url)
    return os.path.isfile(url[len("file://"):] if url.startswith("file://") else url)


def _check_present(urls: list[dict[str, str]], pattern: str) -> None:
    """Raise ``FileNotFoundError`` naming the missing tars of ``pattern`` (one line)."""
    tars = [u for folders in urls for u in folders.values()]
    missing = [u for u in tars if not _exists(u)]
    if missing:
        if len(missing) == len(tars):
            raise FileNotFoundError(f"no shard file of {pattern} exists (e.g. {missing[0]})")
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{len(missing)} of {len(tars)} shard files of {pattern} are missing: {missing[0]}{more}")


def _end_marker_problem(data: bytes, url: str) -> str | None:
    """A plain tar ends with a zero block after its last member; one cut at a member boundary does not.

    The tar's structure, not its members (those come from core's reader): where its last member ends."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = len(tar.getmembers())
            end = tar.offset
    except tarfile.TarError:
        return None  # compressed or unreadable: the member reader reports what matters
    tail = data[end:end + _TAR_BLOCK]
    if len(tail) == _TAR_BLOCK and not any(tail):
        return None
    what = "ends without the tar end-of-archive marker" if not tail else "has unreadable bytes where the next member or the end marker belongs"
    return f"{url}: {what} after {members} members: truncated (an interrupted copy or upload?); the samples after it are lost"


def _read_folder(url: str, report: ShardReport) -> list[tuple[str, str, bytes]] | None:
    """The members of one modality tar, or None after recording why it cannot be used."""
    try:
        with open_url(url) as stream:
            data = stream.read()
        members = list(iter_tar_members(io.BytesIO(data), url))
    except (ShardError, OSError) as exc:
        report.problems.append(str(exc) if isinstance(exc, ShardError) else f"cannot read shard {url}: {exc}")
        return None
    problem = _end_marker_problem(data, url)
    if problem is not None:
        report.problems.append(problem)
    if not members:
        report.problems.append(f"{url}: holds no samples")
    return members


def _summarize(summary: FolderSummary, name: str, data: bytes) -> None:
    try:
        head = read_token_header(name, data)
    except ValueError:
        return  # the sample check reports it
    summary.samples += 1
    summary.shapes[head.shape] += 1
    summary.dtypes[str(head.dtype)] += 1


def _check_members(url: str, members: list[tuple[str, str, bytes]], summary: FolderSummary, report: ShardReport) -> None:
    """Members of a folder no modality spec describes: decodable integer arrays of a bounded size."""
    for key, ext, data in members:
        name = f"{key}.{ext}"
        try:
            problem = member_problem(name, data, None)
            array = decode_tokens(name, data) if problem is None else None
        except ValueError as exc:
            problem = str(exc)
        if problem is not None:
            report.problems.append(f"{url}:{key}: {problem}")
        else:
            summary.add_tokens(array)


def _count_problems(report: ShardReport, expect: int | None) -> None:
    counts = list(report.samples_per_shard.items())
    if not counts:
        return
    *body, (last_url, last_n) = counts
    if expect is not None:
        report.problems += [f"{u}: {n} samples, expected {expect}" for u, n in body if n != expect]
        if not 1 <= last_n <= expect:
            report.problems.append(f"{last_url}: {last_n} samples, expected 1 to {expect} (the last shard)")
        return
    if not body:
        return
    usual = max(Counter(n for _, n in body).most_common(), key=lambda item: (item[1], item[0]))[0]
    report.problems += [f"{u}: {n} samples while the other shards of the pattern hold {usual} (samples lost?)"
                        for u, n in body if n != usual]
    if last_n > usual:
        report.problems.append(f"{last_url}: {last_n} samples, more than the other shards ({usual})")


def _check_samples(url: str, folders: list[str], samples: list[PairedSample], modalities: Mapping[str, ModalitySpec] | None,
                   by_folder: Mapping[str, str], report: ShardReport) -> None:
    """The training loader's per-sample check on every sample of one shard (paired as the loader pairs them)."""
    if modalities is None:
        return
    own = {folder: by_folder[folder] for folder in folders if folder in by_folder}
    if not own:
        return
    names = tuple(sorted(own.values()))
    for key, members in samples:
        raw = {own[folder]: member for folder, member in members.items() if folder in own}
        result = decode_sample(raw, names, modalities)
        if isinstance(result, SampleProblem):
            report.problems.append(f"{url}:{key}: {result.detail} (training skips it: {result.reason})")
        else:
            for name, array in result.items():
                report.folders[modalities[name].folder].add_tokens(array)


def inspect_shards(
    pattern: str, modalities: Mapping[str, ModalitySpec] | None = None, expect_samples_per_shard: int | None = None,
    progress: bool = False,
) -> ShardReport:
    """Read every shard of ``pattern`` (local or ``s3://``) and report contents and problems (module docstring).

    With ``modalities``, each shard folder is the modality whose ``folder`` it is, and every sample is
    checked as the training loader checks it. Raises ``FileNotFoundError`` when shard files are missing.
    """
    urls = expand_shard_pattern(pattern)
    shards = [expand_folders(url) for url in urls]
    _check_present(shards, pattern)
    by_folder = {spec.folder: name for name, spec in (modalities or {}).items()}
    report = ShardReport()
    bar = tqdm(urls, unit="shard", desc="reading shards", disable=None if progress else True)
    for url, folders in zip(bar, shards):
        report.shards += 1
        read: dict[str, list[tuple[str, str, bytes]]] = {}
        for folder, folder_url in folders.items():
            summary = report.folders.setdefault(folder, FolderSummary())
            members = _read_folder(folder_url, report)
            if members is None:
                continue
            read[folder] = members
            for key, ext, data in members:
                _summarize(summary, f"{key}.{ext}", data)
            if modalities is not None and folder not in by_folder:
                report.problems.append(f"{folder_url}: folder '{folder}' matches no modality in the modality file")
            if modalities is None or folder not in by_folder:
                _check_members(folder_url, members, summary, report)
        if not read:
            continue
        report.problems += key_mismatches({folder: [k for k, _, _ in members] for folder, members in read.items()}, url)
        samples = pair_members(read, "union", url)  # the loader's pairing: what training reads
        report.samples_per_shard[url] = len(samples)
        _check_samples(url, list(read), samples, modalities, by_folder, report)
    _count_problems(report, expect_samples_per_shard)
    return report


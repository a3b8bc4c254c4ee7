"""Recordings -> token shards ``root/<folder>/<dataset>/shard-NNNNNN.tar``, resumable and never mixed.

The shard format is core's (:mod:`egom2p.core.shards`): one ``<key>.npz`` per window (``arr_0``, the window's
int64 token ids), keys from :func:`egom2p.tokenizers.keys.window_key`, the folder (``cam`` / ``gaze``) from the
modality spec. Windows fill the shards in input order, ``samples_per_shard`` each.

A run is identified by what decides its bytes: the tokenizer's weights and config, the conventions (basis, gaze
frame), ``fps``, ``stride``, ``samples_per_shard`` and each input's recording stem and content. The dataset folder
keeps that identity in ``egom2p-tokenize.json``. Running again with the same identity resumes: a shard that exists
and holds exactly the planned keys with valid tokens is kept (a shard is written under a temporary name and renamed
when complete, so a killed run leaves whole shards, plus temporary files that the next run removes); any other
shard is encoded (again). A folder holding shards of another run, or shards without that file, is refused unless
``overwrite``, which replaces the folder as core's :mod:`egom2p.core.dataset_write` rules: the new run is encoded
aside (resumable there the same way) and swapped in when complete, so until then the old shards stay as they were;
or ``append``, which encodes aside the same way, numbers the new shards after the last existing one (that first
index is part of the run's identity), refuses a window key the dataset already holds, and moves the new shards in
when complete. The folder's manifest then describes the appended run and keeps the earlier ones under
``earlier_runs``.

Two options serve a signal that joins an existing dataset as a new modality (``docs/new-modality.md``): ``keys``
gives the sample key of each window of one window array (the existing samples' keys, so the new shards pair with
them), and ``folder`` writes under another modality folder than the tokenizer kind's (``hand`` for a hand track
tokenized by a gaze-kind tokenizer). Both are part of the run's identity.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from egom2p.core.atomic import fsync_dir, write_atomic
from egom2p.core.checkpoint_integrity import file_sha256
from egom2p.core.dataset_write import begin_write, existing_shards, recover_writes, refuse_existing, shard_name
from egom2p.core.errors import ShardError
from egom2p.core.layout import check_name
from egom2p.core.progress import progress as progress_bar
from egom2p.core.shards import decode_tokens, encode_tokens, read_tar_members, write_tar
from egom2p.tokenizers.codec import WindowCodec
from egom2p.tokenizers.keys import is_sample_key
from egom2p.tokenizers.recordings import counted, describe_skipped, input_files, read_recording
from egom2p.tokenizers.tracks import WINDOW_LENGTH

__all__ = ["MANIFEST_NAME", "EncodeSummary", "codec_identity", "earlier_runs", "encode_to_shards", "read_manifest",
           "run_identity", "tokenizer_digest", "write_manifest"]

MANIFEST_NAME = "egom2p-tokenize.json"
_LEFTOVER = re.compile(r"^\.shard-\d{6,}\.tar\..+\.tmp$")  # the temporary names of core's atomic writer
_FORMAT = 1  # bump when the identity's meaning changes


@dataclass
class EncodeSummary:
    """What :func:`encode_to_shards` did. ``skipped``: reason (a singular phrase starting with its noun, see
    :data:`~egom2p.tokenizers.recordings.SKIP_REASONS`) -> count."""

    root: Path
    folder: str
    dataset: str
    recordings: int = 0
    windows_encoded: int = 0
    windows_kept: int = 0
    shards_written: int = 0
    shards_kept: int = 0
    leftovers_removed: int = 0
    first_shard: int = 0  # the index of this run's first shard (after the existing ones with ``append``)
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def shards(self) -> int:
        """Shards the dataset folder holds for this run."""
        return self.shards_written + self.shards_kept

    @property
    def directory(self) -> Path:
        """``root/<folder>/<dataset>``."""
        return self.root / self.folder / self.dataset

    def pattern(self) -> str:
        """The shard pattern that reads the dataset folder back (an appended run's shards and the earlier ones),
        e.g. ``out/[cam]/ds/shard-{000000..000002}.tar``."""
        last = self.first_shard + self.shards - 1
        names = shard_name(0) if last == 0 else f"shard-{{000000..{last:06d}}}.tar"
        return os.path.join(os.fspath(self.root), f"[{self.folder}]", self.dataset, names)

    def format(self) -> str:
        """The one-line summary."""
        text = f"encoded {counted(self.windows_encoded, 'window')} from {counted(self.recordings, 'recording')}"
        if self.shards_kept:
            text += f" ({counted(self.windows_kept, 'window')} kept in {counted(self.shards_kept, 'shard')} finished earlier)"
        return text + f"; skipped {describe_skipped(self.skipped)}; {counted(self.shards, 'shard')} in {self.directory}"


def tokenizer_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a tokenizer's state dict (names, dtypes, shapes and values, in name order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes of any dtype
    return digest.hexdigest()


def codec_identity(codec: WindowCodec) -> dict:
    """What decides a codec's tokens: the tokenizer (config and weights), the camera basis or the gaze frame, and a
    compute dtype other than float32 (bf16 tokens can differ at near-ties; float32 adds no key, so the runs
    written before the option existed keep their identity). JSON-serialisable; ``encode`` and ``prepare`` use it."""
    frame = codec.frame
    return {
        "kind": codec.kind,
        "tokenizer": {"config": codec.model.config.to_dict(), "weights_sha256": tokenizer_digest(codec.model)},
        "basis": None if codec.basis is None else codec.basis.tolist(),
        "gaze_frame": None if frame is None else {"orig_res": frame.orig_res, "resize_res": frame.resize_res,
                                                  "crop": frame.crop},
        **({} if codec.model.compute_dtype == torch.float32
           else {"compute_dtype": str(codec.model.compute_dtype).removeprefix("torch.")}),
    }


def run_identity(codec: WindowCodec, files: list[Path], *, fps: float | None, stride: int,
                 samples_per_shard: int) -> dict:
    """Everything that decides the bytes of a run's shards (see the module docstring), JSON-serialisable."""
    return {
        "format": _FORMAT,
        **codec_identity(codec),
        "fps": fps,
        "stride": stride,
        "samples_per_shard": samples_per_shard,
        "inputs": [{"file": file.name, "sha256": file_sha256(file)} for file in files],
    }


def _run_id(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def write_manifest(path: Path, manifest: dict) -> None:
    """Write a run's JSON manifest atomically and durably (``encode``'s and ``prepare``'s)."""
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    fsync_dir(path.parent)


def read_manifest(path: Path) -> dict | None:
    """A run's manifest as written (None: none or unreadable)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _write_manifest(directory: Path, manifest: dict) -> None:
    write_manifest(directory / MANIFEST_NAME, manifest)


def _read_manifest(directory: Path) -> dict | None:
    """The folder's manifest as written (None: none or unreadable)."""
    return read_manifest(directory / MANIFEST_NAME)


def _previous_run(directory: Path) -> str | None:
    """The run id in the folder's manifest; None when there is none, ``""`` when it is unreadable."""
    if not (directory / MANIFEST_NAME).exists():
        return None
    manifest = _read_manifest(directory)
    return "" if manifest is None else str(manifest.get("run", ""))


def _stale_files(directory: Path, run: str, staged: bool) -> tuple[list[Path], list[Path]]:
    """``(files to replace, temporary leftovers)`` of ``directory`` before run ``run`` writes into it.

    Another run's shards, or shards of unknown origin, are refused (``ValueError``) in the dataset folder and
    replaced in the ``staged`` folder of an ``--overwrite`` or ``--append`` (what an earlier, other run left there).
    Deletes nothing: the caller does when the first shard is ready.
    """
    if not directory.is_dir():
        return [], []
    tars = existing_shards(directory)
    previous = _previous_run(directory)
    replaced: list[Path] = []
    if previous != run and (tars or previous is not None):
        if not staged:
            whose = "another egom2p-tokenize run" if previous else "unknown origin (no egom2p-tokenize.json)"
            raise refuse_existing(directory, len(tars), whose)
        replaced = tars + ([directory / MANIFEST_NAME] if previous is not None else [])
    return replaced, [p for p in directory.iterdir() if _LEFTOVER.match(p.name)]


def _check_keys(keys: list[str], files: list[Path]) -> None:
    """Given keys name the windows of exactly one window array, each once, as sample keys
    (:func:`~egom2p.tokenizers.keys.is_sample_key`) on lines of their own (no spaces)."""
    if len(files) != 1:
        raise ValueError(f"--keys names the windows of one window array; got {len(files)} input files")
    seen: set[str] = set()
    for line, key in enumerate(keys, 1):
        if not is_sample_key(key) or " " in key or key in seen:
            why = "is given twice" if key in seen else ("is not a sample key (empty, or holds a space, '.', a line "
                                                        "break or one of / \\ [ ] { } ,)")
            raise ValueError(f"--keys: line {line}: {key!r} {why}")
        seen.add(key)


def _finished(path: Path, keys: list[str], codec: WindowCodec) -> bool:
    """Whether shard ``path`` is complete: readable, exactly ``keys`` in order, valid tokens of one window each."""
    if not path.is_file():
        return False
    try:
        members = read_tar_members(str(path))
        if [key for key, _, _ in members] != keys:
            return False
        for key, ext, data in members:
            tokens = decode_tokens(f"{key}.{ext}", data)
            if tokens.shape != (codec.spec.num_tokens,):
                return False
            codec.check_tokens(tokens, f"{path}:{key}")
    except (ShardError, ValueError):
        return False
    return True


def earlier_runs(path: Path) -> list[dict]:
    """The runs whose shards an ``--append`` adds to: the dataset's manifest at ``path`` and the runs it records,
    oldest first."""
    manifest = read_manifest(path)
    if manifest is None:
        return []
    earlier = manifest.pop("earlier_runs", [])
    return [*(earlier if isinstance(earlier, list) else []), manifest]


def _shards(files: list[Path], codec: WindowCodec, summary: EncodeSummary, bar: Any, *, fps: float | None,
            stride: int, samples_per_shard: int, given_keys: list[str] | None = None
            ) -> Iterator[tuple[list[str], np.ndarray]]:
    """``(keys, windows)`` of each shard in order, reading one recording at a time; ``bar`` (a progress counter)
    counts the recordings read."""
    keys: list[str] = []
    windows: list[np.ndarray] = []
    for file in files:
        recording = read_recording(file, codec.kind, fps=fps, stride=stride, num_frames=codec.num_frames)
        summary.recordings += 1
        summary.skipped.update(recording.skipped)
        if given_keys is not None:
            if recording.rows is None or recording.file_windows != len(given_keys):
                raise ValueError(f"--keys: {len(given_keys)} keys for {file}, which holds "
                                 f"{recording.file_windows if recording.rows is not None else 'a track, not'} windows")
            keys += [given_keys[row] for row in recording.rows]
        else:
            keys += recording.keys
        windows.append(recording.windows)
        bar.update()
        while len(keys) >= samples_per_shard:
            stacked = np.concatenate(windows)
            yield keys[:samples_per_shard], stacked[:samples_per_shard]
            keys, windows = keys[samples_per_shard:], [stacked[samples_per_shard:]]
    if keys:
        yield keys, np.concatenate(windows)


def encode_to_shards(codec: WindowCodec, inputs: list[str | os.PathLike], root: str | os.PathLike, dataset: str, *,
                     fps: float | None = None, stride: int = WINDOW_LENGTH, samples_per_shard: int = 1000,
                     overwrite: bool = False, append: bool = False, progress: bool = False,
                     keys: list[str] | None = None, folder: str | None = None) -> EncodeSummary:
    """Encode the windows of ``inputs`` (files or folders of tracks or window arrays) into
    ``root/<folder>/<dataset>/shard-NNNNNN.tar``; see the module docstring for resume, refusal, ``overwrite`` and
    ``append``.

    ``fps``: frame rate of ``.npy`` tracks (an ``.npy`` without it is a window array); ``stride``: frames between
    window starts (default 60: back-to-back 2 s windows, as the EgoM2P shards); ``keys``: the sample key of each
    window of the one window-array input; ``folder``: the modality folder (default: the tokenizer kind's). Returns an
    :class:`EncodeSummary`.
    """
    if stride < 1 or samples_per_shard < 1:
        raise ValueError(f"stride and samples per shard must be >= 1, got {stride} and {samples_per_shard}")
    if overwrite and append:
        raise ValueError("--overwrite and --append exclude each other: replace the dataset or add to it")
    files = input_files(list(inputs))
    summary = EncodeSummary(Path(root), check_name(folder, "--folder") if folder else codec.spec.folder,
                            check_name(dataset, "--dataset"))
    identity = run_identity(codec, files, fps=fps, stride=stride, samples_per_shard=samples_per_shard)
    if keys is not None:
        _check_keys(keys, files)
        identity["keys_sha256"] = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    if folder:
        identity["folder"] = folder
    # A fresh or resumed run writes in place; --overwrite and --append encode aside and move the shards in when
    # complete. Either way an unfinished one stays staged, for the next one to resume.
    existing_keys: dict[str, Path] = {}
    if overwrite or append:
        write = begin_write(root, dataset, [summary.folder], mode="overwrite" if overwrite else "append",
                            keep_staged=True, own_files=[MANIFEST_NAME])
        directory = write.staging(summary.folder)
        if append:
            summary.first_shard = write.first_index
            identity["first_shard"] = write.first_index  # a rerun after more shards were added is another run
            existing_keys = write.existing_keys()
    else:
        write = None
        recover_writes(root, dataset, [summary.folder], keep_staged=True)
        directory = summary.directory
    run = _run_id(identity)
    replaced, leftovers = _stale_files(directory, run, staged=write is not None)
    bar = progress_bar(total=len(files), desc=f"encoding {codec.kind}", unit="recording",
                       enabled=None if progress else False)
    with bar:
        shards = _shards(files, codec, summary, bar, fps=fps, stride=stride, samples_per_shard=samples_per_shard,
                         given_keys=keys)
        for index, (keys, windows) in enumerate(shards):
            repeated = next((key for key in keys if key in existing_keys), None)
            if repeated is not None and write is not None:  # never appendable: nothing of it stays staged
                write.abort()
                raise ValueError(f"--append: window key {repeated!r} is already in {existing_keys[repeated]} (were "
                                 "these recordings encoded into this dataset before?); append other recordings or "
                                 "choose another --dataset")
            if index == 0:  # the folder is cleared and holds the run's identity before any shard of the run
                for stale in replaced + leftovers:
                    stale.unlink()
                summary.leftovers_removed = len(leftovers)
                directory.mkdir(parents=True, exist_ok=True)
                _write_manifest(directory, {"run": run, "complete": False, **identity})
            path = directory / shard_name(summary.first_shard + index)
            if _finished(path, keys, codec):
                summary.shards_kept += 1
                summary.windows_kept += len(keys)
                continue
            if path.exists():
                warnings.warn(f"{path} is incomplete or does not hold the planned windows; encoding it again",
                              stacklevel=2)
            tokens = codec.encode(windows)
            write_tar(path, [(f"{key}.npz", encode_tokens(row)) for key, row in zip(keys, tokens)])
            fsync_dir(directory)
            summary.shards_written += 1
            summary.windows_encoded += len(keys)
            bar.set_postfix(shards=summary.shards, windows=summary.windows_encoded + summary.windows_kept)
    if summary.shards:
        earlier = {"earlier_runs": earlier_runs(summary.directory / MANIFEST_NAME)} if append else {}
        _write_manifest(directory, {"run": run, "complete": True, "shards": summary.shards,
                                    "windows": summary.windows_encoded + summary.windows_kept,
                                    "skipped": dict(summary.skipped), **identity, **earlier})
        if write is not None:
            write.commit()
    elif write is not None:  # nothing to swap in: the dataset stays as it was
        write.abort()
    return summary

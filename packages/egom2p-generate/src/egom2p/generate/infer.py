"""Batch inference: a task's predictions for every sample of a shard set, written as shards in the same layout.

``generate_shards(model, "data/[rgb,cam]/val/shard-{000000..000009}.tar", "rgb2depth", "preds")`` reads
the conditioning folder's tars (local or ``s3://``), generates in batches and writes
``preds/depth/val/shard-00000N.tar``, one ``<key>.npz`` per input sample, in input order. Every batch uses the
task's seed, and batches never cross shards, so a resumed run writes what an uninterrupted one would.

The root records the run in ``preds/egom2p-batch-rgb2depth.json`` (:mod:`egom2p.generate.batch_manifest`): a
rerun with the same settings and sources resumes, one with others is refused naming the first difference
(unless ``overwrite`` or ``new_root``). Each output tar is written under a temporary name and renamed when
complete; a shard counts as finished only when its tar reads back with one valid member per input sample, the
same keys in the same order; any other is generated again, with a warning saying so.

With ``signals`` (a :class:`~egom2p.generate.signals.SignalDecoder` holding the target's tokenizer) the
decoded signals go beside the tokens as a shard of their own folder, in the same format: e.g.
``preds/cam_poses/val/shard-00000N.tar`` with one float64 ``<key>.npy`` (60, 4, 4) per sample, the same
keys in the same order as the token shard (a second member per key in the token tar would break every
reader of the token folder). The signal tar is written first and the token tar last, and a shard is finished
only when both read back.
"""

from __future__ import annotations

import io
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any

import numpy as np
from egom2p.core.errors import ShardError
from egom2p.core.paths import resolve_path
from egom2p.core.progress import progress as progress_bar
from egom2p.core.shards import decode_tokens, encode_tokens, load_token_array, read_tar_members, write_tar
from egom2p.model import EgoM2P

from .batch_manifest import build_manifest, claim_root
from .shards import DataShard, iter_shard_samples, list_data_shards
from .signals import SignalDecoder, signal_folder
from .tasks import TaskRunner
from .video import VIDEO_MODALITIES, VideoCodec

__all__ = ["generate_shards"]


def _batches(shard: DataShard, folder: str, batch_size: int) -> Iterator[tuple[list[str], np.ndarray]]:
    """``(keys, conditioning tokens)`` of each batch of one shard (core's reader refuses a key seen twice in a tar,
    so no two outputs are one member)."""
    samples = iter_shard_samples([{folder: shard.tars[folder]}])  # only the conditioning tar is read
    while batch := list(islice(samples, batch_size)):
        yield [key for key, _ in batch], np.stack([arrays[folder] for _, arrays in batch])


def _unfinished(shard: DataShard, folder: str, outputs: Mapping[str, tuple[str, tuple[int, ...] | None]]) -> str | None:
    """Why the existing output tars ``outputs`` (``{path: (suffix, shape of each member or None)}``) of ``shard``
    are not a finished shard: a tar missing or unreadable, or not one readable member (of that shape) per input
    key, in input order; None when they are."""
    keys = [key for key, _ in iter_shard_samples([{folder: shard.tars[folder]}])]
    for path, (suffix, shape) in outputs.items():
        if not os.path.exists(path):
            return f"{path} is missing"
        try:
            members = read_tar_members(path)
            names = [f"{key}.{ext}" for key, ext, _ in members]
            if names != [f"{key}{suffix}" for key in keys]:
                return f"{path} holds {len(names)} members, not one per input sample in input order ({len(keys)})"
            for name, (_, _, data) in zip(names, members):
                if suffix == ".mp4":  # a decoded clip: an MP4 file begins with its ftyp box
                    if data[4:8] != b"ftyp":
                        return f"{path}:{name} is not an mp4 file"
                    continue
                read = decode_tokens if suffix == ".npz" else load_token_array
                array = read(f"{path}:{name}", data)
                if shape is not None and array.shape != shape:
                    return f"{path}:{name} has shape {array.shape}, expected {shape}"
        except (ShardError, ValueError) as err:
            return str(err)
    return None


def _npy_bytes(array: np.ndarray) -> bytes:
    """The ``.npy`` bytes of one float signal array (no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def generate_shards(
    model: EgoM2P,
    data: str | os.PathLike,
    task: str,
    out_root: str | os.PathLike,
    *,
    dataset: str | None = None,
    batch_size: int = 8,
    steps: int | None = None,
    overwrite: bool = False,
    new_root: bool = False,
    sources: Mapping[str, Mapping[str, str]] | None = None,
    progress: bool | None = None,
    signals: SignalDecoder | None = None,
    video: VideoCodec | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Write ``task``'s generated target tokens for every sample of ``data`` under ``out_root``.

    ``data``: a shard pattern with a ``[folder,...]`` list (local or ``s3://``; it must list the
    task's conditioning folder), or a local root with ``dataset``. ``out_root`` is a local directory;
    shard ``<head><folder><tail>`` of the input becomes ``out_root/<head><target folder><tail>``, below the
    folders in which the pattern's shards differ (:meth:`~egom2p.generate.shards.DataShard.output_path`).
    ``steps`` and ``overrides`` (scheme, temperature, top_k, top_p, cfg_scale, seed) as in
    :class:`egom2p.generate.tasks.TaskRunner`. ``progress``: None a bar over shards on a terminal and periodic lines in
    a log, True the bar, False nothing. ``signals``: when it decodes the task's target, each output shard also gets the decoded signals
    under the folder ``<target folder>_<signal>`` (``cam_poses``, ``gaze_pixels``), ``<key>.npy`` per sample.
    ``video``: for an RGB or depth target, each output shard also gets the decoded clips under
    ``<target folder>_video``, ``<key>.mp4`` per sample (16 frames at 8 fps; depth grey).

    The run is recorded in ``out_root/egom2p-batch-<task>.json`` with ``sources`` (``{name: identity}`` of the
    checkpoint and tokenizers, :func:`egom2p.generate.batch_manifest.source_identity`). Finished output shards of
    the same run are skipped; a root holding another run is refused (``ValueError``) unless ``overwrite`` (its
    outputs are deleted and every shard generated again) or ``new_root`` (the first of ``out_root-2``,
    ``out_root-3``, ... that is free or holds this run). Returns ``{task, out_root (the root written),
    shards, written, skipped, redone, samples, seconds}``; ``redone`` counts shards found damaged and generated
    again.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if "://" in os.fspath(out_root):
        raise ValueError(f"out_root {os.fspath(out_root)!r} must be a local directory")
    runner = TaskRunner(model, task, steps, **overrides)
    cond_folder, target_folder = runner.cond_spec.folder, runner.target_spec.folder
    shards = list_data_shards(data, [spec.folder for spec in model.modalities.values()], dataset)
    if cond_folder not in shards[0].tars:
        raise ValueError(f"task {task!r} reads the {runner.spec.cond} folder '{cond_folder}', which {os.fspath(data)!r} "
                         f"does not list (it has {sorted(shards[0].tars)})")
    shape, target = runner.target_spec.shape, runner.spec.target
    decoder = signals if signals is not None and target in signals else None
    # A second output beside the tokens, one member per sample: decoded signals (.npy) or decoded clips (.mp4).
    side: tuple[str, str, Any] | None = None
    if decoder is not None:
        side = (signal_folder(target_folder, target), ".npy",
                lambda generated: [_npy_bytes(x) for x in decoder.decode(target, generated)])
    elif video is not None and target in VIDEO_MODALITIES:
        side = (f"{target_folder}_video", ".mp4",
                lambda generated: [video.mp4_bytes(target, tokens) for tokens in generated])
    folders = [target_folder] + ([side[0]] if side is not None else [])
    settings = {
        "task": task, "cond": runner.spec.cond, "target": target, "decoding_steps": len(runner.schedule),
        **runner.settings, "batch_size": batch_size, "data": resolve_path(os.fspath(data), os.getcwd()), "dataset": dataset,
        "signals": folders[1] if side is not None else None,
        "gaze_frame": repr(decoder.gaze_frame) if decoder is not None and target == "tok_gaze" else None,
    }
    outputs = [os.path.relpath(shard.output_path(out_root, f), out_root) for shard in shards for f in folders]
    device = str(next(model.parameters()).device)
    claim = claim_root(out_root, task, build_manifest(settings, sources or {}, outputs, device), overwrite=overwrite,
                       new_root=new_root)
    root = claim.root
    summary = {"task": task, "out_root": os.fspath(root), "shards": len(shards), "written": 0, "skipped": 0,
               "redone": 0, "samples": 0}
    start = time.perf_counter()
    with progress_bar(shards, desc=task, unit="shard", enabled=progress) as bar:
        for shard in bar:
            path = shard.output_path(root, target_folder)
            signal_path = shard.output_path(root, folders[1]) if side is not None else None
            if os.path.exists(path) and not overwrite:
                problem = _unfinished(shard, cond_folder, {path: (".npz", tuple(shape)), **({signal_path: (side[1], None)}
                                                                                     if signal_path else {})})
                if problem is None:
                    summary["skipped"] += 1
                    continue
                warnings.warn(f"{path}: not a finished shard ({problem}); generating it again", UserWarning, stacklevel=2)
                summary["redone"] += 1
            members, decoded = [], []
            for keys, conds in _batches(shard, cond_folder, batch_size):
                generated = runner.predict(conds)
                members += [(f"{key}.npz", encode_tokens(tokens.reshape(shape))) for key, tokens in zip(keys, generated)]
                if side is not None:
                    decoded += [(f"{key}{side[1]}", data) for key, data in zip(keys, side[2](generated))]
                bar.set_postfix(samples=summary["samples"] + len(members))
            claim.commit()  # the manifest (and removing an overwritten run's outputs) before the first output
            if signal_path is not None:
                write_tar(signal_path, decoded)
            write_tar(path, members)
            summary["written"] += 1
            summary["samples"] += len(members)
    return {**summary, "seconds": time.perf_counter() - start}

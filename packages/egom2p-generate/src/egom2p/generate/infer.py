"""Batch inference: a task's predictions for every sample of a shard set, written as shards in the same layout.

``generate_shards(model, "data/[rgb,cam]/val/shard-{000000..000009}.tar", "rgb2depth", "preds")`` reads
the conditioning folder's tars (local or ``s3://``), generates in batches and writes
``preds/depth/val/shard-00000N.tar``, one ``<key>.npz`` per input sample, in input order. Each output
tar is written atomically, so a run that stops leaves only finished shards, and running again skips
them (resumable). Every batch uses the task's seed, and batches never cross shards, so a resumed run
writes what an uninterrupted one would.

With ``signals`` (a :class:`~egom2p.generate.signals.SignalDecoder` holding the target's tokenizer) the
decoded signals go beside the tokens as a shard of their own folder, in the same format: e.g.
``preds/cam_poses/val/shard-00000N.tar`` with one float64 ``<key>.npy`` (60, 4, 4) per sample, the same
keys in the same order as the token shard (a second member per key in the token tar would break every
reader of the token folder). The signal tar is written first and the token tar last, so a shard counts
as finished when both exist.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from itertools import islice
from typing import Any

import numpy as np
from egom2p.core.shards import encode_tokens, write_tar
from egom2p.model import EgoM2P
from tqdm.auto import tqdm

from .shards import DataShard, iter_shard_samples, list_data_shards
from .signals import SignalDecoder, signal_folder
from .tasks import TaskRunner, bar_disabled

__all__ = ["generate_shards"]


def _batches(shard: DataShard, folder: str, batch_size: int) -> Iterator[tuple[list[str], np.ndarray]]:
    samples = iter_shard_samples([{folder: shard.tars[folder]}])  # only the conditioning tar is read
    while batch := list(islice(samples, batch_size)):
        yield [key for key, _ in batch], np.stack([arrays[folder] for _, arrays in batch])


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
    progress: bool | None = None,
    signals: SignalDecoder | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Write ``task``'s generated target tokens for every sample of ``data`` under ``out_root``.

    ``data``: a shard pattern with a ``[folder,...]`` list (local or ``s3://``; it must list the
    task's conditioning folder), or a local root with ``dataset``. ``out_root`` is a local directory;
    shard ``<head><folder><tail>`` of the input becomes ``out_root/<head><target folder><tail>``.
    Finished output shards are skipped unless ``overwrite``. ``steps`` and ``overrides`` (scheme,
    temperature, top_k, top_p, cfg_scale, seed) as in :class:`egom2p.generate.tasks.TaskRunner`.
    ``progress``: a tqdm bar over shards (None: when stderr is a terminal). ``signals``: when it decodes
    the task's target, each output shard also gets the decoded signals under the folder
    ``<target folder>_<signal>`` (``cam_poses``, ``gaze_pixels``), ``<key>.npy`` per sample.
    Returns ``{task, out_root, shards, written, skipped, samples, seconds}``.
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
    summary = {"task": task, "out_root": os.fspath(out_root), "shards": len(shards), "written": 0, "skipped": 0,
               "samples": 0}
    start = time.perf_counter()
    with tqdm(shards, desc=task, unit="shard", disable=bar_disabled(progress)) as bar:
        for shard in bar:
            path = shard.output_path(out_root, target_folder)
            signal_path = shard.output_path(out_root, signal_folder(target_folder, target)) if decoder is not None else None
            # finished: the token tar (written last) and, when decoding, its signal tar (from an earlier run
            # without a tokenizer the signals are missing: generate the shard again)
            if os.path.exists(path) and (signal_path is None or os.path.exists(signal_path)) and not overwrite:
                summary["skipped"] += 1
                continue
            members, decoded = [], []
            for keys, conds in _batches(shard, cond_folder, batch_size):
                generated = runner.predict(conds)
                members += [(f"{key}.npz", encode_tokens(tokens.reshape(shape))) for key, tokens in zip(keys, generated)]
                if decoder is not None:
                    decoded += [(f"{key}.npy", _npy_bytes(x)) for key, x in zip(keys, decoder.decode(target, generated))]
                bar.set_postfix(samples=summary["samples"] + len(members))
            if signal_path is not None:
                write_tar(signal_path, decoded)
            write_tar(path, members)
            summary["written"] += 1
            summary["samples"] += len(members)
    return {**summary, "seconds": time.perf_counter() - start}

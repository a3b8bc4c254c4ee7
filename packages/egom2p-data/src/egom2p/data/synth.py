"""The demo dataset: synthetic tokens for the modality preset ``tiny`` with learnable cross-modal rules.

Rules (all deterministic given the sample's random content):

* rgb ``[2, 4, 4]``, vocab 64: frame 0 holds random tokens in ``[0, 63)`` plus one *salient* cell holding
  the reserved token 63; frame 1 is frame 0 circularly shifted by a motion ``(dy, dx)`` drawn uniformly
  from the 8 non-zero moves in ``{-1, 0, 1}^2``.
* depth ``[2, 4, 4]``: ``depth = PERMUTATION[rgb]`` cell by cell (a fixed permutation of 64 tokens).
* cam (8 tokens, vocab 64): ``cam[i] = (8 * motion_id + 3 * i) % 64``, a function of the motion and index.
* gaze (8 tokens, vocab 64): the salient cell's location ``loc = 4 * y + x`` in frame 0 (tokens 0-3) and in
  frame 1 (tokens 4-7): ``gaze[i] = (loc_f + 5 * i) % 64``.

A raw fifth signal for the fine-tuning example (``docs/new-modality.md``), written with ``hand=True``: a 2-D hand
track of 60 frames in a 1408 x 1408 image (Aria's gaze frame), ``hand_windows``: it starts under the salient cell
of frame 0 and moves along the motion, so it is a function of what rgb shows, and it needs a tokenizer (it is
continuous) before the model can learn it.

A perfect model given the full conditioning modality reaches :func:`perfect_accuracy` (1.0: every rule is
invertible from full rgb); :func:`chance_accuracy` is the best accuracy without looking at it (the most
frequent target token). Two datasets are written: ``synth_full`` (all four) and ``synth_nogaze``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from egom2p.core.atomic import write_atomic
from egom2p.data.shards import write_shards

__all__ = ["MOTIONS", "SALIENT_TOKEN", "PERMUTATION", "generate_samples", "hand_windows", "write_demo_dataset",
           "perfect_accuracy", "chance_accuracy", "DATASETS", "HAND_DATASET"]

GRID = (2, 4, 4)
RGB_VOCAB = 64
SEQ_LEN = 8
SEQ_VOCAB = 64
SALIENT_TOKEN = RGB_VOCAB - 1
MOTIONS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
PERMUTATION = np.random.default_rng(20240).permutation(RGB_VOCAB)
DATASETS = {"synth_full": ("cam", "depth", "gaze", "rgb"), "synth_nogaze": ("cam", "depth", "rgb")}

HAND_DATASET = "synth_full"  # the dataset the raw hand tracks are written for
HAND_FRAMES = 60  # one 2 s window at 30 fps
_HAND_ORIGIN, _HAND_CELL, _HAND_SPEED = 352.0, 235.0, 4.0  # pixels: first cell's centre, cell pitch, per frame

_CELLS = GRID[0] * GRID[1] * GRID[2]
# Most frequent token per target, used for chance levels: the salient cell's token (2 of 128 cells) for
# rgb/depth; for cam the motion (1 of 8 equally likely); gaze tokens are uniform over 64 values.
_CHANCE = {"rgb2depth": 2 / _CELLS, "depth2rgb": 2 / _CELLS, "rgb2cam": 1 / len(MOTIONS), "rgb2gaze": 1 / SEQ_VOCAB}


def perfect_accuracy(task: str) -> float:
    """Token accuracy a perfect model reaches on ``task`` (``rgb2depth``, ``rgb2cam``, ``rgb2gaze``, ``depth2rgb``)."""
    if task not in _CHANCE:
        raise ValueError(f"unknown synth task {task!r}; known: {sorted(_CHANCE)}")
    return 1.0


def chance_accuracy(task: str) -> float:
    """Best token accuracy on ``task`` without the conditioning modality (always predicting the mode)."""
    if task not in _CHANCE:
        raise ValueError(f"unknown synth task {task!r}; known: {sorted(_CHANCE)}")
    return _CHANCE[task]


def generate_samples(num_samples: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``num_samples`` samples following the rules above, as stacked arrays keyed by folder name."""
    rng = np.random.default_rng(seed)
    n = num_samples
    frame0 = rng.integers(0, SALIENT_TOKEN, size=(n, GRID[1], GRID[2]))
    ys, xs = rng.integers(0, GRID[1], n), rng.integers(0, GRID[2], n)
    frame0[np.arange(n), ys, xs] = SALIENT_TOKEN
    motion = rng.integers(0, len(MOTIONS), n)
    shifts = np.asarray(MOTIONS)[motion]
    frame1 = np.stack([np.roll(f, tuple(s), axis=(0, 1)) for f, s in zip(frame0, shifts)])
    rgb = np.stack([frame0, frame1], axis=1).astype(np.int64)
    depth = PERMUTATION[rgb]
    idx = np.arange(SEQ_LEN)
    cam = (8 * motion[:, None] + 3 * idx[None, :]) % SEQ_VOCAB
    loc0 = ys * GRID[2] + xs
    loc1 = ((ys + shifts[:, 0]) % GRID[1]) * GRID[2] + (xs + shifts[:, 1]) % GRID[2]
    loc = np.where(idx[None, :] < SEQ_LEN // 2, loc0[:, None], loc1[:, None])
    gaze = (loc + 5 * idx[None, :]) % SEQ_VOCAB
    return {"rgb": rgb, "depth": depth, "cam": cam.astype(np.int64), "gaze": gaze.astype(np.int64)}


def hand_windows(samples: dict[str, np.ndarray]) -> np.ndarray:
    """The hand track of each sample of :func:`generate_samples`: ``(N, 60, 2)`` pixels ``(x, y)`` in a 1408 x 1408
    image, starting under frame 0's salient cell and moving 4 px per frame along the sample's motion."""
    frame0 = samples["rgb"][:, 0]
    flat = (frame0 == SALIENT_TOKEN).reshape(len(frame0), -1).argmax(axis=1)
    ys, xs = np.divmod(flat, GRID[2])
    dy, dx = np.asarray(MOTIONS)[samples["cam"][:, 0] // 8].T  # cam[0] = 8 * motion
    t = np.arange(HAND_FRAMES, dtype=np.float64)
    x = _HAND_ORIGIN + _HAND_CELL * xs[:, None] + _HAND_SPEED * dx[:, None] * t
    y = _HAND_ORIGIN + _HAND_CELL * ys[:, None] + _HAND_SPEED * dy[:, None] * t
    return np.stack([x, y], axis=-1).astype(np.float32)


def write_demo_dataset(
    out_dir: str | os.PathLike,
    train_samples: int = 2048,
    val_samples: int = 128,
    samples_per_shard: int = 256,
    seed: int = 0,
    datasets: Sequence[str] | None = None,
    overwrite: bool = False,
    hand: bool = False,
) -> dict[str, str]:
    """Write ``out_dir/{train,val}/<folder>/<dataset>/shard-*.tar`` for both demo datasets.

    Returns ``"<split>/<dataset>" -> shard pattern``. Seeded: the same arguments give identical files. Existing demo
    shards are refused (``ValueError`` naming the folder) unless ``overwrite`` replaces them. With ``hand``, the raw
    hand tracks of ``synth_full`` are written too, as ``out_dir/raw/<split>-hand.npy`` (windows) and
    ``out_dir/raw/<split>-hand.keys.txt`` (their sample keys, one per line); the returned mapping gets
    ``"<split>/hand"`` -> the ``.npy``.
    """
    patterns = {}
    for d_index, name in enumerate(datasets or DATASETS):
        folders = DATASETS[name]
        for s_index, (split, count) in enumerate((("train", train_samples), ("val", val_samples))):
            arrays = generate_samples(count, seed=seed * 1000 + 10 * d_index + s_index)
            keys = [f"{name}-{split}-{i:07d}" for i in range(count)]
            patterns[f"{split}/{name}"] = write_shards(
                os.path.join(os.fspath(out_dir), split), name, {f: arrays[f] for f in folders},
                keys=keys, samples_per_shard=samples_per_shard, mode="overwrite" if overwrite else "new",
            )
            if hand and name == HAND_DATASET:
                patterns[f"{split}/hand"] = _write_hand(os.path.join(os.fspath(out_dir), "raw"), split, arrays, keys)
    return patterns


def _write_hand(raw_dir: str, split: str, arrays: dict[str, np.ndarray], keys: list[str]) -> str:
    """Write one split's hand windows and their keys, each atomically; returns the ``.npy`` path."""
    os.makedirs(raw_dir, exist_ok=True)
    path = os.path.join(raw_dir, f"{split}-hand.npy")
    windows = hand_windows(arrays)

    def save_windows(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would add .npy to a temporary name
            np.save(f, windows)

    write_atomic(path, save_windows)
    text = "".join(f"{key}\n" for key in keys)
    write_atomic(os.path.join(raw_dir, f"{split}-hand.keys.txt"), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path

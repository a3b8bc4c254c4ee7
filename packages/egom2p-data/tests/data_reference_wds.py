"""A restatement of the original's per-dataset training pipeline (docs/original-behaviour.md#data-pipeline) as
webdataset composes it: generators over resampled shards, ``webdataset.filters._shuffle`` (webdataset 1.0) and the original's
``repeat_fn``. The reference for the loader's stream. Not part of the package."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any


def wds_shuffle(data: Iterator[Any], bufsize: int, rng, initial: int = 100) -> Iterator[Any]:
    """``webdataset.filters._shuffle``; its ``rng.randint(0, n - 1)`` is ``rng.integers(0, n)`` of a numpy Generator."""
    initial = min(initial, bufsize)
    buf: list = []
    for sample in data:
        buf.append(sample)
        if len(buf) < bufsize:
            try:
                buf.append(next(data))
            except StopIteration:
                pass
        if len(buf) >= initial:
            yield _pick(buf, rng)
    while buf:
        yield _pick(buf, rng)


def _pick(buf: list, rng) -> Any:
    k = int(rng.integers(0, len(buf)))
    sample = buf[k]
    buf[k] = buf[-1]
    buf.pop()
    return sample


def repeat_fn(src: Iterable[Any], n_repeats: int) -> Iterator[Any]:
    """The original's ``repeat_fn``: each sample ``n_repeats`` times in a row."""
    for sample in src:
        for _ in range(n_repeats):
            yield sample


def reference_pipeline(shard_samples: Callable[[int], list], decode: Callable[[Any], Any | None], n_repeats: int,
                       buffer_tar: int, buffer_repeat: int, rng) -> Iterator[Any]:
    """Resampled shards (``shard_samples(draw)``: that draw's samples in tar order) -> shuffle -> decode
    (``None``: a bad sample, dropped) -> repeat -> shuffle, one ``rng`` for both buffers."""

    def samples() -> Iterator[Any]:
        draw = 0
        while True:
            yield from shard_samples(draw)
            draw += 1

    decoded = (d for d in map(decode, wds_shuffle(samples(), buffer_tar, rng)) if d is not None)
    return wds_shuffle(repeat_fn(decoded, n_repeats), buffer_repeat, rng)

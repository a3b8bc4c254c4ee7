"""webdataset's shuffle buffer as a pull-based object whose contents can be saved and restored.

The original's training pipeline shuffles twice with ``webdataset.shuffle(1000)``
(docs/original-behaviour.md#data-pipeline). A generator cannot be checkpointed, so :class:`ShuffleBuffer`
restates ``webdataset.filters._shuffle`` step for step (``tests/data_reference_wds.py`` checks it against a
restatement of that generator) and exposes its items: the loader saves references to them in its ``state_dict()`` and rebuilds them on resume.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np

__all__ = ["WDS_INITIAL", "ShuffleBuffer"]

WDS_INITIAL = 100  # webdataset.shuffle's default `initial`: items buffered before the first is returned
T = TypeVar("T")


class ShuffleBuffer(Generic[T]):
    """``webdataset.shuffle(size)`` over an infinite upstream: at most ``max(size, 1)`` items held.

    Each :meth:`pull` adds one upstream item (two while fewer than ``size`` are held) and, once
    ``min(size, 100)`` are held, removes and returns a uniformly chosen one (swap with the last). Sizes 0
    and 1 pass items through in order.
    """

    def __init__(self, size: int, rng: np.random.Generator, initial: int = WDS_INITIAL) -> None:
        if size < 0:
            raise ValueError(f"shuffle buffer size must be >= 0, got {size}")
        self.size = size
        self.initial = min(initial, size)
        self.rng = rng
        self.items: list[T] = []

    def pull(self, upstream: Callable[[], T]) -> T:
        """The next shuffled item, drawing from ``upstream()`` as webdataset's generator would."""
        items = self.items
        while True:
            items.append(upstream())
            if len(items) < self.size:
                items.append(upstream())  # fill at twice the output rate until full
            if len(items) >= self.initial:
                k = int(self.rng.integers(0, len(items)))
                item = items[k]
                items[k] = items[-1]
                items.pop()
                return item

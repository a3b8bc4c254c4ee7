"""Batches of in-memory windows for one rank, shuffled per epoch, with an exact position to resume from.

Epoch ``e`` visits the windows in the order of a permutation drawn from ``(seed, e)`` alone (numpy's
``default_rng``), so every rank draws the same one. Global micro batch ``b`` of the epoch is the slice
``[b * W * B, (b + 1) * W * B)`` of that permutation (``W`` ranks, ``B`` windows per rank's batch) and rank
``r`` takes its ``r``-th share of ``B`` windows. The tail that does not fill a global micro batch is left out
of the epoch (the original's ``drop_last``), so every rank yields the same number of equal batches. The
position is (epoch, batch): a checkpoint stores it and a resumed loader continues with the next batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["WindowLoader"]


class WindowLoader:
    """Infinite batches ``(batch_size, frames, channels)`` of ``windows`` for ``rank`` of ``world_size``."""

    def __init__(self, windows: torch.Tensor, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.windows, self.batch_size, self.rank, self.world_size, self.seed = windows, batch_size, rank, world_size, seed
        self.batches_per_epoch = len(windows) // (batch_size * world_size)
        if self.batches_per_epoch < 1:
            raise ValueError(f"{len(windows)} windows do not fill one batch of {batch_size} on each of {world_size} "
                             "ranks")
        self.epoch = self.batch = 0
        self.stats = {"windows": len(windows), "epoch": 0}

    def _order(self, epoch: int) -> torch.Tensor:
        return torch.from_numpy(np.random.default_rng((self.seed, epoch)).permutation(len(self.windows)))

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Batches from the current position on; a second ``iter()`` continues, it never restarts."""
        order, order_epoch = None, None
        while True:
            if self.batch == self.batches_per_epoch:
                self.epoch, self.batch = self.epoch + 1, 0
            if order_epoch != self.epoch:
                order, order_epoch = self._order(self.epoch), self.epoch
            start = (self.batch * self.world_size + self.rank) * self.batch_size
            self.batch += 1
            self.stats["epoch"] = self.epoch
            yield self.windows[order[start:start + self.batch_size]]

    def state_dict(self) -> dict[str, Any]:
        """The position after the batches consumed so far, with what it is valid for."""
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed, "rank": self.rank,
                "windows": len(self.windows)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the same windows, seed and rank)."""
        mine = {"seed": self.seed, "rank": self.rank, "windows": len(self.windows)}
        theirs = {k: state[k] for k in mine}
        if theirs != mine:
            raise ValueError(f"loader state is for {theirs}, not {mine}")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self.stats["epoch"] = self.epoch

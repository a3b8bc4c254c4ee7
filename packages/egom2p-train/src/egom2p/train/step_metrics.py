"""The metrics line: the work a window of steps did, averaged over the ranks into the row that is logged.

:class:`Window` counts what the steps since the last line did on this rank; :func:`metrics_row` turns it and
the last step's result into one row (losses averaged over ranks; throughput, MFU and valid tokens summed over
them) with one all-reduce that every rank reaches.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from egom2p.train import distributed as D
from egom2p.train.metrics import mfu, peak_flops, peak_memory_gib
from egom2p.train.schedule import Schedule


class Window:
    """Work done since the last metrics line: steps, this rank's FLOPs and valid tokens, wall time."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.steps, self.flops_computed, self.flops_valid, self.valid_tokens = 0, 0.0, 0.0, 0

    def add(self, result: Mapping[str, Any]) -> None:
        """Count one step's ``train_step`` result."""
        self.steps += 1
        self.flops_computed += result["flops_computed"]
        self.flops_valid += result["flops_valid"]
        self.valid_tokens += result["valid_tokens"]

    def elapsed(self) -> float:
        """Seconds since the window opened."""
        return time.perf_counter() - self.start


def metrics_row(result: Mapping[str, Any], window: Window, info: D.DistInfo, dtype: str, schedule: Schedule,
                step: int, skipped_steps: int, loader_stats: Mapping[str, Any] | None) -> dict[str, Any]:
    """Collective: the row logged at ``step`` from its ``train_step`` ``result`` and the ``window`` it closes.

    ``skipped_steps`` is the run's count of skipped steps; the loader's numeric ``loader_stats`` are logged as
    ``data/<name>``.
    """
    names = sorted(result["scalars"])
    # Average the step's losses over ranks and add up the window's work (a collective every rank reaches).
    t = torch.tensor([result["loss"]] + [result["scalars"][n] for n in names]
                     + [window.flops_computed, window.flops_valid, window.valid_tokens], dtype=torch.float64)
    D.all_reduce(t)
    world = info.world_size
    losses, (flops_computed, flops_valid, valid_tokens) = t[:-3] / world, t[-3:].tolist()
    elapsed = max(window.elapsed(), 1e-9)
    peak = peak_flops(info.device, dtype)
    budget_tok_s = window.steps * schedule.global_batch * schedule.tokens_per_sample / elapsed
    row: dict[str, Any] = {
        "loss": float(losses[0]), **{n: float(losses[1 + i]) for i, n in enumerate(names)},
        "lr": result["lr"], "grad_norm": result["grad_norm"],
        "total_tokens_seen_b": schedule.tokens_seen(step) / 1e9,
        "tokens_per_s_per_device": budget_tok_s / world, "valid_tok_s": valid_tokens / elapsed / world,
        "mfu_computed": mfu(flops_computed / elapsed / world, peak),
        "mfu_valid": mfu(flops_valid / elapsed / world, peak),
        "peak_memory_gib": peak_memory_gib(info.device),
        "skipped_steps": skipped_steps, "epoch": step / schedule.steps_per_epoch,
    }
    for key, value in dict(loader_stats or {}).items():
        if isinstance(value, (int, float)):
            row[f"data/{key}"] = value
    return row

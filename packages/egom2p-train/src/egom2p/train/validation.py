"""Validation losses as the original computes them, and validation that never kills a run.

Per dataset: ``loss`` is the mean of the batches' losses; ``<modality>_loss`` is the mean of that
modality's batch losses over *all* batches, a batch without targets of the modality counting 0 (the
original's metric logger), for every modality that occurs in the dataset. (Any named loss of a recipe is
averaged the same way.) Sums are added over ranks,
so every rank's batches count once.

A failure (unreadable shard past the bad-data limit, S3 outage past its retry budget, a bad batch) is
caught on the rank where it happens; the ranks then agree through the same all-reduce that adds the
sums (no rank is left waiting in a collective), the dataset's metrics are dropped and the failure is
counted. Training goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from egom2p.train import distributed as D
from torch import nn

__all__ = ["reduce_dataset_sums", "validate_datasets"]


def reduce_dataset_sums(dataset: str, rows: Iterable[torch.Tensor], size: int, step: int,
                        log: Callable[[str], None]) -> torch.Tensor | None:
    """Collective: the sum of one validation dataset's per-batch ``rows`` (``size`` numbers each) over this
    rank's batches and all ranks, float64; None when producing them failed on any rank (then logged here, never
    raised: see the module docstring)."""
    sums = torch.zeros(1 + size, dtype=torch.float64)  # [failed on some rank, the rows' sum]
    try:
        for row in rows:
            sums[1:] += row
    except Exception as err:  # logged and counted, never fatal
        sums[0] = 1
        log(f"validation of '{dataset}' failed at step {step}: {type(err).__name__}: {err}")
    D.all_reduce(sums)
    return None if sums[0] > 0 else sums[1:]


def _loss_row(losses: tuple[torch.Tensor, Mapping[str, Any]], names: Sequence[str]) -> torch.Tensor:
    """One batch's ``[loss, 1, then per name: its loss, 1 where the batch has it]`` from ``(loss, named losses)``."""
    loss, named = losses
    row = torch.zeros(2 + 2 * len(names), dtype=torch.float64)
    row[0], row[1] = float(loss), 1
    for i, name in enumerate(names):
        if name in named:
            row[2 + 2 * i], row[3 + 2 * i] = float(named[name]), 1
    return row


@torch.no_grad()
def validate_datasets(model: nn.Module, build_loaders: Callable[[], Mapping[str, Iterable]],
                      prepare: Callable[[Any], Any], forward: Callable[[Any], tuple[torch.Tensor, Mapping[str, Any]]],
                      names: Sequence[str], step: int, log: Callable[[str], None]) -> tuple[dict[str, float], int]:
    """Collective: ``(metrics, failures)`` over the validation datasets that ``build_loaders()`` returns.

    ``prepare(raw) -> device batch`` and ``forward(batch) -> (loss, named losses)`` are the recipe's (the
    ``egom2p`` recipe names its losses ``<modality>_loss``); ``names`` are every named loss that may occur.
    ``metrics`` holds ``val/<dataset>/loss`` and ``val/<dataset>/<name>``; ``failures`` counts the datasets
    (or the loader set-up) that failed on any rank.
    """
    was_training = model.training
    model.eval()
    try:
        try:
            loaders, problem = dict(build_loaders()), None
        except Exception as err:  # logged and counted, never fatal: see the module docstring
            loaders, problem = {}, err
        flag = D.all_reduce(torch.tensor([float(problem is not None)]), "max")
        if flag.item():
            log(f"validation at step {step} failed: cannot build the loaders: {problem or 'on another rank'}")
            return {}, 1
        metrics: dict[str, float] = {}
        failures = 0
        for dataset, loader in loaders.items():
            rows = (_loss_row(forward(prepare(raw)), names) for raw in loader)
            sums = reduce_dataset_sums(dataset, rows, 2 + 2 * len(names), step, log)
            if sums is None:
                failures += 1
                continue
            batches = float(sums[1])
            if batches == 0:
                continue
            metrics[f"val/{dataset}/loss"] = float(sums[0]) / batches
            for i, name in enumerate(names):
                if sums[3 + 2 * i] > 0:
                    metrics[f"val/{dataset}/{name}"] = float(sums[2 + 2 * i]) / batches
        return metrics, failures
    finally:
        model.train(was_training)

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

__all__ = ["validate_datasets"]


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
            # [failed, loss sum, batches, then per modality: loss sum, batches holding the modality]
            sums = torch.zeros(3 + 2 * len(names), dtype=torch.float64)
            try:
                for raw in loader:
                    loss, named = forward(prepare(raw))
                    sums[1] += float(loss)
                    sums[2] += 1
                    for i, name in enumerate(names):
                        if name in named:
                            sums[3 + 2 * i] += float(named[name])
                            sums[4 + 2 * i] += 1
            except Exception as err:
                sums[0] = 1
                log(f"validation of '{dataset}' failed at step {step}: {type(err).__name__}: {err}")
            D.all_reduce(sums)
            if sums[0] > 0:
                failures += 1
                continue
            batches = float(sums[2])
            if batches == 0:
                continue
            metrics[f"val/{dataset}/loss"] = float(sums[1]) / batches
            for i, name in enumerate(names):
                if sums[4 + 2 * i] > 0:
                    metrics[f"val/{dataset}/{name}"] = float(sums[3 + 2 * i]) / batches
        return metrics, failures
    finally:
        model.train(was_training)

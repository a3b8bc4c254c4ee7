"""What the one training loop asks of the model it trains: a recipe (torchtitan's "train spec").

A recipe builds the model and the data loaders from the config, turns a loader batch into a device batch,
computes the loss with the named scalars to log, validates, loads other weights for ``init_from`` and says
what a resume must find unchanged. Everything else is the loop's (:mod:`egom2p.train.trainer`) and the same
for every recipe: accumulation, DDP, checkpoints and exact resume, SIGTERM, the non-finite step guard,
metrics (JSONL, wandb, progress bar) and ``--dry-run``.

The config's top-level ``recipe`` key picks one: ``egom2p`` (:mod:`egom2p.train.recipes.egom2p`, the
default) or ``tokenizer`` (:mod:`egom2p.train.recipes.tokenizer`, the camera / gaze VQ-VAE).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from egom2p.core.checkpoints import parse_dtype
from torch import nn

if TYPE_CHECKING:
    from egom2p.train.config import TrainConfig
    from egom2p.train.distributed import DistInfo
    from egom2p.train.memory_check import ActivationShape

__all__ = ["BatchWork", "Recipe", "TrainLoader", "ValLoaders", "autocast_context", "build_recipe"]

ValLoaders = Callable[[], Mapping[str, Iterable]]  # built anew for each validation: dataset name -> batches


class TrainLoader(Protocol):
    """An infinite iterator of batches whose position a checkpoint saves and restores."""

    stats: Mapping[str, Any]  # numeric counters logged as data/<name>

    def __iter__(self): ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@dataclass(frozen=True)
class BatchWork:
    """What one micro batch holds and costs: valid tokens, and training FLOPs where the recipe counts them (0: not counted)."""

    valid_tokens: int
    flops_computed: float = 0.0
    flops_valid: float = 0.0


class Recipe(Protocol):
    """How to build, feed, score and validate one kind of model; the loop does the rest."""

    name: str  # the config's `recipe` value
    model_key: str  # the config section that describes the model, named in errors ("model", "tokenizer")
    broadcast_buffers: bool  # DDP broadcasts rank 0's buffers before every forward (False: the model syncs its own)

    def schedule_inputs(self) -> tuple[int, int | None]:
        """Tokens per sample, and the samples of an epoch when ``schedule.epoch_size`` is unset (None: it is required)."""

    def build_model(self) -> nn.Module:
        """The model to train, freshly initialised (the caller seeds the RNG identically on every rank)."""

    def activation_shape(self) -> ActivationShape:
        """Tokens per sample through each block list and the logits made (the memory estimate's input)."""

    def build_train_loader(self, info: DistInfo) -> TrainLoader:
        """This rank's training loader; every rank yields the same number of batches per step."""

    def build_val_loaders(self, info: DistInfo) -> ValLoaders | None:
        """A factory of this rank's validation loaders, or None when the config has no validation data."""

    def check_sources(self) -> None:
        """Rank 0, before the first step: raise ``ConfigError`` (one line naming the key) for data that cannot be read."""

    def prepare_batch(self, model: nn.Module, raw: Any, device: torch.device) -> tuple[Any, BatchWork]:
        """The model's input on ``device`` for a loader batch, and what it holds."""

    def forward(self, model: nn.Module, batch: Any, training: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss to minimise and the named scalars to log with it (``loss`` itself is logged by the loop)."""

    def validate(self, model: nn.Module, loaders: ValLoaders, device: torch.device, step: int,
                 log: Callable[[str], None]) -> tuple[dict[str, float], int]:
        """Collective: ``(metrics, failures)``; never raises for bad data or I/O (a failure is logged and counted)."""

    def load_pretrained(self, source: str | Path) -> dict[str, torch.Tensor]:
        """The weights of ``checkpoint.init_from``; ``ValueError`` / ``FileNotFoundError`` for what cannot be read."""

    def resume_identity(self, train_loader: TrainLoader) -> dict[str, tuple[str, Any]]:
        """What a resume must find unchanged (the data position depends on it): name -> (config key, value)."""

    def describe(self) -> str:
        """The model, in a few words, for the first log line."""


def autocast_context(device: torch.device, dtype: str):
    """bf16/fp16 autocast over fp32 weights; float32 runs without autocast."""
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=parse_dtype(dtype))


def build_recipe(cfg: TrainConfig) -> Recipe:
    """The recipe the config's ``recipe`` key names (the config validated it)."""
    if cfg.recipe == "tokenizer":
        from egom2p.train.recipes.tokenizer import TokenizerRecipe

        return TokenizerRecipe(cfg)
    from egom2p.train.recipes.egom2p import EgoM2PRecipe

    return EgoM2PRecipe(cfg)

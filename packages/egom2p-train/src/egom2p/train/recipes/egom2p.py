"""The ``egom2p`` recipe: the multimodal masked model on token shards (the released EgoM2P training).

Model: ``EgoM2P`` from the ``model`` section. Data: ``egom2p.data``'s loaders over the ``data`` section's
datasets; their token budgets (``max_input_tokens`` / ``max_target_tokens``) are the model's forward budgets
and the schedule's tokens per sample. A batch is packed on the CPU (``loader.pack``), counted (valid tokens,
FLOPs: :mod:`egom2p.train.throughput`) and moved to the device; the loss is the model's (``loss_type``) with
one ``<modality>_loss`` per modality. Validation: :mod:`egom2p.train.validation`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from egom2p.core.batch import MaskedBatch
from egom2p.core.packing import PackedBatch
from egom2p.data.config import DataConfig
from egom2p.train.config import TrainConfig
from egom2p.train.distributed import DistInfo
from egom2p.train.memory_check import ActivationShape
from egom2p.train.packing import pack_micro_batch
from egom2p.train.preflight import check_data_sources
from egom2p.train.recipe import BatchWork, TrainLoader, ValLoaders, autocast_context
from egom2p.train.throughput import batch_flops, count_tokens
from egom2p.train.validation import validate_datasets
from torch import nn

__all__ = ["EgoM2PRecipe", "move_batch"]


def move_batch(batch: PackedBatch | Mapping[str, Mapping[str, Any]], device: torch.device) -> PackedBatch | MaskedBatch:
    """The batch on ``device``: a packed batch whole, a masked batch's tensors (non-tensor entries are dropped)."""
    if isinstance(batch, PackedBatch):
        return batch.to(device, non_blocking=True)
    return {mod: {k: v.to(device, non_blocking=True) for k, v in d.items() if isinstance(v, torch.Tensor)}
            for mod, d in batch.items()}


class EgoM2PRecipe:
    """EgoM2P from the ``model`` and ``data`` sections; ``budgets`` (input, target) override the data config's."""

    name = "egom2p"
    model_key = "model"
    broadcast_buffers = True

    def __init__(self, cfg: TrainConfig, budgets: tuple[int, int] | None = None):
        self.cfg = cfg
        self._budgets = budgets

    @cached_property
    def data_config(self) -> DataConfig:
        """The validated ``data`` section."""
        return self.cfg.data_config()

    @property
    def budgets(self) -> tuple[int, int]:
        """The model's forward token budgets (input, target): the largest of the datasets'."""
        if self._budgets is not None:
            return self._budgets
        return self.data_config.max_input_tokens, self.data_config.max_target_tokens

    def schedule_inputs(self) -> tuple[int, int | None]:
        """Input + target budget per sample (padding included, as the original counts); epoch_size is required."""
        return sum(self.budgets), None

    def build_model(self) -> nn.Module:
        """``EgoM2P`` of the ``model`` section."""
        from egom2p.model import EgoM2P

        return EgoM2P(self.cfg.model_config())

    def activation_shape(self) -> ActivationShape:
        """The input budget through the encoder, the target budget through the decoder; the target budget's
        logits at the largest vocabulary (one chunk of them under ``model.fused_loss``)."""
        from egom2p.model.kernels.fused_linear_ce import LOGIT_CHUNK_BYTES

        model = self.cfg.model_config()
        encoder, decoder = self.budgets
        if model.fused_loss:
            return ActivationShape({"encoder": encoder, "decoder": decoder}, logit_bytes_per_batch=LOGIT_CHUNK_BYTES)
        vocab = max(spec.vocab_size for spec in model.modalities.values())
        return ActivationShape({"encoder": encoder, "decoder": decoder}, logit_elements=decoder * vocab)

    def build_train_loader(self, info: DistInfo) -> TrainLoader:
        """``egom2p.data.build_train_loader`` for this rank."""
        from egom2p.data import build_train_loader

        loader = self.cfg.loader
        return build_train_loader(self.data_config, self.cfg.model_config().modalities, batch_size=loader.batch_size,
                                  rank=info.rank, world_size=info.world_size, num_workers=loader.num_workers,
                                  seed=self.cfg.seed)

    def build_val_loaders(self, info: DistInfo) -> ValLoaders:
        """``egom2p.data.build_val_loaders`` for this rank, 1.5 x the training micro batch (as the original)."""
        from egom2p.data import build_val_loaders

        specs, batch_size = self.cfg.model_config().modalities, self.cfg.loader.batch_size
        return lambda: build_val_loaders(self.data_config, specs, batch_size=max(1, int(1.5 * batch_size)),
                                         rank=info.rank, world_size=info.world_size, seed=self.cfg.seed)

    def check_sources(self) -> None:
        """Every train and val dataset's shards resolve and open (:mod:`egom2p.train.preflight`)."""
        check_data_sources(self.data_config.train, self.data_config.val, self.cfg.model_config().modalities)

    def prepare_batch(self, model: nn.Module, raw: Mapping[str, Mapping[str, Any]],
                      device: torch.device) -> tuple[MaskedBatch | PackedBatch, BatchWork]:
        """Pack a loader batch on the CPU (``loader.pack``), count its tokens and FLOPs, move it to ``device``."""
        loader = self.cfg.loader
        batch = raw
        if loader.pack:
            batch = pack_micro_batch(model, raw, self.budgets, loader.pack_rows, loader.pack_multiple)
        tokens = count_tokens(batch, self.budgets)
        computed, valid = batch_flops(model, tokens)
        return move_batch(batch, device), BatchWork(tokens.valid, computed, valid)

    def forward(self, model: nn.Module, batch: MaskedBatch | PackedBatch, training: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The model's loss and ``<modality>_loss`` per modality with targets; the vocabulary is checked in
        validation (training batches were checked by the loader)."""
        out = model(batch, num_encoder_tokens=self.budgets[0], num_decoder_tokens=self.budgets[1],
                    loss_type=self.cfg.loss_type, check_vocab=not training)
        return out.loss, {f"{name}_loss": value for name, value in out.mod_loss.items()}

    def validate(self, model: nn.Module, loaders: ValLoaders, device: torch.device, step: int,
                 log: Callable[[str], None]) -> tuple[dict[str, float], int]:
        """Losses per validation dataset, as the original computes them (:func:`validate_datasets`)."""
        def forward(batch: MaskedBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            with autocast_context(device, self.cfg.dtype):
                return self.forward(model, batch, training=False)

        names = [f"{name}_loss" for name in sorted(getattr(model, "modalities", {}))]
        return validate_datasets(model, loaders, lambda raw: self.prepare_batch(model, raw, device)[0], forward,
                                 names, step=step, log=log)

    def load_pretrained(self, source: str | Path) -> dict[str, torch.Tensor]:
        """The weights of anything ``EgoM2P.from_pretrained`` opens (ours, a run directory, the released .pth)."""
        from egom2p.model import EgoM2P

        return EgoM2P.from_pretrained(source).state_dict()

    def resume_identity(self, train_loader: TrainLoader) -> dict[str, tuple[str, Any]]:
        """The training datasets: the loader's streams are seeded and positioned per dataset."""
        datasets = getattr(getattr(train_loader, "config", None), "train", None) or {}
        return {"datasets": ("data.train.datasets", sorted(datasets))}

    def describe(self) -> str:
        """``model <preset>``."""
        return f"model {self.cfg.model.preset}"

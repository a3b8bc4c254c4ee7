"""The ``tokenizer`` recipe: the camera or gaze VQ-VAE of ``egom2p.tokenizers`` (the original's tokenizer trainer).

Model: ``VQVAE`` of the ``tokenizer`` section. Data: the windows of ``tokenizer_data``, held in memory as the
tokenizer's normalised inputs (:mod:`~egom2p.train.recipes.window_sources`), shuffled per epoch and split over
the ranks (:mod:`~egom2p.train.recipes.window_loader`). An epoch is one pass over the training windows
(``schedule.epoch_size`` defaults to their number), a sample is one window of ``num_tokens`` tokens.

Loss, as the original: ``reconstruction_loss(recon, x) + commitment loss`` (the model returns the commitment
loss already scaled by ``commitment_weight``; the original's ``codebook_weight`` is 1). Logged with it:
``recon_loss``, ``commit_loss``, and the codebook use of each micro batch's tokens (``codebook_live_codes``,
``codebook_perplexity``). The codebook's EMA buffers are updated in the forward and all-reduced by the codebook
itself, so DDP does not broadcast buffers (every rank's codebook stays bit-identical without it).

Validation decodes every validation window and reports, under ``val/<kind>/``: ``loss`` (the reconstruction
loss), the paper's metrics (camera: ``ate_original_m``, ``ate_se3_m``, ``ate_sim3_m``, ``ate_unaligned_m``,
``rte_m``, ``rre_deg``, means over windows; gaze: ``gaze_mse`` in crop units and ``gaze_error_crop_px``, over
the valid frames) and the codebook use of all validation tokens (``live_codes``, ``perplexity``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from egom2p.tokenizers import camera, gaze
from egom2p.tokenizers.codebook import codebook_stats
from egom2p.tokenizers.config import TokenizerConfig
from egom2p.tokenizers.metrics import CAMERA_METRICS, camera_metrics_per_window, gaze_error_px, gaze_mse
from egom2p.tokenizers.vqvae import VQVAE
from egom2p.train.config import ConfigError, TrainConfig, gaze_frame_of
from egom2p.train.distributed import DistInfo
from egom2p.train.memory_check import ActivationShape
from egom2p.train.recipe import BatchWork, TrainLoader, ValLoaders, autocast_context
from egom2p.train.recipes.window_loader import WindowLoader
from egom2p.train.recipes.window_sources import read_windows
from egom2p.train.validation import reduce_dataset_sums
from torch import nn

__all__ = ["GAZE_METRICS", "TokenizerRecipe"]

GAZE_METRICS = ("gaze_mse", "gaze_error_crop_px")


def _bare(model: nn.Module) -> VQVAE:
    """The ``VQVAE`` inside a DDP wrapper (or the model itself)."""
    return getattr(model, "module", model)


class TokenizerRecipe:
    """A camera or gaze VQ-VAE from the ``tokenizer`` and ``tokenizer_data`` sections."""

    name = "tokenizer"
    model_key = "tokenizer"
    broadcast_buffers = False  # the codebook all-reduces its own EMA update (egom2p.tokenizers.codebook)

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.tokenizer: TokenizerConfig = cfg.tokenizer_config()

    @cached_property
    def train_windows(self) -> torch.Tensor:
        """Every training window as the model's input (N, frames, channels), read once."""
        return torch.from_numpy(read_windows(self.cfg.tokenizer_data, "train", self.tokenizer))

    @cached_property
    def val_windows(self) -> torch.Tensor | None:
        """Every validation window as the model's input, or None without validation sources."""
        if not self.cfg.tokenizer_data.val:
            return None
        return torch.from_numpy(read_windows(self.cfg.tokenizer_data, "val", self.tokenizer))

    def schedule_inputs(self) -> tuple[int, int | None]:
        """A window's tokens; an epoch is one pass over the training windows (read only when
        ``schedule.epoch_size`` leaves it to them)."""
        if self.cfg.schedule.epoch_size is not None:
            return self.tokenizer.num_tokens, None
        return self.tokenizer.num_tokens, len(self.train_windows)

    def build_model(self) -> nn.Module:
        """``VQVAE`` of the ``tokenizer`` section."""
        return VQVAE(self.tokenizer)

    def activation_shape(self) -> ActivationShape:
        """A window's tokens through the encoder's and the decoder's blocks; no logits."""
        tokens = self.tokenizer.num_tokens
        return ActivationShape({"encoder.blocks": tokens, "decoder.blocks": tokens})

    def build_train_loader(self, info: DistInfo) -> WindowLoader:
        """The training windows, shuffled per epoch from ``seed``, this rank's share."""
        try:
            return WindowLoader(self.train_windows, self.cfg.loader.batch_size, info.rank, info.world_size,
                                self.cfg.seed)
        except ValueError as err:
            raise ConfigError(f"config key 'loader.batch_size': tokenizer_data.train: {err}", "loader.batch_size") from None

    def build_val_loaders(self, info: DistInfo) -> ValLoaders | None:
        """This rank's validation windows (every ``world_size``-th), in batches of 1.5 x the micro batch."""
        windows = self.val_windows
        if windows is None:
            return None
        mine = windows[info.rank::info.world_size]
        size = max(1, int(1.5 * self.cfg.loader.batch_size))
        return lambda: {self.tokenizer.kind: mine.split(size)}

    def check_sources(self) -> None:
        """Nothing left to check: the windows were read (and checked) when the loaders were built."""

    def prepare_batch(self, model: nn.Module, raw: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, BatchWork]:
        """The windows on ``device``; a window is ``num_tokens`` valid tokens."""
        return raw.to(device, non_blocking=True), BatchWork(len(raw) * self.tokenizer.num_tokens)

    def forward(self, model: nn.Module, batch: torch.Tensor, training: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruction + commitment loss; the named parts and the micro batch's codebook use."""
        recon, commit_loss, tokens = model(batch, return_tokens=True)
        recon_loss = _bare(model).reconstruction_loss(recon, batch)
        usage = codebook_stats(tokens.detach(), self.tokenizer.codebook_size)
        return recon_loss + commit_loss, {
            "recon_loss": recon_loss, "commit_loss": commit_loss,
            **{f"codebook_{name}": torch.tensor(float(value), device=recon.device) for name, value in usage.items()}}

    def _metric_names(self) -> tuple[str, ...]:
        return CAMERA_METRICS if self.tokenizer.kind == "cam" else GAZE_METRICS

    def _batch_sums(self, recon: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(weight, weighted metric sums)`` of one batch. The weight is what the batch's means average over:
        windows for the camera (all frames count), valid frames for gaze."""
        if self.tokenizer.kind == "cam":
            per_window = camera_metrics_per_window(camera.denormalize_9d(recon), camera.denormalize_9d(x))
            return float(len(x)), np.array([per_window[name].sum() for name in CAMERA_METRICS])
        valid_frames = float(x[..., 2].sum())
        if valid_frames == 0:
            return 0.0, np.zeros(len(GAZE_METRICS))
        frame = gaze_frame_of(self.cfg.tokenizer_data)
        truth = np.where(x[..., 2:3] > 0.5, gaze.model_output_to_crop_pixels(x[..., :2], frame), np.nan)
        mean_mse = gaze_mse(gaze.model_output_to_crop_units(recon), x)
        mean_error = gaze_error_px(gaze.model_output_to_crop_pixels(recon, frame), truth)
        return valid_frames, valid_frames * np.array([mean_mse, mean_error])

    def _validation_row(self, model: VQVAE, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        """One validation batch's ``[windows, weight (windows or valid frames), loss sum, metric sums...,
        code counts...]`` (float64)."""
        names, size = self._metric_names(), self.tokenizer.codebook_size
        on_device = x.to(device)
        with autocast_context(device, self.cfg.dtype):
            recon, _, tokens = model(on_device, return_tokens=True)
            loss = model.reconstruction_loss(recon, on_device)
        weight, metric_sums = self._batch_sums(recon.double().cpu().numpy(), x.double().numpy())
        row = torch.zeros(3 + len(names) + size, dtype=torch.float64)
        row[0] = len(x)
        if weight > 0:  # the batch's means are over its weight: sums of them weighted are exact
            row[1], row[2] = weight, float(loss) * weight
            row[3:3 + len(names)] = torch.from_numpy(metric_sums)
        row[3 + len(names):] = torch.bincount(tokens.reshape(-1).cpu(), minlength=size).double()
        return row

    @torch.no_grad()
    def validate(self, model: nn.Module, loaders: ValLoaders, device: torch.device, step: int,
                 log: Callable[[str], None]) -> tuple[dict[str, float], int]:
        """Collective: decode every validation window; the paper's metrics and the codebook use over all ranks."""
        model = _bare(model)
        names, size = self._metric_names(), self.tokenizer.codebook_size
        was_training = model.training
        model.eval()
        metrics: dict[str, float] = {}
        failures = 0
        try:
            for dataset, batches in loaders().items():
                rows = (self._validation_row(model, x, device) for x in batches)
                sums = reduce_dataset_sums(dataset, rows, 3 + len(names) + size, step, log)
                if sums is None:
                    failures += 1
                    continue
                if sums[0] == 0:
                    continue
                prefix = f"val/{dataset}"
                if sums[1] > 0:
                    metrics[f"{prefix}/loss"] = float(sums[2] / sums[1])
                    metrics.update({f"{prefix}/{name}": float(sums[3 + i] / sums[1]) for i, name in enumerate(names)})
                counts = sums[3 + len(names):].long()
                usage = codebook_stats(torch.repeat_interleave(torch.arange(size), counts), size)
                metrics.update({f"{prefix}/live_codes": float(usage["live_codes"]),
                                f"{prefix}/perplexity": usage["perplexity"]})
        finally:
            model.train(was_training)
        return metrics, failures

    def load_pretrained(self, source: str | Path) -> dict[str, torch.Tensor]:
        """The weights of anything ``VQVAE.from_pretrained`` opens (ours, a run directory, the released .pth)."""
        return VQVAE.from_pretrained(source).state_dict()

    def resume_identity(self, train_loader: TrainLoader) -> dict[str, tuple[str, Any]]:
        """The number of training windows: the loader's position indexes their per-epoch permutation."""
        return {"train_windows": ("tokenizer_data.train", len(self.train_windows))}

    def describe(self) -> str:
        """``tokenizer <preset> (<kind>, N training windows)``."""
        return f"tokenizer {self.cfg.tokenizer.preset} ({self.tokenizer.kind}, {len(self.train_windows)} training windows)"

"""A tiny stand-in for the Cosmos video tokenizer: the same files, interface, shapes and value ranges, no weights.

It is *not* Cosmos: it keeps each 8 x 8 patch's mean colour (40 levels per channel, 40^3 = 64,000 ids) and, over
time, the first frame and then the mean of each 4 frames, as DV4x8x8's shapes require. It lets every video path
(encode, decode, ``egom2p-tokenize prepare``, generation and evaluation with ``--video-tokenizer``) run without
the 600 MB of real weights: in the tests, and for a user who wants to try the pipeline first.

    egom2p-tokenize cosmos-standin --out runs/cosmos-standin   # writes encoder.jit + decoder.jit
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .cosmos import COSMOS_FILES

__all__ = ["StandInDecoder", "StandInEncoder", "write_standin"]

_LEVELS = 40  # per channel: 40 ** 3 = 64,000 ids, the size of Cosmos's codebook


class StandInEncoder(nn.Module):
    """(B, 3, 1 + 4 k, H, W) in [-1, 1] -> (ids (B, 1 + k, H / 8, W / 8), latent), like Cosmos's encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.levels = _LEVELS  # an attribute: TorchScript cannot read module globals

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, t, h, w = video.shape
        video = video.float()
        rest = video[:, :, 1:].reshape(b, c, (t - 1) // 4, 4, h, w).mean(dim=3)
        latent = F.avg_pool3d(torch.cat([video[:, :, :1], rest], dim=2), kernel_size=(1, 8, 8))
        n = self.levels
        levels = ((latent + 1) / 2 * (n - 1)).round().clamp(0, n - 1).to(torch.int64)
        ids = (levels[:, 0] * n + levels[:, 1]) * n + levels[:, 2]
        return ids, latent


class StandInDecoder(nn.Module):
    """ids (B, t, h, w) -> (B, 3, 1 + 4 (t - 1), 8 h, 8 w) in [-1, 1], like Cosmos's decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.levels = _LEVELS

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = self.levels
        levels = torch.stack([ids // (n * n), (ids // n) % n, ids % n], dim=1)
        latent = levels.float() / (n - 1) * 2 - 1
        latent = latent.repeat_interleave(8, dim=3).repeat_interleave(8, dim=4)
        return torch.cat([latent[:, :, :1], latent[:, :, 1:].repeat_interleave(4, dim=2)], dim=2)


def write_standin(folder: str | os.PathLike) -> Path:
    """Script the stand-in and save it as ``encoder.jit`` + ``decoder.jit`` in ``folder`` (created); returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, module in zip(COSMOS_FILES, (StandInEncoder(), StandInDecoder()), strict=True):
        with warnings.catch_warnings():  # TorchScript is deprecated in torch, and it is Cosmos's format
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(torch.jit.script(module), str(folder / name))
    return folder

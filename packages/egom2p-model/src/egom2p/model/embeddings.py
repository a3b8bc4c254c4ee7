"""Positional, modality and token embeddings (docs/original-behaviour.md#embeddings).

Positional embeddings are fixed sin-cos tables kept as non-persistent buffers (they are a
function of the config, so checkpoints need not store them; the original did, quirk 6 in
docs/original-behaviour.md#quirks).
"""

from __future__ import annotations

import torch
from egom2p.core.modalities import ModalitySpec
from egom2p.core.posemb import TEMPERATURE, sincos_1d
from einops import rearrange
from torch import nn


def _interleaved_axis(positions: int, channels: int, temperature: float) -> torch.Tensor:
    """``[positions, channels]`` = [sin(p f_0), cos(p f_0), sin(p f_1), ...], f_j = T^(-2j/channels)."""
    inv_freq = 1.0 / (temperature ** (torch.arange(0, channels, 2, dtype=torch.float32) / channels))
    angles = torch.arange(positions, dtype=torch.float32)[:, None] * inv_freq[None, :]
    return rearrange(torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1), "p f sc -> p (f sc)")


def sincos_3d(t: int, h: int, w: int, dim: int, temperature: float = TEMPERATURE) -> torch.Tensor:
    """3-D table ``[1, t*h*w, dim]``: channels [time | height | width], dim/3 each, (t, h, w) row-major."""
    if dim % 6 != 0:
        raise ValueError(f"3-D sin-cos position embedding needs dim divisible by 6, got {dim}")
    channels = dim // 3
    et = _interleaved_axis(t, channels, temperature)[:, None, None, :].expand(t, h, w, channels)
    eh = _interleaved_axis(h, channels, temperature)[None, :, None, :].expand(t, h, w, channels)
    ew = _interleaved_axis(w, channels, temperature)[None, None, :, :].expand(t, h, w, channels)
    return rearrange(torch.cat([et, eh, ew], dim=-1), "t h w c -> 1 (t h w) c")


def position_table(spec: ModalitySpec, dim: int) -> torch.Tensor:
    """The fixed positional table of a modality: 3-D for grids, 1-D for sequences."""
    if spec.is_video:
        return sincos_3d(*spec.grid, dim)
    return sincos_1d(spec.num_tokens, dim)


class EncoderEmbedding(nn.Module):
    """Token table, modality embedding (shared with the decoder) and positions of one modality."""

    def __init__(self, spec: ModalitySpec, dim: int, pos_emb: torch.Tensor) -> None:
        super().__init__()
        self.token_emb = nn.Embedding(spec.vocab_size, dim)
        self.mod_emb = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_emb", pos_emb, persistent=False)


class DecoderEmbedding(nn.Module):
    """Decoder side of one modality: positions and the token table that doubles as the output head.

    The decoder's input at a target is the mask token, so ``token_emb`` is used only as the
    (tied) output projection ``logits = h @ token_emb.weight.T``. The modality
    embedding is the encoder's (one parameter per modality), so it is not stored here.
    """

    def __init__(self, spec: ModalitySpec, dim: int, pos_emb: torch.Tensor) -> None:
        super().__init__()
        self.token_emb = nn.Embedding(spec.vocab_size, dim)
        self.register_buffer("pos_emb", pos_emb, persistent=False)

    @property
    def head_weight(self) -> torch.Tensor:
        """Output projection ``[V, D]`` (tied to ``token_emb``)."""
        return self.token_emb.weight

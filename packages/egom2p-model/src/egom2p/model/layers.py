"""Transformer blocks (docs/original-behaviour.md#architecture): pre-norm encoder block and decoder block with cross-attention.

Module and parameter names follow the original so that its state dict maps one to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from egom2p.core.enums import AttnBackend
from einops import rearrange
from torch import nn

from .attention import attention
from .config import EgoM2PConfig
from .kernels.reference import AttentionMask


def layer_norm(dim: int, bias: bool) -> nn.LayerNorm:
    """LayerNorm with the original's eps; no bias in the released (SwiGLU) family."""
    return nn.LayerNorm(dim, eps=1e-6, bias=bias)


class AttentionLayer(nn.Module):
    """An attention layer: holds ``backend``, the attention backend it runs (:func:`egom2p.model.attention.attention`).

    ``EgoM2P`` sets it to its resolved backend when built and on every device move; a layer used on its own keeps
    ``auto``, resolved per call for the inputs' device.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backend: AttnBackend = AttnBackend.AUTO


class SelfAttention(AttentionLayer):
    """Multi-head self-attention with one ``qkv`` projection (rows: all q, all k, all v)."""

    def __init__(self, cfg: EgoM2PConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=cfg.proj_bias)
        self.q_norm = layer_norm(cfg.head_dim, cfg.norm_bias) if cfg.qk_norm else nn.Identity()
        self.k_norm = layer_norm(cfg.head_dim, cfg.norm_bias) if cfg.qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, mask: AttentionMask | None = None) -> torch.Tensor:
        """``mask``: usually :meth:`AttentionMask.self_attention` (the queries are the keys)."""
        q, k, v = rearrange(self.qkv(x), "b n (qkv h d) -> qkv b h n d", qkv=3, h=self.num_heads)
        out = attention(self.q_norm(q), self.k_norm(k), v, mask, backend=self.backend)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class CrossAttention(AttentionLayer):
    """Queries from the decoder, keys/values from the context via one ``kv`` projection."""

    def __init__(self, cfg: EgoM2PConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.q = nn.Linear(cfg.dim, cfg.dim, bias=cfg.qkv_bias)
        self.kv = nn.Linear(cfg.dim, 2 * cfg.dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=cfg.proj_bias)
        self.q_norm = layer_norm(cfg.head_dim, cfg.norm_bias) if cfg.qk_norm else nn.Identity()
        self.k_norm = layer_norm(cfg.head_dim, cfg.norm_bias) if cfg.qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: AttentionMask | None = None) -> torch.Tensor:
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.num_heads)
        k, v = rearrange(self.kv(context), "b n (kv h d) -> kv b h n d", kv=2, h=self.num_heads)
        out = attention(self.q_norm(q), self.k_norm(k), v, mask, backend=self.backend)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class Mlp(nn.Module):
    """SwiGLU ``fc2(silu(fc1 x) * fc3 x)`` or GELU ``fc2(gelu(fc1 x))``."""

    def __init__(self, cfg: EgoM2PConfig) -> None:
        super().__init__()
        self.gated = cfg.gated_mlp
        self.fc1 = nn.Linear(cfg.dim, cfg.mlp_hidden, bias=cfg.mlp_bias)
        self.fc2 = nn.Linear(cfg.mlp_hidden, cfg.dim, bias=cfg.mlp_bias)
        if self.gated:
            self.fc3 = nn.Linear(cfg.dim, cfg.mlp_hidden, bias=cfg.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            return self.fc2(F.silu(self.fc1(x)) * self.fc3(x))
        return self.fc2(F.gelu(self.fc1(x)))


class EncoderBlock(nn.Module):
    """x += attn(norm1 x); x += mlp(norm2 x)."""

    def __init__(self, cfg: EgoM2PConfig) -> None:
        super().__init__()
        self.norm1 = layer_norm(cfg.dim, cfg.norm_bias)
        self.attn = SelfAttention(cfg)
        self.norm2 = layer_norm(cfg.dim, cfg.norm_bias)
        self.mlp = Mlp(cfg)

    def forward(self, x: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        """``mask``: the self-attention mask (packed rows: a token sees only tokens of its own sample)."""
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """y += self_attn(norm1 y); y += cross_attn(query_norm y, context_norm ctx); y += mlp(norm2 y)."""

    def __init__(self, cfg: EgoM2PConfig) -> None:
        super().__init__()
        self.norm1 = layer_norm(cfg.dim, cfg.norm_bias)
        self.self_attn = SelfAttention(cfg)
        self.query_norm = layer_norm(cfg.dim, cfg.norm_bias)
        self.context_norm = layer_norm(cfg.dim, cfg.norm_bias)
        self.cross_attn = CrossAttention(cfg)
        self.norm2 = layer_norm(cfg.dim, cfg.norm_bias)
        self.mlp = Mlp(cfg)

    def forward(self, y: torch.Tensor, context: torch.Tensor, self_mask: AttentionMask, cross_mask: AttentionMask) -> torch.Tensor:
        """``self_mask``: the targets' self-attention; ``cross_mask``: which context keys each target reads
        (packed rows: only its own sample's)."""
        y = y + self.self_attn(self.norm1(y), self_mask)
        y = y + self.cross_attn(self.query_norm(y), self.context_norm(context), cross_mask)
        return y + self.mlp(self.norm2(y))

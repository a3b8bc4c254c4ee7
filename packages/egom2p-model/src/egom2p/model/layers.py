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

    def forward(self, x: torch.Tensor, key_lengths=None, segments=None, causal: bool = False) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (qkv h d) -> qkv b h n d", qkv=3, h=self.num_heads)
        # Queries are the keys: rows past key_lengths are padding, which the kernel need not compute.
        out = attention(self.q_norm(q), self.k_norm(k), v, key_lengths, segments, segments, backend=self.backend,
                        causal=causal, query_lengths=key_lengths)
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

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        key_lengths=None,
        q_segments=None,
        k_segments=None,
        query_lengths=None,
    ) -> torch.Tensor:
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.num_heads)
        k, v = rearrange(self.kv(context), "b n (kv h d) -> kv b h n d", kv=2, h=self.num_heads)
        out = attention(self.q_norm(q), self.k_norm(k), v, key_lengths, q_segments, k_segments, backend=self.backend,
                        query_lengths=query_lengths)
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

    def forward(self, x: torch.Tensor, key_lengths: torch.Tensor | None, segments: torch.Tensor | None = None) -> torch.Tensor:
        """``segments`` (packed rows): a token sees only tokens of its own sample."""
        x = x + self.attn(self.norm1(x), key_lengths=key_lengths, segments=segments)
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

    def forward(
        self,
        y: torch.Tensor,
        context: torch.Tensor,
        self_key_lengths: torch.Tensor | None,
        segments: torch.Tensor | None,
        context_lengths: torch.Tensor | None,
        causal: bool = False,
        samples: torch.Tensor | None = None,
        context_samples: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``segments``: self-attention segments; ``samples``/``context_samples`` (packed rows): the sample
        of each query / context key, so that a query reads only its own sample's context."""
        y = y + self.self_attn(self.norm1(y), key_lengths=self_key_lengths, segments=segments, causal=causal)
        y = y + self.cross_attn(self.query_norm(y), self.context_norm(context), key_lengths=context_lengths,
                                q_segments=samples, k_segments=context_samples, query_lengths=self_key_lengths)
        return y + self.mlp(self.norm2(y))

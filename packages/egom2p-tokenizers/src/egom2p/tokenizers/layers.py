"""The tokenizers' transformer trunks: a time-patching encoder and a frame-unpatching decoder.

The original's network: docs/original-behaviour.md#camera.

Pre-norm ViT blocks (LayerNorm with bias, qkv with bias, GELU MLP), a fixed 1-D sin-cos position
embedding and a residual Tanh "post MLP" after the blocks. Module and parameter names are the
original's, so the released state dicts load as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from egom2p.core.posemb import sincos_1d
from einops import rearrange
from torch import nn

from .config import TokenizerConfig


class Mlp(nn.Module):
    """``fc2(act(fc1(x)))``."""

    def __init__(self, dim: int, hidden: int, act: type[nn.Module]) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention over all tokens (no mask), computed by ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        # Registration order norm1, norm2, attn, mlp: the original's state-dict order.
        self.norm1 = nn.LayerNorm(cfg.dim_tokens, eps=cfg.eps)
        self.norm2 = nn.LayerNorm(cfg.dim_tokens, eps=cfg.eps)
        self.attn = Attention(cfg.dim_tokens, cfg.num_heads)
        self.mlp = Mlp(cfg.dim_tokens, cfg.mlp_hidden, nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _Trunk(nn.Module):
    """Position embedding, blocks and the optional residual Tanh post MLP, shared by encoder and decoder."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        # A Parameter that never trains: the released checkpoints store it under this name.
        self.position_embeddings = nn.Parameter(sincos_1d(cfg.num_tokens, cfg.dim_tokens), requires_grad=False)

    def _build_body(self, cfg: TokenizerConfig) -> None:
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        if cfg.post_mlp:
            self.norm_mlp = nn.LayerNorm(cfg.dim_tokens, eps=cfg.eps)
            self.post_mlp = Mlp(cfg.dim_tokens, cfg.mlp_hidden, nn.Tanh)
        self.has_post_mlp = cfg.post_mlp

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.position_embeddings
        for block in self.blocks:
            x = block(x)
        if self.has_post_mlp:
            x = x + self.post_mlp(self.norm_mlp(x))
        return x


class Encoder(_Trunk):
    """``(B, frames, in_channels)`` -> ``(B, tokens, dim)``: a strided Conv1d over time, then the trunk."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__(cfg)
        self.conv = nn.Conv1d(cfg.in_channels, cfg.dim_tokens, kernel_size=cfg.temporal_compress,
                              stride=cfg.temporal_compress)
        self._build_body(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self._body(tokens)


class Decoder(_Trunk):
    """``(B, tokens, dim)`` -> ``(B, frames, out_channels)``: the trunk, then each token unpacks its frames."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__(cfg)
        self._build_body(cfg)
        self.temporal_compress = cfg.temporal_compress
        self.out_proj = nn.Linear(cfg.dim_tokens, cfg.in_channels * cfg.temporal_compress)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.out_proj(self._body(x))
        # The original orders each token's outputs channel-major: index = channel * temporal_compress + frame.
        return rearrange(out, "b n (c t) -> b (n t) c", t=self.temporal_compress)

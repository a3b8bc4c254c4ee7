"""``TokenizerConfig``: every architectural and quantizer setting of a camera or gaze VQ-VAE, validated."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("cam", "gaze")
# Input channels the conventions fix: the 9-D camera vector, the 2-D gaze point (the validity flag is extra).
KIND_CHANNELS = {"cam": 9, "gaze": 2}
REPLACEMENT_POLICIES = ("batch_random",)


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"TokenizerConfig.{name} must be a positive int, got {value!r}")


def _number(name: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"TokenizerConfig.{name} must be a number, got {value!r}")
    return float(value)


@dataclass
class TokenizerConfig:
    """Architecture and quantizer of a camera (``kind="cam"``) or gaze (``kind="gaze"``) VQ-VAE.

    Defaults are the released tokenizers (docs/original-behaviour.md#camera, #gaze): 60 frames compressed 2x in time to 30 tokens,
    a 256 x 32 cosine-similarity codebook with EMA decay 0.99 and dead-code threshold 2.0, and a
    768-wide transformer with 12 encoder and 12 decoder blocks. ``in_channels`` follows ``kind`` (9 or 2)
    when left out. ``eps`` is the LayerNorm epsilon.
    """

    kind: str
    num_frames: int = 60
    temporal_compress: int = 2
    codebook_size: int = 256
    latent_dim: int = 32
    ema_decay: float = 0.99
    threshold_ema_dead_code: float = 2.0
    code_replacement_policy: str = "batch_random"
    commitment_weight: float = 1.0
    post_mlp: bool = True
    in_channels: int | None = None
    dim_tokens: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"TokenizerConfig.kind must be one of {list(KINDS)}, got {self.kind!r}")
        expected_channels = KIND_CHANNELS[self.kind]
        if self.in_channels is None:
            self.in_channels = expected_channels
        if self.in_channels != expected_channels:
            raise ValueError(f"TokenizerConfig.in_channels must be {expected_channels} for kind {self.kind!r}, "
                             f"got {self.in_channels!r}")
        for name in ("num_frames", "temporal_compress", "codebook_size", "latent_dim", "dim_tokens", "depth",
                     "num_heads"):
            _positive_int(name, getattr(self, name))
        if self.num_frames % self.temporal_compress:
            raise ValueError(f"TokenizerConfig.num_frames ({self.num_frames}) must be divisible by "
                             f"temporal_compress ({self.temporal_compress})")
        if self.dim_tokens % self.num_heads:
            raise ValueError(f"TokenizerConfig.dim_tokens ({self.dim_tokens}) must be divisible by "
                             f"num_heads ({self.num_heads})")
        if self.dim_tokens % 2:
            raise ValueError(f"TokenizerConfig.dim_tokens must be even (sin-cos position embedding), "
                             f"got {self.dim_tokens}")
        if not 0.0 <= _number("ema_decay", self.ema_decay) < 1.0:
            raise ValueError(f"TokenizerConfig.ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if _number("threshold_ema_dead_code", self.threshold_ema_dead_code) < 0:
            raise ValueError(f"TokenizerConfig.threshold_ema_dead_code must be >= 0, got "
                             f"{self.threshold_ema_dead_code!r}")
        if _number("commitment_weight", self.commitment_weight) < 0:
            raise ValueError(f"TokenizerConfig.commitment_weight must be >= 0, got {self.commitment_weight!r}")
        if not _number("mlp_ratio", self.mlp_ratio) > 0:
            raise ValueError(f"TokenizerConfig.mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        if not _number("eps", self.eps) > 0:
            raise ValueError(f"TokenizerConfig.eps must be > 0, got {self.eps!r}")
        if self.code_replacement_policy not in REPLACEMENT_POLICIES:
            raise ValueError(f"TokenizerConfig.code_replacement_policy must be one of {list(REPLACEMENT_POLICIES)}, "
                             f"got {self.code_replacement_policy!r}")
        if not isinstance(self.post_mlp, bool):
            raise ValueError(f"TokenizerConfig.post_mlp must be true or false, got {self.post_mlp!r}")

    @property
    def num_tokens(self) -> int:
        """Tokens per window (frames / temporal compression)."""
        return self.num_frames // self.temporal_compress

    @property
    def input_channels(self) -> int:
        """Channels of the model input: the signal's, plus the validity flag for gaze."""
        assert self.in_channels is not None  # set in __post_init__
        return self.in_channels + (1 if self.kind == "gaze" else 0)

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the transformer MLPs and the post MLP."""
        return int(self.dim_tokens * self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict that :meth:`from_dict` reads back."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenizerConfig:
        """Build from a mapping; an unknown key raises a ValueError naming it."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a tokenizer config must be a mapping, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown TokenizerConfig keys {unknown}; known keys: {known}")
        if "kind" not in data:
            raise ValueError("a tokenizer config needs 'kind' ('cam' or 'gaze')")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> TokenizerConfig:
        """A copy with some fields changed (validated again); a new ``kind`` brings its own ``in_channels``."""
        current = self.to_dict()
        if "kind" in changes and "in_channels" not in changes:
            current.pop("in_channels")
        return self.from_dict({**current, **changes})

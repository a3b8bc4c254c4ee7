"""``EgoM2PConfig``: every architectural choice of the model, validated at construction."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from egom2p.core.modalities import RELEASED_MODALITIES, load_modality_specs

from .attention import check_backend


@dataclass
class EgoM2PConfig:
    """Architecture of an EgoM2P encoder-decoder.

    ``modalities`` accepts a modality-file path or preset name (``"egom2p"``, ``"tiny"``), a mapping
    ``name -> {vocab_size, grid|length, folder?}`` or ``name -> ModalitySpec``; it is normalised by
    :func:`egom2p.core.modalities.load_modality_specs` to ``dict[str, ModalitySpec]`` (sorted names).
    ``attn_backend`` stays as given (``auto`` included): the model resolves it for its device.
    Defaults are the released ``egom2p_base_12e_12d_swiglu_nobias`` (docs/original-behaviour.md#architecture).
    """

    dim: int = 768
    encoder_depth: int = 12
    decoder_depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    modalities: Any = field(default_factory=lambda: dict(RELEASED_MODALITIES))
    attn_backend: str = "auto"  # reference | sdpa | triton | auto (egom2p.core.enums.AttnBackend)
    gated_mlp: bool = True  # SwiGLU (hidden = int(2 * dim * mlp_ratio / 3)); False: GELU (hidden = dim * mlp_ratio)
    qkv_bias: bool = False
    proj_bias: bool = False
    mlp_bias: bool = False
    norm_bias: bool = False  # LayerNorm eps 1e-6, learned bias only for the GELU variants
    qk_norm: bool = False
    decoder_sep_mask: bool = True  # a target attends only to targets of its own modality
    decoder_causal_mask: bool = False  # only the original's "_causal" variant (attention.CAUSAL_BACKENDS)
    fused_loss: bool = False  # chunked linear + cross-entropy kernel (egom2p.model.kernels.fused_linear_ce)
    fused_loss_chunk_size: int | None = None  # tokens per fused-loss chunk; None: sized from the vocabulary
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if isinstance(self.modalities, (str, os.PathLike, Mapping)):
            self.modalities = load_modality_specs(self.modalities)
        else:
            raise ValueError(f"modalities must be a path or a mapping, got {type(self.modalities).__name__}")
        if self.fused_loss_chunk_size is not None and (not isinstance(self.fused_loss_chunk_size, int)
                                                       or isinstance(self.fused_loss_chunk_size, bool)
                                                       or self.fused_loss_chunk_size < 1):
            raise ValueError(f"fused_loss_chunk_size must be a positive int or None, got {self.fused_loss_chunk_size!r}")
        for name in ("dim", "encoder_depth", "decoder_depth", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.dim % self.num_heads != 0:
            raise ValueError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        if self.dim % 2 != 0:
            raise ValueError(f"dim must be even for the sin-cos position embeddings, got {self.dim}")
        video = [m.name for m in self.modalities.values() if m.is_video]
        if video and self.dim % 6 != 0:
            raise ValueError(f"dim must be divisible by 6 for the 3-D position embedding of {video}, got {self.dim}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        self.attn_backend = check_backend(self.attn_backend, causal=self.decoder_causal_mask).value

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the feed-forward layers (SwiGLU keeps the parameter count of a 4x GELU MLP)."""
        nominal = int(self.dim * self.mlp_ratio)
        return int(2 * nominal / 3) if self.gated_mlp else nominal

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (modalities inlined) that ``from_dict`` reads back."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["modalities"] = {name: spec.to_dict() for name, spec in self.modalities.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EgoM2PConfig:
        """Build from a dict; unknown keys raise a ValueError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown EgoM2PConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> EgoM2PConfig:
        """A copy with some fields changed (validated again)."""
        return self.from_dict({**self.to_dict(), **changes})


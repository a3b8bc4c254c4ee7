"""Named tokenizer configurations: the released camera and gaze tokenizers and their tiny test twins."""

from __future__ import annotations

from typing import Any

from .config import TokenizerConfig

_RELEASED_TRUNK = {"dim_tokens": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0}
# The parity fixture's width (tests/fixtures/tokenizers_tiny.pt): everything else as released.
_TINY_TRUNK = {"dim_tokens": 96, "depth": 2, "num_heads": 4, "mlp_ratio": 4.0}

TOKENIZER_PRESETS: dict[str, dict[str, Any]] = {
    "cam-released": {"kind": "cam", **_RELEASED_TRUNK},
    "gaze-released": {"kind": "gaze", **_RELEASED_TRUNK},
    "cam-tiny": {"kind": "cam", **_TINY_TRUNK},
    "gaze-tiny": {"kind": "gaze", **_TINY_TRUNK},
}


def tokenizer_config(name: str, **overrides: Any) -> TokenizerConfig:
    """The preset ``name`` as a :class:`TokenizerConfig`, with ``overrides`` applied (validated)."""
    if name not in TOKENIZER_PRESETS:
        raise ValueError(f"unknown tokenizer preset {name!r}; known: {sorted(TOKENIZER_PRESETS)}")
    return TokenizerConfig.from_dict({**TOKENIZER_PRESETS[name], **overrides})

"""Named architectures: our short names and every registry name of the original.

The original's registry: docs/original-behaviour.md#registry-names.
"""

from __future__ import annotations

from typing import Any

from .config import EgoM2PConfig

_SWIGLU_NOBIAS = dict(gated_mlp=True, qkv_bias=False, proj_bias=False, mlp_bias=False, norm_bias=False)
_GELU = dict(gated_mlp=False, qkv_bias=True, proj_bias=True, mlp_bias=True, norm_bias=True)

# (dim, encoder_depth, decoder_depth, num_heads) per size. SwiGLU has the GELU sizes but for large/xlarge,
# which use the original's odd widths because the 3-D position embedding needs dim % 6 == 0 (quirk 9
# in docs/original-behaviour.md#quirks); the QK-norm variants come in the GELU sizes from base up.
_SIZES_GELU = {
    "tiny_6e_6d": (384, 6, 6, 6),
    "small_8e_8d": (512, 8, 8, 8),
    "base_12e_12d": (768, 12, 12, 12),
    "large_24e_24d": (1024, 24, 24, 16),
    "xlarge_24e_24d": (2048, 24, 24, 32),
}
_SIZES_SWIGLU = {**_SIZES_GELU, "large_24e_24d": (1020, 24, 24, 15), "xlarge_24e_24d": (2046, 24, 24, 31)}
_SIZES_QKNORM = {size: _SIZES_GELU[size] for size in ("base_12e_12d", "large_24e_24d", "xlarge_24e_24d")}


def _arch(size: tuple[int, int, int, int], **flags: Any) -> dict[str, Any]:
    dim, enc, dec, heads = size
    return dict(dim=dim, encoder_depth=enc, decoder_depth=dec, num_heads=heads, mlp_ratio=4.0, **flags)


PRESETS: dict[str, dict[str, Any]] = {}
for _size, _dims in _SIZES_GELU.items():
    PRESETS[f"egom2p_{_size}_gelu"] = _arch(_dims, **_GELU)
for _size, _dims in _SIZES_SWIGLU.items():
    PRESETS[f"egom2p_{_size}_swiglu_nobias"] = _arch(_dims, **_SWIGLU_NOBIAS)
for _size, _dims in _SIZES_QKNORM.items():
    PRESETS[f"egom2p_{_size}_swiglu_qknorm_nobias"] = _arch(_dims, qk_norm=True, **_SWIGLU_NOBIAS)
PRESETS["egom2p_base_12e_12d_swiglu_nobias_causal"] = _arch(
    _SIZES_SWIGLU["base_12e_12d"], decoder_causal_mask=True, **_SWIGLU_NOBIAS
)
# Short names: the SwiGLU, bias-free family the released model belongs to.
for _short, _size in (("tiny", "tiny_6e_6d"), ("small", "small_8e_8d"), ("base", "base_12e_12d"), ("large", "large_24e_24d")):
    PRESETS[f"egom2p-{_short}"] = PRESETS[f"egom2p_{_size}_swiglu_nobias"]


def preset_config(name: str, **overrides: Any) -> EgoM2PConfig:
    """The config of a named preset (short or original registry name), with field overrides.

    The modalities default to the released set unless ``modalities=`` is given.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
    return EgoM2PConfig(**{**PRESETS[name], **overrides})

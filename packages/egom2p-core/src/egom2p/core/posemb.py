"""The fixed 1-D sin-cos position table that EgoM2P and its camera / gaze tokenizers share (needs torch).

Both store it under their own names (the main model as a buffer, the tokenizers as a non-trainable
parameter), so the released checkpoints of both load; the numbers are the same function.
"""

from __future__ import annotations

import torch

TEMPERATURE = 10000.0


def sincos_1d(length: int, dim: int, temperature: float = TEMPERATURE) -> torch.Tensor:
    """1-D table ``[1, length, dim]``: first half sin(n w_k), second half cos(n w_k), w_k = T^(-k/(dim/2)).

    Bit-identical in float32 to the originals' tables (the main model's and the tokenizers').
    """
    if dim % 2 != 0:
        raise ValueError(f"1-D sin-cos position embedding needs an even dim, got {dim}")
    half = dim // 2
    omega = 1.0 / (temperature ** (torch.arange(half, dtype=torch.float32) / half))
    angles = torch.arange(length, dtype=torch.float32)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)[None]

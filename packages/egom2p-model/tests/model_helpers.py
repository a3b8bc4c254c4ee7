"""Tiny shapes shared by the egom2p-model tests (a uniquely named module: other packages have conftest.py too)."""

from __future__ import annotations

import torch
from egom2p.model import EgoM2PConfig

TINY_MODALITIES = {
    "tok_cam": {"vocab_size": 16, "length": 6},
    "tok_depth": {"vocab_size": 24, "grid": [2, 2, 3]},
    "tok_gaze": {"vocab_size": 16, "length": 6},
    "tok_rgb": {"vocab_size": 32, "grid": [2, 2, 3]},
}


def tiny_config(**overrides) -> EgoM2PConfig:
    """A 24-wide, 2+2 block model over four small modalities."""
    base = dict(dim=24, encoder_depth=2, decoder_depth=2, num_heads=2, modalities=TINY_MODALITIES, attn_backend="sdpa")
    return EgoM2PConfig(**{**base, **overrides})


def random_batch(config: EgoM2PConfig, batch_size: int = 2, p_input: float = 0.4, p_target: float = 0.4, seed: int = 0):
    """A batch following the contract: disjoint random input and target subsets per modality."""
    gen = torch.Generator().manual_seed(seed)
    batch = {}
    for name, spec in config.modalities.items():
        n = spec.num_tokens
        ids = torch.randint(0, spec.vocab_size, (batch_size, *spec.shape), generator=gen)
        u = torch.rand(batch_size, n, generator=gen)
        is_input = u < p_input
        is_target = (u >= p_input) & (u < p_input + p_target)
        batch[name] = {"tensor": ids, "input_mask": ~is_input, "target_mask": ~is_target}
    return batch

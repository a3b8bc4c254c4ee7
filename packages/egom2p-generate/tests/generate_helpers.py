"""Helpers of the egom2p-generate tests: tiny random models and their checkpoint directories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from egom2p.model import EgoM2P, EgoM2PConfig


def tiny_egom2p(modalities: dict[str, dict[str, Any]], seed: int) -> EgoM2P:
    """A random EgoM2P of width 24 with one encoder and one decoder block and two heads over ``modalities``
    (reference attention), in eval mode; ``seed`` fixes its weights."""
    torch.manual_seed(seed)
    config = EgoM2PConfig(dim=24, encoder_depth=1, decoder_depth=1, num_heads=2, modalities=modalities,
                          attn_backend="reference")
    return EgoM2P(config).eval()


def saved_checkpoint(model: EgoM2P, directory: Path) -> Path:
    """``directory``, holding ``model`` saved as our checkpoint directory."""
    model.save_pretrained(directory)
    return directory

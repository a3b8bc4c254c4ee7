"""Shared fixtures of the tokenizer tests: the original's recorded tiny tokenizers and models built from them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from egom2p.tokenizers.config import TokenizerConfig
from egom2p.tokenizers.vqvae import VQVAE

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tests share two cores (pytest -n 2): one torch thread each, or the two workers' thread pools thrash."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizers_tiny() -> dict[str, Any]:
    """``tokenizers_tiny.pt``: the original VQ-VAE's weights, inputs and outputs (parity/TOKENIZERS.md).

    Our own fixture of plain dicts, tensors and arrays, hence ``weights_only=False`` here and nowhere else.
    Shared by the session: tests must not modify it.
    """
    return torch.load(FIXTURES / "tokenizers_tiny.pt", weights_only=False)


@pytest.fixture()
def fixture_model(tokenizers_tiny: dict[str, Any]) -> Callable[..., VQVAE]:
    """``fixture_model(kind, **config_overrides)``: a VQVAE holding the fixture's weights, in eval mode."""

    def build(kind: str, **overrides: Any) -> VQVAE:
        entry = tokenizers_tiny[kind]
        model = VQVAE(TokenizerConfig.from_dict({**entry["config"], **overrides}))
        model.load_state_dict(entry["state_dict"])
        return model.eval()

    return build

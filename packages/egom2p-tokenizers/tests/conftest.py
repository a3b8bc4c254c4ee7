"""Shared fixtures of the tokenizer tests: the original's recorded tiny tokenizers and models built from them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from egom2p.core.testing import one_torch_thread, pytest_configure  # noqa: F401  (importing registers them)
from egom2p.tokenizers.config import TokenizerConfig
from egom2p.tokenizers.vqvae import VQVAE

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def tokenizers_tiny() -> dict[str, Any]:
    """``tokenizers_tiny.pt``: the original VQ-VAE's weights, inputs and outputs (described in
    fixtures/TOKENIZERS_PARITY_README.md).

    Plain dicts, tensors and float64 numpy arrays: the safe loader reads it once numpy's array rebuild is allowed.
    Shared by the session: tests must not modify it.
    """
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
    arrays = [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.float64))]
    with torch.serialization.safe_globals(arrays):
        return torch.load(FIXTURES / "tokenizers_tiny.pt", weights_only=True)


@pytest.fixture(scope="session")
def cam(tokenizers_tiny: dict[str, Any]) -> dict[str, Any]:
    """The fixture's camera tokenizer entry (read only)."""
    return tokenizers_tiny["cam"]


@pytest.fixture(scope="session")
def gaze(tokenizers_tiny: dict[str, Any]) -> dict[str, Any]:
    """The fixture's gaze tokenizer entry (read only)."""
    return tokenizers_tiny["gaze"]


@pytest.fixture()
def fixture_model(tokenizers_tiny: dict[str, Any]) -> Callable[..., VQVAE]:
    """``fixture_model(kind, **config_overrides)``: a VQVAE holding the fixture's weights, in eval mode."""

    def build(kind: str, **overrides: Any) -> VQVAE:
        entry = tokenizers_tiny[kind]
        model = VQVAE(TokenizerConfig.from_dict({**entry["config"], **overrides}))
        model.load_state_dict(entry["state_dict"])
        return model.eval()

    return build

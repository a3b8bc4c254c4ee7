"""Shared fixtures of the egom2p-data tests."""

from __future__ import annotations

import pathlib

import pytest
import torch

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]



@pytest.fixture(autouse=True)
def _one_thread():
    """Tests share two cores with other jobs: keep torch on one thread."""
    torch.set_num_threads(1)


@pytest.fixture
def repo_root() -> pathlib.Path:
    return REPO_ROOT

"""Shared fixtures of the egom2p-data tests."""

from __future__ import annotations

import pathlib

import pytest
from egom2p.core.modalities import load_modality_specs
from egom2p.core.testing import one_torch_thread, s3_server  # noqa: F401  (importing a fixture registers it)
from egom2p.data.synth import write_demo_dataset

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture
def repo_root() -> pathlib.Path:
    return REPO_ROOT


@pytest.fixture
def tiny():
    """The tiny modality specs (the modalities preset tiny)."""
    return load_modality_specs("tiny")


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> pathlib.Path:
    """The synthetic demo datasets: 48 training samples in shards of 16, 21 validation samples (read only)."""
    root = tmp_path_factory.mktemp("demo")
    write_demo_dataset(root, train_samples=48, val_samples=21, samples_per_shard=16, seed=3)
    return root

"""Fixtures for the cross-package tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the tests import e2e_helpers


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A small copy of the demo dataset (train and val splits of both datasets) in a temporary folder."""
    from egom2p.data.synth import write_demo_dataset

    root = tmp_path_factory.mktemp("synth") / "data"
    patterns = write_demo_dataset(root, train_samples=2048, val_samples=64, samples_per_shard=256, seed=0)
    return root, patterns



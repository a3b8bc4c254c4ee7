"""Fixtures for the cross-package tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from egom2p.core.testing import one_torch_thread, pytest_configure, s3_server  # noqa: F401  (importing registers them)

sys.path.insert(0, str(Path(__file__).parent))  # the tests import e2e_helpers


def pytest_collection_modifyitems(items) -> None:
    """Start the long tests first, the longest first (the rest keep their order).

    Under ``-n 2 --dist loadgroup --no-loadscope-reorder`` (the README's test command) this lets the two workers
    end together: a 10-minute demo that started last kept one worker busy long after the other had finished.
    """
    def expected_seconds(item) -> float:
        marker = item.get_closest_marker("long")
        return marker.kwargs.get("seconds", 60) if marker else 0

    items.sort(key=expected_seconds, reverse=True)  # a stable sort: equal keys keep the collection order


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A small copy of the demo dataset (train and val splits of both datasets) in a temporary folder."""
    from egom2p.data.synth import write_demo_dataset

    root = tmp_path_factory.mktemp("synth") / "data"
    # hand: synth_full's raw hand tracks too (root/raw/), the new-modality example's signal
    patterns = write_demo_dataset(root, train_samples=2048, val_samples=64, samples_per_shard=256, seed=0, hand=True)
    return root, patterns


@pytest.fixture(scope="session")
def demo_run(synth_root, tmp_path_factory) -> Path:
    """The CPU demo trained as the README runs it (the preset demo-cpu, 2,400 steps) on ``synth_root``: its
    run directory. Tests that use it share the xdist group "demo", so it trains once."""
    from e2e_helpers import run_trainer, write_data_config

    _, patterns = synth_root
    tmp = tmp_path_factory.mktemp("demo")
    out = tmp / "run"
    result = run_trainer(out, write_data_config(tmp / "data.yaml", patterns), "metrics.log_every_steps=100",
                         timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return out



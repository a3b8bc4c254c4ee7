"""Shared fixtures: a tiny synthetic demo dataset and its data config, written once per session."""

import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).parent))  # tests import their fakes module


def pytest_configure(config: pytest.Config) -> None:
    # The cross-package conftest starts these first; ci/isolation.sh leaves them to the whole-repo suite.
    config.addinivalue_line("markers", "long(seconds): a minutes-long test of behaviour, not of packaging")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tests share two cores (pytest -n 2): one torch thread each, or the two workers' thread pools thrash."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo_data_config(tmp_path_factory) -> Path:
    """A data config (like configs/data/demo.yaml) over a few hundred synthetic samples in a tmp dir."""
    from egom2p.data.synth import write_demo_dataset

    root = tmp_path_factory.mktemp("demo-data")
    patterns = write_demo_dataset(root / "data", train_samples=64, val_samples=16, samples_per_shard=16, seed=0)
    demo = yaml.safe_load((ROOT / "configs/data/demo.yaml").read_text())
    for split in ("train", "val"):
        for name, entry in demo[split]["datasets"].items():
            entry["data_path"] = str(patterns[f"{split}/{name}"])
            if "alphas_config" in entry:
                entry["alphas_config"] = str(ROOT / entry["alphas_config"])
    path = root / "demo.yaml"
    path.write_text(yaml.safe_dump(demo))
    return path

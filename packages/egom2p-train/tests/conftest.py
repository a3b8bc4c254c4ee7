"""Shared fixtures: a tiny synthetic demo dataset and its data config, written once per session."""

import sys
from pathlib import Path

import pytest
import torch
import yaml
from egom2p.core.presets import preset_file

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).parent))  # tests import their fakes module


def pytest_configure(config: pytest.Config) -> None:
    # Slow tests of behaviour (processes, kills, compiles), not of packaging: the whole-repo suite starts them first
    # (tests/conftest.py) and ci/isolation.sh leaves them to it.
    config.addinivalue_line("markers", "long(seconds): a slow test of behaviour, not of packaging")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tests share two cores (pytest -n 2): one torch thread each, or the two workers' thread pools thrash."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo_data_config(tmp_path_factory) -> Path:
    """A data config (like the shipped demo) over a few hundred synthetic samples in a tmp dir."""
    from egom2p.data.synth import write_demo_dataset

    root = tmp_path_factory.mktemp("demo-data")
    patterns = write_demo_dataset(root / "data", train_samples=64, val_samples=16, samples_per_shard=16, seed=0)
    demo = yaml.safe_load(Path(preset_file("data", "demo")).read_text())
    for split in ("train", "val"):
        for name, entry in demo[split]["datasets"].items():
            entry["data_path"] = str(patterns[f"{split}/{name}"])  # alphas_config: a preset name, found from anywhere
    path = root / "demo.yaml"
    path.write_text(yaml.safe_dump(demo))
    return path

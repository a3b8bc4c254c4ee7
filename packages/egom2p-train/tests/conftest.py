"""Shared fixtures: a tiny synthetic demo dataset and its data config, written once per session."""

import sys
from pathlib import Path

import pytest
import yaml
from egom2p.core.presets import preset_file
from egom2p.core.testing import one_torch_thread, pytest_configure  # noqa: F401  (importing registers them)

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).parent))  # tests import their fakes module


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

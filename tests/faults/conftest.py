"""Fixtures of the fault-injection suite: tiny shards, a tiny checkpoint and a runner for the console scripts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from egom2p.core.presets import preset_file

sys.path.insert(0, str(Path(__file__).parent))  # the tests import the scenario table and the helpers


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> dict[str, str]:
    """The demo dataset, small: ``"<split>/<dataset>" -> shard pattern`` (2 train shards, 1 val shard each)."""
    from egom2p.data.synth import write_demo_dataset

    root = tmp_path_factory.mktemp("fault-shards") / "data"
    return write_demo_dataset(root, train_samples=32, val_samples=8, samples_per_shard=16, seed=0)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny untrained model saved with ``save_pretrained`` (what every CLI opens)."""
    from egom2p.model import EgoM2P, EgoM2PConfig
    from helpers import TINY_MODALITIES

    path = tmp_path_factory.mktemp("fault-ckpt") / "tiny"
    cfg = EgoM2PConfig(dim=48, encoder_depth=1, decoder_depth=1, num_heads=4, mlp_ratio=4.0,
                       modalities=str(TINY_MODALITIES), attn_backend="sdpa")
    EgoM2P(cfg).save_pretrained(path)
    return path


@pytest.fixture
def data_config(shards, tmp_path) -> Path:
    """The shipped data config demo pointing at the session's shards."""
    demo = yaml.safe_load(Path(preset_file("data", "demo")).read_text())
    for split in ("train", "val"):
        for name, entry in demo[split]["datasets"].items():
            entry["data_path"] = shards[f"{split}/{name}"]  # alphas_config: a preset name, found from anywhere
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(demo))
    return path

"""A corrupted shard and an out-of-vocabulary token in the training data: the run completes and reports both."""

from __future__ import annotations

import pytest
from e2e_helpers import read_metrics, run_trainer, write_data_config

pytestmark = pytest.mark.xdist_group("trainer")


def test_training_survives_and_reports_bad_data(tmp_path):
    from egom2p.data.shards import write_shards
    from egom2p.data.synth import DATASETS, generate_samples

    arrays = generate_samples(256, seed=3)
    arrays["rgb"][5, 0, 0, 0] = 999  # tok_rgb's vocabulary is 256 in the modalities preset tiny
    folders = DATASETS["synth_full"]
    keys = [f"bad-{i:05d}" for i in range(256)]
    train = write_shards(tmp_path / "data/train", "synth_full", {f: arrays[f] for f in folders}, keys=keys, samples_per_shard=16)
    val = write_shards(tmp_path / "data/val", "synth_full", {f: arrays[f][:16] for f in folders}, samples_per_shard=16)
    broken = tmp_path / "data/train/cam/synth_full/shard-000003.tar"
    broken.write_bytes(broken.read_bytes()[:700])  # truncated mid-member, as an interrupted upload leaves it
    data_config = write_data_config(tmp_path / "data.yaml", {"train/synth_full": train, "val/synth_full": val},
                                    datasets=("synth_full",))

    out = tmp_path / "run"
    result = run_trainer(out, data_config, "schedule.max_steps=12", "loader.batch_size=16", "metrics.log_every_steps=4",
                         "model.dim=48", "model.encoder_depth=1", "model.decoder_depth=1")
    assert result.returncode == 0, result.stderr[-3000:]
    last = read_metrics(out)[-1]
    assert last["step"] == 12
    assert 0 < last["peak_memory_gib"] < 24  # CPU runs report the process peak RSS
    assert last["data/skipped_shards"] == 1, last  # counted once, however often resampling draws it
    assert last["data/skipped_samples"] >= 1, last
    # The log names the bad shard and the bad sample's key, so a user can find and fix them.
    assert "shard-000003.tar" in result.stderr
    assert "bad-00005" in result.stderr
    assert (out / "checkpoints" / "step-12" / "model.safetensors").is_file()

"""The demo training reading its shards from S3 (a real moto server on 127.0.0.1) instead of disk."""

from __future__ import annotations

import pytest
from e2e_helpers import read_metrics, run_trainer, write_data_config

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

pytestmark = pytest.mark.xdist_group("s3")


def test_training_streams_shards_from_s3(tmp_path, synth_root, s3_server):
    client = s3_server.client()
    client.create_bucket(Bucket="egom2p-demo")
    root, patterns = synth_root
    for path in sorted(root.rglob("*.tar")):
        client.upload_file(str(path), "egom2p-demo", f"tokens/{path.relative_to(root)}")
    s3_patterns = {k: v.replace(str(root), "s3://egom2p-demo/tokens") for k, v in patterns.items()}
    assert all(p.startswith("s3://") for p in s3_patterns.values())
    data_config = write_data_config(tmp_path / "data.yaml", s3_patterns)

    out = tmp_path / "run"
    result = run_trainer(out, data_config, "schedule.max_steps=6", "loader.batch_size=8", "metrics.log_every_steps=2",
                         "model.dim=48", "model.encoder_depth=1", "model.decoder_depth=1", env=s3_server.env)
    assert result.returncode == 0, result.stderr[-3000:]
    last = read_metrics(out)[-1]
    assert last["step"] == 6 and last["data/samples"] >= 48
    assert last["data/skipped_shards"] == 0
    assert (out / "checkpoints" / "step-6" / "model.safetensors").is_file()

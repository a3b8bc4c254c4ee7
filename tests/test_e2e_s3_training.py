"""The demo training reading its shards from S3 (a real moto server on 127.0.0.1) instead of disk."""

from __future__ import annotations

import socket

import pytest
from e2e_helpers import read_metrics, run_trainer, write_data_config

pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

pytestmark = pytest.mark.xdist_group("s3")


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on a free loopback port, with dummy credentials for boto3."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_training_streams_shards_from_s3(tmp_path, synth_root, s3_endpoint):
    import boto3

    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": s3_endpoint}
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="egom2p-demo")
    root, patterns = synth_root
    for path in sorted(root.rglob("*.tar")):
        client.upload_file(str(path), "egom2p-demo", f"tokens/{path.relative_to(root)}")
    s3_patterns = {k: v.replace(str(root), "s3://egom2p-demo/tokens") for k, v in patterns.items()}
    assert all(p.startswith("s3://") for p in s3_patterns.values())
    data_config = write_data_config(tmp_path / "data.yaml", s3_patterns)

    out = tmp_path / "run"
    result = run_trainer(out, data_config, "schedule.max_steps=6", "loader.batch_size=8", "metrics.log_every_steps=2",
                         "model.dim=48", "model.encoder_depth=1", "model.decoder_depth=1", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    last = read_metrics(out)[-1]
    assert last["step"] == 6 and last["data/samples"] >= 48
    assert last["data/skipped_shards"] == 0
    assert (out / "checkpoints" / "step-6" / "model.safetensors").is_file()

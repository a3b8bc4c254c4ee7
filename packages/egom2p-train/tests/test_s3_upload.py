"""Checkpoints are uploaded to ``s3_save_dir`` (against a local moto S3 server, no in-process mocking)."""

import socket

import pytest
import torch
from egom2p.model import EgoM2P
from egom2p.train.checkpoint import CHECKPOINT_FILES, CheckpointManager
from fakes import tiny_config

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")


@pytest.fixture
def s3_endpoint(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    yield endpoint
    server.stop()


@pytest.mark.xdist_group("s3")
def test_step_dir_is_uploaded_under_the_prefix(tmp_path, s3_endpoint):
    client = boto3.client("s3")
    client.create_bucket(Bucket="ckpts")
    mgr = CheckpointManager(tmp_path, keep_last_k=1, s3_save_dir="s3://ckpts/runs/a")
    model = EgoM2P(tiny_config())
    path = mgr.save(7, model.state_dict(), model.config, {"step": 7, "w": torch.ones(3)})
    for name in CHECKPOINT_FILES:
        body = client.get_object(Bucket="ckpts", Key=f"runs/a/step-7/{name}")["Body"].read()
        assert body == (path / name).read_bytes(), name


@pytest.mark.xdist_group("s3")
def test_failed_upload_is_logged_and_retried_at_the_next_save(tmp_path, s3_endpoint):
    client = boto3.client("s3")
    logs = []
    mgr = CheckpointManager(tmp_path, keep_last_k=3, s3_save_dir="s3://later/runs", log=logs.append)
    model = EgoM2P(tiny_config())
    mgr.save(1, model.state_dict(), model.config, {"step": 1})  # no bucket yet: logged, training goes on
    assert [p.name for p in mgr.pending_uploads] == ["step-1"]
    assert any("upload of" in line and "step-1" in line and "retried at the next save" in line for line in logs)
    client.create_bucket(Bucket="later")
    mgr.save(2, model.state_dict(), model.config, {"step": 2})
    assert mgr.pending_uploads == []
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="later")["Contents"]}
    assert {f"runs/step-{s}/{name}" for s in (1, 2) for name in CHECKPOINT_FILES} <= keys

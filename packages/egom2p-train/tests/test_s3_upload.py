"""Checkpoints are uploaded to ``s3_save_dir`` (against a local moto S3 server, no in-process mocking)."""

from collections.abc import Iterator

import pytest
import torch
from egom2p.core.testing import MotoS3Server, moto_s3_server
from egom2p.model import EgoM2P
from egom2p.train.checkpoint import CHECKPOINT_FILES, CheckpointManager
from fakes import tiny_config

pytest.importorskip("boto3")
pytest.importorskip("moto.server")


@pytest.fixture
def s3_server() -> Iterator[MotoS3Server]:
    """A server of its own (an empty store) for each test."""
    with moto_s3_server() as server:
        yield server


@pytest.mark.xdist_group("s3")
def test_step_dir_is_uploaded_under_the_prefix(tmp_path, s3_server):
    client = s3_server.client()
    client.create_bucket(Bucket="ckpts")
    mgr = CheckpointManager(tmp_path, keep_last_k=1, s3_save_dir="s3://ckpts/runs/a")
    model = EgoM2P(tiny_config())
    path = mgr.save(7, model.state_dict(), model.config, {"step": 7, "w": torch.ones(3)})
    for name in CHECKPOINT_FILES:
        body = client.get_object(Bucket="ckpts", Key=f"runs/a/step-7/{name}")["Body"].read()
        assert body == (path / name).read_bytes(), name


@pytest.mark.xdist_group("s3")
def test_failed_upload_is_logged_and_retried_at_the_next_save(tmp_path, s3_server):
    client = s3_server.client()
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

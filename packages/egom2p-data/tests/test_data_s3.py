"""S3 reads against a real (moto) S3 server on 127.0.0.1: shards stream through the loader."""

from __future__ import annotations

import socket

import numpy as np
import pytest

pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from botocore.exceptions import ClientError  # noqa: E402
from egom2p.core.modalities import load_modality_specs  # noqa: E402
from egom2p.core.shards import ShardError, read_tar_members  # noqa: E402
from egom2p.data import build_train_loader, load_data_config  # noqa: E402
from egom2p.core.s3 import _with_retries, open_s3, parse_s3_url  # noqa: E402
from egom2p.data.shards import open_url, write_shards  # noqa: E402

pytestmark = pytest.mark.xdist_group("s3")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    mp = pytest.MonkeyPatch()
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
        mp.setenv(key, value)
    yield f"http://127.0.0.1:{port}"
    server.stop()
    mp.undo()


@pytest.fixture(scope="module")
def bucket(s3_server, tmp_path_factory):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket="egom2p-test")
    root = tmp_path_factory.mktemp("s3src")
    rng = np.random.default_rng(0)
    write_shards(root, "toy", {"rgb": rng.integers(0, 64, (12, 2, 4, 4)), "cam": rng.integers(0, 64, (12, 8))}, samples_per_shard=4)
    for path in sorted(root.rglob("*.tar")):
        client.upload_file(str(path), "egom2p-test", f"tokens/{path.relative_to(root)}")
    return "s3://egom2p-test/tokens"


def test_loader_reads_shards_from_s3(bucket, repo_root):
    cfg = load_data_config({"train": {"datasets": {"toy": {
        "in_domains": "tok_rgb-tok_cam", "out_domains": "tok_rgb-tok_cam", "input_alphas": "1.0", "target_alphas": "1.0",
        "data_path": f"{bucket}/[rgb,cam]/toy/shard-{{000000..000002}}.tar",
        "wds_shuffle_buffer_tar": 0, "wds_shuffle_buffer_repeat": 0}},  # no read-ahead: exactly 24 samples read
        "num_input_tokens": 16, "num_target_tokens": 16}})
    specs = load_modality_specs(repo_root / "configs/modalities/tiny.yaml")
    loader = build_train_loader(cfg, specs, batch_size=4)
    it = iter(loader)
    batches = [next(it) for _ in range(6)]
    assert loader.stats["skipped_shards"] == 0 and loader.stats["samples"] == 24
    assert batches[0]["tok_rgb"]["tensor"].shape == (4, 32) and batches[0]["tok_cam"]["tensor"].max() < 64


def test_missing_object_names_bucket_and_key(bucket):
    with pytest.raises(FileNotFoundError, match="s3://egom2p-test/tokens/nope.tar"):
        open_s3(f"{bucket}/nope.tar")
    with pytest.raises(ShardError, match="nope.tar"):
        read_tar_members(f"{bucket}/nope.tar", open_url)
    with pytest.raises(FileNotFoundError, match="no-such-bucket"):
        open_s3("s3://no-such-bucket/x.tar")


def test_transient_errors_are_retried_then_raised():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")
        return "ok"

    assert _with_retries("s3://b/k", flaky, base_delay=0.001) == "ok" and len(calls) == 3

    def always_busy():
        raise ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")

    with pytest.raises(ClientError):
        _with_retries("s3://b/k", always_busy, attempts=2, base_delay=0.001)


def test_parse_s3_url():
    assert parse_s3_url("s3://bucket/a/b.tar") == ("bucket", "a/b.tar")
    with pytest.raises(ValueError, match="bucket and a key"):
        parse_s3_url("s3://bucket")

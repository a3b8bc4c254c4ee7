"""S3 reads against a real (moto) S3 server on 127.0.0.1: shards stream through the loader, outages are waited out."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from botocore.exceptions import ClientError  # noqa: E402
from egom2p.core.errors import ShardError  # noqa: E402
from egom2p.core.modalities import load_modality_specs  # noqa: E402
from egom2p.core.s3 import RETRY_ENV, exists_s3, open_s3, parse_s3_url, read_s3, retry_budget, with_retries  # noqa: E402
from egom2p.core.shards import open_url, read_tar_members  # noqa: E402
from egom2p.core.testing import MotoS3Server, moto_s3_server  # noqa: E402
from egom2p.data import build_train_loader, load_data_config  # noqa: E402
from egom2p.data.checks import inspect_shards  # noqa: E402
from egom2p.data.shards import write_shards  # noqa: E402

pytestmark = pytest.mark.xdist_group("s3")


def _upload_toy(server: MotoS3Server, bucket: str, root) -> str:
    client = server.client()
    client.create_bucket(Bucket=bucket)
    rng = np.random.default_rng(0)
    write_shards(root, "toy", {"rgb": rng.integers(0, 64, (12, 2, 4, 4)), "cam": rng.integers(0, 64, (12, 8))}, samples_per_shard=4)
    for path in sorted(root.rglob("*.tar")):
        client.upload_file(str(path), bucket, f"tokens/{path.relative_to(root)}")
    return f"s3://{bucket}/tokens"


@pytest.fixture(scope="module")
def bucket(s3_server, tmp_path_factory):
    return _upload_toy(s3_server, "egom2p-test", tmp_path_factory.mktemp("s3src"))


def test_loader_reads_shards_from_s3(bucket, repo_root):
    cfg = load_data_config({"train": {"datasets": {"toy": {
        "in_domains": "tok_rgb-tok_cam", "out_domains": "tok_rgb-tok_cam", "input_alphas": "1.0", "target_alphas": "1.0",
        "data_path": f"{bucket}/[rgb,cam]/toy/shard-{{000000..000002}}.tar",
        "wds_shuffle_buffer_tar": 0, "wds_shuffle_buffer_repeat": 0}},  # no read-ahead: exactly 24 samples read
        "num_input_tokens": 16, "num_target_tokens": 16}})
    specs = load_modality_specs("tiny")
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


def test_validate_reads_s3_and_names_missing_objects(bucket):
    report = inspect_shards(f"{bucket}/[rgb,cam]/toy/shard-{{000000..000002}}.tar")
    assert report.samples == 12 and report.problems == []
    with pytest.raises(FileNotFoundError, match=r"2 of 6 shard files .* missing: s3://egom2p-test/tokens/rgb/toy/shard-000003.tar and 1 more"):
        inspect_shards(f"{bucket}/[rgb,cam]/toy/shard-{{000001..000003}}.tar")
    assert exists_s3(f"{bucket}/rgb/toy/shard-000000.tar") and not exists_s3(f"{bucket}/rgb/toy/nope.tar")


def test_transient_errors_are_retried_for_the_time_budget():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")
        return "ok"

    assert with_retries("s3://b/k", flaky, retry_seconds=5, base_delay=0.001) == "ok" and len(calls) == 3

    def always_busy():
        raise ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")

    start = time.monotonic()
    with pytest.raises(OSError, match=f"s3://b/k: S3 still failing after .* {RETRY_ENV}"):
        with_retries("s3://b/k", always_busy, retry_seconds=0.3, base_delay=0.01)
    assert 0.3 <= time.monotonic() - start < 2


def test_retry_budget_setting(monkeypatch):
    monkeypatch.delenv(RETRY_ENV, raising=False)
    assert retry_budget() == 300 and retry_budget(2) == 2
    monkeypatch.setenv(RETRY_ENV, "45")
    assert retry_budget() == 45 and retry_budget(0) == 0
    monkeypatch.setenv(RETRY_ENV, "soon")
    with pytest.raises(ValueError, match=f"{RETRY_ENV}='soon'"):
        retry_budget()


def test_a_short_outage_is_waited_out(tmp_path, repo_root, caplog):
    """Issue 16: the S3 server goes down and comes back 2 s later; reads and the loader carry on, nothing is lost.
    With a budget shorter than the outage the read fails with a message naming the object and the setting."""
    with moto_s3_server() as server:
        prefix = _upload_toy(server, "egom2p-outage", tmp_path / "src")
        url = f"{prefix}/rgb/toy/shard-000000.tar"
        expected = read_s3(url)
        server.stop()
        with pytest.raises(OSError, match=f"s3://egom2p-outage/tokens/rgb/toy/shard-000000.tar: S3 still failing .*{RETRY_ENV}"):
            read_s3(url, retry_seconds=0.5)

        def restart_later():
            time.sleep(2.0)
            server.start()  # the same port: the environment still points at it

        thread = threading.Thread(target=restart_later)
        thread.start()
        cfg = load_data_config({"train": {"datasets": {"toy": {
            "in_domains": "tok_rgb-tok_cam", "out_domains": "tok_rgb-tok_cam", "input_alphas": "1.0", "target_alphas": "1.0",
            "data_path": f"{prefix}/[rgb,cam]/toy/shard-{{000000..000002}}.tar",
            "wds_shuffle_buffer_tar": 0, "wds_shuffle_buffer_repeat": 0}},
            "s3_retry_seconds": 60, "num_input_tokens": 16, "num_target_tokens": 16}})
        specs = load_modality_specs("tiny")
        loader = build_train_loader(cfg, specs, batch_size=4)
        it = iter(loader)
        with caplog.at_level(logging.WARNING, logger="egom2p.s3"):
            batches = [next(it) for _ in range(3)]  # read while the server is down, then back
        thread.join()
        assert any("transient S3 error on s3://egom2p-outage/" in r.getMessage() for r in caplog.records)
        assert loader.stats["skipped_shards"] == 0 and loader.stats["samples"] == 12 and len(batches) == 3
        assert read_s3(url) == expected


def test_parse_s3_url():
    assert parse_s3_url("s3://bucket/a/b.tar") == ("bucket", "a/b.tar")
    with pytest.raises(ValueError, match="bucket and a key"):
        parse_s3_url("s3://bucket")


def test_client_follows_the_credentials_of_the_environment(monkeypatch):
    """A process that changes its AWS settings gets a new client, not one cached with the old credentials."""
    from egom2p.core.s3 import s3_client

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    first = s3_client()
    assert s3_client() is first
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "second")
    second = s3_client()
    assert second is not first
    assert second._request_signer._credentials.access_key == "second"

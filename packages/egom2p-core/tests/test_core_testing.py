"""egom2p.core.testing: it imports with pytest alone, and its S3 server sets and restores the AWS settings."""

from __future__ import annotations

import importlib
import os
import sys

import egom2p.core.testing
import pytest
from egom2p.core.testing import moto_s3_server


def test_imports_without_torch_boto3_or_moto(monkeypatch):
    for name in ("torch", "boto3", "moto"):
        monkeypatch.setitem(sys.modules, name, None)  # None: importing it raises ImportError
    # Imported afresh; the original module is put back after (in sys.modules and as egom2p.core's attribute).
    monkeypatch.delitem(sys.modules, "egom2p.core.testing")
    monkeypatch.setattr(egom2p.core, "testing", egom2p.core.testing)
    assert importlib.import_module("egom2p.core.testing").s3_server is not None


def test_server_points_the_environment_at_itself_and_restores_it(monkeypatch):
    pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://elsewhere.invalid")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    with moto_s3_server() as server:
        assert os.environ["AWS_ENDPOINT_URL"] == server.endpoint == f"http://127.0.0.1:{server.port}"
        client = server.client()
        client.create_bucket(Bucket="egom2p-test")
        client.put_object(Bucket="egom2p-test", Key="k", Body=b"x")
        assert client.get_object(Bucket="egom2p-test", Key="k")["Body"].read() == b"x"
    assert os.environ["AWS_ENDPOINT_URL"] == "http://elsewhere.invalid" and "AWS_SESSION_TOKEN" not in os.environ

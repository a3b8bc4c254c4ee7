"""Pytest helpers for tests written against egom2p: the ``long`` marker, one torch thread per test process, and a
moto S3 server on the loopback interface.

Import the hook and the fixtures into a ``conftest.py`` (importing a fixture there registers it)::

    from egom2p.core.testing import one_torch_thread, pytest_configure, s3_server  # noqa: F401

Importing this module needs pytest only: torch is imported by ``one_torch_thread``, moto (``moto[server]``) and
boto3 by the S3 server, each when first used.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["LONG_MARKER", "MotoS3Server", "free_port", "moto_s3_server", "one_torch_thread", "pytest_configure",
           "s3_server"]

LONG_MARKER = "long(seconds): a slow test of behaviour (processes, kills, compiles), not of packaging; " \
              "`-m 'not long'` leaves them out"

# Dummy credentials: moto accepts any, and boto3 must not find a real account's.
_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}


def pytest_configure(config: pytest.Config) -> None:
    """Registers the ``long(seconds=...)`` marker (a pytest hook: import it into a conftest.py, or call it from one)."""
    config.addinivalue_line("markers", LONG_MARKER)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """Keeps torch on one thread: the tiny models of the tests only lose time when test workers share the cores."""
    import torch

    torch.set_num_threads(1)


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoS3Server:
    """A moto S3 server on ``127.0.0.1:port`` (a free port unless given) that can be stopped and started again on
    the same port; ``env`` holds the AWS settings (dummy credentials, ``AWS_ENDPOINT_URL``) that point boto3 at it."""

    def __init__(self, port: int | None = None) -> None:
        self.port = free_port() if port is None else port
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {**_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}
        self._server: Any = None

    def start(self) -> None:
        """Starts serving (in a thread of this process)."""
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port)
        self._server.start()

    def stop(self) -> None:
        """Stops serving (its buckets are lost); a stopped server stays stopped."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self) -> Any:
        """A boto3 S3 client of this server (a session of its own: the default one keeps the first credentials)."""
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=_CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


@contextlib.contextmanager
def moto_s3_server(port: int | None = None) -> Iterator[MotoS3Server]:
    """A started `MotoS3Server` with this process's environment set to its ``env``; on exit the server stops and
    the environment is restored."""
    server = MotoS3Server(port)
    server.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in server.env.items():
                mp.setenv(key, value)
            yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3_server() -> Iterator[MotoS3Server]:
    """`moto_s3_server` for the test module: one server (and empty store) per module that asks for it."""
    with moto_s3_server() as server:
        yield server

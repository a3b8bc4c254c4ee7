"""Streaming reads of ``s3://bucket/key`` objects through boto3: the one S3 client of egom2p (the
``[s3]`` extra of egom2p-core, egom2p-data and egom2p-generate brings boto3).

Credentials come from boto3's default chain; ``AWS_ENDPOINT_URL`` (read by boto3 itself) or
``EGOM2P_S3_ENDPOINT_URL`` points at another S3-compatible store. Transient errors (throttling, 5xx,
dropped connections) are retried with exponential backoff; a missing bucket or key raises
``FileNotFoundError`` naming it.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import random
import time
from collections.abc import Callable
from typing import IO, Any, TypeVar

from egom2p.core.cli import MissingExtraError

__all__ = ["parse_s3_url", "open_s3", "s3_client", "list_s3"]

logger = logging.getLogger("egom2p.s3")
T = TypeVar("T")

_TRANSIENT_CODES = {"Throttling", "ThrottlingException", "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "503", "500"}
_MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into ``(bucket, key)``."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"s3 URL needs a bucket and a key: {url!r}")
    return bucket, key


@functools.cache
def _client(pid: int, endpoint: str | None) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise MissingExtraError("s3:// paths need boto3: install the [s3] extra (pip install 'egom2p-data[s3]' or 'egom2p-generate[s3]')") from None
    config = Config(retries={"max_attempts": 5, "mode": "adaptive"}, connect_timeout=10, read_timeout=60)
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def s3_client() -> Any:
    """A boto3 S3 client for this process (clients are not shared across forked workers)."""
    return _client(os.getpid(), os.environ.get("EGOM2P_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL"))


def _classify(exc: BaseException) -> str:
    from botocore.exceptions import ClientError, ReadTimeoutError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _MISSING_CODES or status == "404":
            return "missing"
        if code in _TRANSIENT_CODES or status.startswith("5"):
            return "transient"
        return "fatal"
    if isinstance(exc, (BotoConnectionError, ReadTimeoutError, ConnectionError, TimeoutError)):
        return "transient"
    return "fatal"


def _with_retries(what: str, call: Callable[[], T], attempts: int = 5, base_delay: float = 0.2) -> T:
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:  # classified below; unknown errors propagate unchanged
            kind = _classify(exc)
            if kind == "missing":
                raise FileNotFoundError(f"data file not found: {what}") from None
            if kind != "transient" or attempt == attempts - 1:
                raise
            delay = base_delay * 2**attempt * (0.5 + random.random())
            logger.warning("transient S3 error on %s (attempt %d/%d), retrying in %.2fs: %s", what, attempt + 1, attempts, delay, exc)
            time.sleep(delay)
    raise AssertionError("unreachable")


class _BodyReader(io.RawIOBase):
    """A read-only file object over a botocore ``StreamingBody`` (streams, never holds the object)."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def open_s3(url: str) -> IO[bytes]:
    """Open ``s3://bucket/key`` as a buffered stream. The request is retried on transient errors; a
    connection dropped mid-stream surfaces as an ``OSError`` (the loader then skips that shard)."""
    bucket, key = parse_s3_url(url)
    response = _with_retries(f"s3://{bucket}/{key}", lambda: s3_client().get_object(Bucket=bucket, Key=key))
    return io.BufferedReader(_BodyReader(response["Body"]), buffer_size=1 << 20)


def list_s3(url_prefix: str) -> list[str]:
    """All object URLs under an ``s3://bucket/prefix`` (sorted)."""
    bucket, prefix = parse_s3_url(url_prefix)
    out: list[str] = []
    paginator = s3_client().get_paginator("list_objects_v2")
    for page in _with_retries(f"s3://{bucket}/{prefix}", lambda: list(paginator.paginate(Bucket=bucket, Prefix=prefix))):
        out.extend(f"s3://{bucket}/{obj['Key']}" for obj in page.get("Contents", []))
    return sorted(out)

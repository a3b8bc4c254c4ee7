"""Streaming reads of ``s3://bucket/key`` objects through boto3: the one S3 client of egom2p (the
``[s3]`` extra of egom2p-core, egom2p-data and egom2p-generate brings boto3).

Credentials come from boto3's default chain; ``AWS_ENDPOINT_URL`` (read by boto3 itself) or
``EGOM2P_S3_ENDPOINT_URL`` points at another S3-compatible store. Transient errors (throttling, 5xx,
refused or dropped connections) are retried with exponential backoff (0.5 s doubling to 30 s, jittered)
for a time budget: ``retry_seconds`` where a function takes it, else ``EGOM2P_S3_RETRY_SECONDS``, else
300 s, so a store that is down for a few minutes is waited out. Past the budget an ``OSError`` names the
object and the setting. A missing bucket or key raises ``FileNotFoundError`` naming it, at once.
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

from egom2p.core.errors import MissingExtraError

__all__ = ["DEFAULT_RETRY_SECONDS", "RETRY_ENV", "exists_s3", "list_s3", "open_s3", "parse_s3_url", "read_s3", "retry_budget",
           "s3_client", "with_retries"]

logger = logging.getLogger("egom2p.s3")
T = TypeVar("T")

_TRANSIENT_CODES = {"Throttling", "ThrottlingException", "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "503", "500"}
_MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_DENIED_CODES = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
RETRY_ENV = "EGOM2P_S3_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 300.0


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into ``(bucket, key)``."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"s3 URL needs a bucket and a key: {url!r}")
    return bucket, key


# The environment variables boto3 reads its endpoint-independent settings from: a client is made again when
# they change (a process that switches credentials, e.g. tests between a local S3 server and none).
_CLIENT_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONFIG_FILE",
               "AWS_SHARED_CREDENTIALS_FILE", "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED")


@functools.cache
def _client(pid: int, endpoint: str | None, env: tuple[str | None, ...]) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise MissingExtraError("s3:// paths need boto3: install the [s3] extra (pip install 'egom2p-data[s3]' or 'egom2p-generate[s3]')") from None
    # Few retries inside botocore: outages are waited out by with_retries, on its time budget.
    config = Config(retries={"max_attempts": 3, "mode": "adaptive"}, connect_timeout=10, read_timeout=60)
    # A session of its own: boto3's default session keeps the credentials it first resolved.
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def s3_client() -> Any:
    """A boto3 S3 client for this process (clients are not shared across forked workers)."""
    endpoint = os.environ.get("EGOM2P_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    return _client(os.getpid(), endpoint, tuple(os.environ.get(key) for key in _CLIENT_ENV))


def retry_budget(retry_seconds: float | None = None) -> float:
    """Seconds to keep retrying a transient S3 error: ``retry_seconds``, else ``$EGOM2P_S3_RETRY_SECONDS``, else 300."""
    if retry_seconds is None:
        text = os.environ.get(RETRY_ENV, "").strip()
        if not text:
            return DEFAULT_RETRY_SECONDS
        try:
            retry_seconds = float(text)
        except ValueError:
            raise ValueError(f"{RETRY_ENV}={text!r} is not a number of seconds") from None
    if not retry_seconds >= 0:
        raise ValueError(f"S3 retry time must be a number of seconds >= 0, got {retry_seconds!r}")
    return float(retry_seconds)


def _classify(exc: BaseException) -> str:
    """``missing``, ``denied``, ``transient``, ``fatal`` (another S3 error) or ``other`` (not an S3 error)."""
    if isinstance(exc, ImportError):  # boto3 missing (MissingExtraError): nothing to classify
        return "other"
    from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError, NoCredentialsError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _MISSING_CODES or status == "404":
            return "missing"
        if code in _DENIED_CODES or status == "403":
            return "denied"
        if code in _TRANSIENT_CODES or status.startswith("5"):
            return "transient"
        return "fatal"
    # Refused, reset or timed-out connections and bodies cut mid-stream (botocore wraps urllib3's errors).
    if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError, ConnectionError, TimeoutError)):
        return "transient"
    if isinstance(exc, NoCredentialsError):
        return "denied"
    return "fatal" if isinstance(exc, BotoCoreError) else "other"


def with_retries(what: str, call: Callable[[], T], retry_seconds: float | None = None, base_delay: float = 0.5,
                 max_delay: float = 30.0) -> T:
    """``call()``, retried on transient S3 errors with jittered exponential backoff for :func:`retry_budget` seconds.

    Errors are one line naming ``what``: a missing bucket or key is a ``FileNotFoundError``, refused access or
    missing credentials a ``PermissionError``, another S3 error or a transient one that outlasts the budget
    an ``OSError`` (the loader counts the shard as bad; the CLIs print the line). Non-S3 errors propagate.
    """
    budget = retry_budget(retry_seconds)
    start = time.monotonic()
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:  # classified below; unknown errors propagate unchanged
            kind = _classify(exc)
            if kind == "missing":
                raise FileNotFoundError(f"data file not found: {what}") from None
            if kind == "denied":
                raise PermissionError(f"{what}: access denied ({type(exc).__name__}: {exc}); check the AWS "
                                      "credentials (boto3's default chain) and the bucket policy") from exc
            if kind == "fatal":
                raise OSError(f"{what}: {type(exc).__name__}: {exc}") from exc
            if kind != "transient":
                raise
            waited = time.monotonic() - start
            if waited >= budget:
                raise OSError(f"{what}: S3 still failing after {waited:.0f}s of retries (wait longer with "
                              f"{RETRY_ENV}): {type(exc).__name__}: {exc}") from exc
            delay = min(max_delay, base_delay * 2**attempt) * (0.5 + random.random())
            delay = min(delay, budget - waited)
            attempt += 1
            logger.warning("transient S3 error on %s (attempt %d, %.0fs of %.0fs), retrying in %.2fs: %s",
                           what, attempt, waited, budget, delay, exc)
            time.sleep(delay)


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


def open_s3(url: str, retry_seconds: float | None = None) -> IO[bytes]:
    """Open ``s3://bucket/key`` as a buffered stream. The request is retried on transient errors (see
    :func:`with_retries`); a connection dropped mid-stream surfaces as an error of the read (use
    :func:`read_s3` to retry those too)."""
    bucket, key = parse_s3_url(url)
    response = with_retries(f"s3://{bucket}/{key}", lambda: s3_client().get_object(Bucket=bucket, Key=key), retry_seconds)
    return io.BufferedReader(_BodyReader(response["Body"]), buffer_size=1 << 20)


def read_s3(url: str, retry_seconds: float | None = None) -> bytes:
    """The whole object at ``s3://bucket/key``. The request and the download are retried together on
    transient errors, so a connection dropped mid-object is retried too (see :func:`with_retries`)."""
    bucket, key = parse_s3_url(url)

    def download() -> bytes:
        body = s3_client().get_object(Bucket=bucket, Key=key)["Body"]
        try:
            return body.read()
        finally:
            body.close()

    return with_retries(f"s3://{bucket}/{key}", download, retry_seconds)


def exists_s3(url: str, retry_seconds: float | None = None) -> bool:
    """Whether the object ``s3://bucket/key`` exists (a HEAD request, retried like :func:`with_retries`)."""
    bucket, key = parse_s3_url(url)
    try:
        with_retries(url, lambda: s3_client().head_object(Bucket=bucket, Key=key), retry_seconds)
    except FileNotFoundError:
        return False
    return True


def list_s3(url_prefix: str) -> list[str]:
    """All object URLs under an ``s3://bucket/prefix`` (sorted)."""
    bucket, prefix = parse_s3_url(url_prefix)
    out: list[str] = []
    paginator = s3_client().get_paginator("list_objects_v2")
    for page in with_retries(f"s3://{bucket}/{prefix}", lambda: list(paginator.paginate(Bucket=bucket, Prefix=prefix))):
        out.extend(f"s3://{bucket}/{obj['Key']}" for obj in page.get("Contents", []))
    return sorted(out)

"""TF32 matmuls on CUDA, as the original's evaluation scripts enable them.

The original's scripts: docs/original-behaviour.md#evaluation-scripts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

TF32_HELP = """TF32: on a CUDA device, matmuls and cuDNN run in TF32, as in the original's eval scripts
(torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True; on torch >= 2.9
the equivalent fp32_precision = "tf32" switches); --no-tf32 keeps full fp32. On CPU nothing changes."""


def tf32_switches() -> list[tuple[Any, str, Any]]:
    """`(object, attribute, TF32 value)` of each switch the original's `allow_tf32` flags stand for.

    On torch >= 2.9 these are the per-backend `fp32_precision` settings: reading the legacy
    `allow_tf32` flags there raises once anything has used the new API, so only the new one is used.
    """
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision"):
        return [(matmul, "fp32_precision", "tf32"), (cudnn.conv, "fp32_precision", "tf32"),
                (cudnn.rnn, "fp32_precision", "tf32")]  # fmt: skip
    return [(matmul, "allow_tf32", True), (cudnn, "allow_tf32", True)]


@contextmanager
def tf32_on_cuda(device: str | torch.device, enabled: bool = True) -> Iterator[bool]:
    """Allow TF32 in matmuls and cuDNN while the block runs, when `device` is a CUDA device.

    The original's eval scripts set the flags at import; here they are set for the run and the
    previous values restored afterwards. On CPU (or with `enabled=False`, or without CUDA) nothing is
    touched. Yields whether TF32 was enabled.
    """
    if not enabled or torch.device(device).type != "cuda" or not torch.cuda.is_available():
        yield False
        return
    switches = tf32_switches()
    previous = [getattr(owner, name) for owner, name, _ in switches]
    for owner, name, value in switches:
        setattr(owner, name, value)
    try:
        yield True
    finally:
        for (owner, name, _), value in zip(switches, previous):
            setattr(owner, name, value)

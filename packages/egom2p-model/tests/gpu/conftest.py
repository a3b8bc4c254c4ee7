"""GPU tests: the Triton kernels compiled for the CUDA device (never interpreted), in bf16 and fp16.

Run them alone on a CUDA machine: ``pytest -m gpu packages/egom2p-model/tests/gpu`` (``bench/gpu.sh``
does, first). Every test here carries the ``gpu`` marker; without CUDA, tests/conftest.py skips them
with the reason "no CUDA device". Under ``TRITON_INTERPRET`` they refuse to run (fail): the
interpreter corrupts bf16 and silently runs CUDA tensors on the host, so a pass would prove nothing.
``tests/kernels/conftest.py`` sets it for the interpreter tests, hence a session of their own.
"""

from __future__ import annotations

import os

import pytest
import torch

INTERPRETER_VALUES = ("1", "true", "on", "yes")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The GPU and the torch / Triton versions, at the top of every run's report."""
    if not torch.cuda.is_available():
        return ["gpu tests: no CUDA device (skipped)"]
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    return [f"gpu tests: {torch.cuda.get_device_name()}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
            f"triton {triton_version}"]  # fmt: skip


@pytest.fixture(autouse=True)
def _compiled_kernels_only() -> None:
    if os.environ.get("TRITON_INTERPRET", "0").lower() in INTERPRETER_VALUES:
        pytest.fail(
            "GPU tests refuse to run under TRITON_INTERPRET (the interpreter corrupts bf16 and runs CUDA tensors "
            "on the host). Run them in a session of their own: pytest -m gpu packages/egom2p-model/tests/gpu",
            pytrace=False,
        )

"""Keep the egom2p-model tests on one thread and seeded; `gpu` tests run only where CUDA is."""

from __future__ import annotations

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    # Slow tests of behaviour (processes, kills, compiles), not of packaging: the whole-repo suite starts them first
    # (tests/conftest.py) and ci/isolation.sh leaves them to it.
    config.addinivalue_line("markers", "long(seconds): a slow test of behaviour, not of packaging")
    config.addinivalue_line("markers", "gpu: needs a CUDA device (compiled kernels, sync-free step); run with `pytest -m gpu`")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    no_cuda = pytest.mark.skip(reason="gpu test: no CUDA device on this machine (bench/gpu.sh runs these on a GPU)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(no_cuda)


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)

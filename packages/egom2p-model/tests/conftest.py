"""Keep the egom2p-model tests on one thread and seeded; `gpu` tests run only where CUDA is."""

from __future__ import annotations

import pytest
import torch
from egom2p.core import testing
from egom2p.core.testing import one_torch_thread  # noqa: F401  (importing a fixture registers it)


def pytest_configure(config: pytest.Config) -> None:
    testing.pytest_configure(config)  # the long marker
    config.addinivalue_line("markers", "gpu: needs a CUDA device (compiled kernels, sync-free step); run with `pytest -m gpu`")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    no_cuda = pytest.mark.skip(reason="gpu test: no CUDA device on this machine (bench/gpu.sh runs these on a GPU)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(no_cuda)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)

"""Kernel tests run Triton in its CPU interpreter. The kernels are decorated with ``triton.jit`` on
first use, so setting the variable here (before any test calls them) is enough."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

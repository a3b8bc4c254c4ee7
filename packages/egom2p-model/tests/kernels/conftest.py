"""Kernel tests run Triton in its CPU interpreter. Triton reads ``TRITON_INTERPRET`` when it is
imported (its standard library is decorated then), so it is set here, process-wide, before any test
module imports it; GPU tests therefore run in a session of their own (``tests/gpu/conftest.py``)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

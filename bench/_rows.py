"""Result rows of the benchmark scripts (printed and appended to a JSON-lines file as each is measured), the timing
of one kernel-level step on the GPU, and the command-line tail every GPU benchmark shares."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import torch


def append_row(path: str | None, row: dict) -> dict:
    """Print the row and append it to the JSON-lines file at once (a timeout keeps what is done); returns the row."""
    print(json.dumps(row), flush=True)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
    return row


def time_step(step: Callable[[], object]) -> tuple[float, float]:
    """``(median ms, peak GiB above what was allocated before)`` of ``step`` on the GPU (triton's ``do_bench``).

    One call first, outside the timing, so compiling and autotuning are not measured.
    """
    from triton.testing import do_bench

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    ms = do_bench(step, return_mode="median")
    return ms, (torch.cuda.max_memory_allocated() - base) / 2**30


def run_gpu_bench(parser: argparse.ArgumentParser, argv: list[str] | None, dry_run: Callable[[], int],
                  bench: Callable[[argparse.Namespace], object], script: str) -> int:
    """Add ``--json`` and ``--dry-run`` to ``parser``, parse ``argv``, then the CPU dry run or, on a CUDA GPU, ``bench``."""
    parser.add_argument("--json", help="append each result row to this JSON-lines file as it is measured")
    parser.add_argument("--dry-run", action="store_true", help="tiny CPU shapes, correctness only")
    opts = parser.parse_args(argv)
    if opts.dry_run:
        return dry_run()
    if not torch.cuda.is_available():
        sys.exit(f"{script} needs a CUDA GPU (or --dry-run)")
    bench(opts)
    return 0

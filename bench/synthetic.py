"""Making synthetic camera windows (the tokenizer demo's data): the behaviour blend from its jumps against the FFT
convolution it replaced, in one run.

The baseline is the previous ``_blend``: the edge-padded targets convolved with the Hann window by FFT (kept here,
only as the baseline). Both give the same motion (checked: the max pose difference is printed and above 1e-8 the script exits 1); the row
is the wall time of ``synthetic_camera_windows(N, seed)`` with each blend, best of ``--repeats``.

usage (from the repository root):
  OMP_NUM_THREADS=1 python bench/synthetic.py [--windows 16384] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import numpy as np
from egom2p.tokenizers import synthetic


def fft_blend(targets: np.ndarray) -> np.ndarray:
    """The previous blend: ``np.convolve`` of the edge-padded targets with the window, by FFT."""
    width = int(synthetic._BLEND_S * synthetic._FINE_HZ)
    window = np.hanning(width + 2)[1:-1]
    window /= window.sum()
    padded = np.pad(targets, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
    size = 1 << int(np.ceil(np.log2(len(padded) + width - 1)))
    kernel = np.fft.rfft(window, size)
    out = np.empty_like(targets)
    for c in range(targets.shape[1]):
        out[:, c] = np.fft.irfft(np.fft.rfft(padded[:, c], size) * kernel, size)[width - 1:len(padded)]
    return out


def best_time(windows: int, repeats: int) -> tuple[float, np.ndarray]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = synthetic.synthetic_camera_windows(windows, seed=0)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    ours, windows = best_time(args.windows, args.repeats)
    with mock.patch.object(synthetic, "_blend", fft_blend):
        baseline, reference = best_time(args.windows, args.repeats)
    difference = float(np.abs(windows - reference).max())
    print(f"| synthetic_camera_windows({args.windows}) | {baseline:.1f} s | {ours:.1f} s ({baseline / ours:.2f}x) "
          f"| max pose difference {difference:.1e} |")
    return 0 if difference <= 1e-8 else 1


if __name__ == "__main__":
    raise SystemExit(main())

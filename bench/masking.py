"""Masking throughput on one core at the released configuration (docs/original-behaviour.md#masking).

4 modalities (tok_rgb / tok_depth 5120 tokens, tok_cam / tok_gaze 30), budgets 2048 / 2048, released alphas
[0.01, 0.1, 1, 10] with uniform sampling weights. Compares, in one run:
  * baseline: a literal restatement of the original's per-sample code (torch.distributions Dirichlet on
    float32 concentrations, argsort(rand(L)) per modality), from packages/egom2p-data/tests/data_reference_masking.py
  * ours, per sample: UnifiedMasking.__call__
  * ours, batched: UnifiedMasking.mask_batch (vectorised, no Python loop per sample)

usage: python bench/masking.py [--quick] [--batch-size 1024]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "packages/egom2p-data/tests"))

from data_reference_masking import reference_mask_sample  # noqa: E402
from egom2p.data.masking import UnifiedMasking  # noqa: E402

ALPHAS = [0.01, 0.1, 1.0, 10.0]
COUNTS = {"tok_cam": 30, "tok_depth": 5120, "tok_gaze": 30, "tok_rgb": 5120}


def rate(fn, samples_per_call: int, seconds: float) -> tuple[float, float]:
    """Samples per second of ``fn`` as (per CPU second of this process, per wall second).

    The machine is shared: CPU time (one thread) measures the throughput of one core, wall time what
    this run happened to get. Measured for at least ``seconds`` of CPU after one warm-up call.
    """
    fn()
    calls, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
    while True:
        fn()
        calls += 1
        cpu = time.process_time() - cpu0
        if cpu >= seconds:
            return calls * samples_per_call / cpu, calls * samples_per_call / (time.perf_counter() - wall0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (short timings, small batch)")
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seconds = 0.3 if args.quick else 3.0
    batch = 64 if args.quick else args.batch_size

    alphas = {n: ALPHAS for n in COUNTS}
    masking = UnifiedMasking(COUNTS, alphas, alphas, [1.0] * 4, (2048, 2048), (2048, 2048))
    sample = {n: torch.zeros(c, dtype=torch.int64) for n, c in COUNTS.items()}
    tensors = {n: torch.zeros(batch, c, dtype=torch.int64) for n, c in COUNTS.items()}
    table = torch.tensor([ALPHAS] * 4, dtype=torch.float32).T.contiguous()  # [K, M], float32 as the original
    weights = torch.ones(4)
    gen = torch.Generator().manual_seed(0)

    baseline = rate(lambda: reference_mask_sample(sample, table, table, weights, 2048, 2048), 1, seconds)
    per_sample = rate(lambda: masking(sample, gen), 1, seconds)
    batched = rate(lambda: masking.mask_batch(tensors, gen), batch, seconds)
    print(f"threads=1 batch_size={batch} quick={args.quick}   samples/s per CPU second (per wall second)")
    for label, (cpu, wall) in (("baseline (original-style, per sample)", baseline), ("ours, per sample", per_sample),
                               ("ours, batched", batched)):
        print(f"{label:40s} {cpu:9.0f} ({wall:9.0f})  {cpu / baseline[0]:6.2f}x baseline")


if __name__ == "__main__":
    main()

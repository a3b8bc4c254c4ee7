"""The benchmark scripts stay runnable: their CPU dry runs check each implementation against a reference."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from e2e_helpers import ROOT

SMOKE_RUNS = {
    "attention": ["bench/attention.py", "--dry-run"],  # triton (interpreter), sdpa, flex vs float64
    "loss": ["bench/loss.py", "--dry-run"],  # fused and unfused head + CE vs float64
    # egom2p-tiny training steps, static / trimmed / packed layouts: exits 1 unless their losses agree
    "train_step": ["bench/train_step.py", "--dry-run", "--compare", "--masking", "released"],
    "masking": ["bench/masking.py", "--quick"],  # per-sample and batched masking, released config
    # camera tokenizer encode / decode / train step, sdpa and the original's written-out attention, vs float64
    "tokenizers": ["bench/tokenizers.py", "--dry-run"],
    # synthetic camera windows with the blend from its jumps and with the FFT blend: the same poses
    "synthetic": ["bench/synthetic.py", "--windows", "64", "--repeats", "1"],
    # the Cosmos adapter's encode / decode throughput (the stand-in on the CPU)
    "cosmos": ["bench/cosmos.py", "--device", "cpu", "--clips", "2", "--repeats", "1"],
    # egom2p-tokenize prepare on a synthetic recording with the Cosmos stand-in, timed by stage
    "prepare": ["bench/prepare.py", "--recordings", "1", "--seconds", "2.5", "--size", "64", "80"],
    # gpu.sh's trainer step on the CPU: synth, 20 training steps, two checkpoints, egom2p-eval
    "gpu_trainer_check": ["bench/gpu_trainer_check.py", "--device", "cpu", "--steps", "20"],
}


@pytest.mark.parametrize("name", sorted(SMOKE_RUNS))
def test_benchmark_dry_run_passes(name):
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *SMOKE_RUNS[name]], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

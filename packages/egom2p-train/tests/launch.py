"""Launching ``python -m egom2p.train`` (alone or under torchrun) from tests, on a tiny model and tiny data.

Tiny model (dim 48, 1+1 blocks) and tiny budgets so that each run takes seconds on a shared CPU.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[3]
TINY = [
    "model=egom2p-tiny", f"modalities={ROOT / 'configs/modalities/tiny.yaml'}",
    "model_overrides.dim=48", "model_overrides.encoder_depth=1", "model_overrides.decoder_depth=1",
    "model_overrides.num_heads=4", "attn_backend=sdpa", "dtype=float32", "device=cpu", "num_workers=0",
    "batch_size=4", "num_input_tokens=24", "num_target_tokens=24", "epoch_size=32", "epochs=3",
    "warmup_epochs=1", "blr=1e-2", "clip_grad=1.0", "log_every_steps=1", "checkpoint_every_steps=3",
    "keep_last_k=2", "val_every_steps=1000", "log_wandb=false",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def command(out: Path, data_config: Path, *extra: str, nproc: int = 1) -> list[str]:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
                if nproc > 1 else [sys.executable])
    return [*launcher, "-m", "egom2p.train", *TINY, f"data_config={data_config}", f"output_dir={out}", *extra]


def run(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def logged_steps(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if '"loss"' in line]


def start_and_wait_for_step(cmd: list[str], out: Path, step: int, timeout: float = 180) -> subprocess.Popen:
    # A new session lets the test signal the launcher and every process it started, and only those.
    log = (out.parent / f"{out.name}.log").open("w")  # a file, not a pipe: a full pipe would block the run
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT, start_new_session=True)
    proc.log_path = Path(log.name)
    deadline = time.monotonic() + timeout
    while max(logged_steps(out), default=0) < step:
        if proc.poll() is not None:
            raise AssertionError(f"run ended early with {proc.returncode}: {proc.log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"run did not reach step {step} in time")
        time.sleep(0.05)
    return proc


def final_weights(out: Path) -> dict:
    return load_file(out / "final" / "model.safetensors")

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
    "model.preset=egom2p-tiny", "model.modalities=tiny", "model.dim=48",
    "model.encoder_depth=1", "model.decoder_depth=1", "model.num_heads=4", "model.attn_backend=sdpa",
    "dtype=float32", "device=cpu", "loader.num_workers=0", "loader.batch_size=4", "loader.pack_rows=2", "loader.pack_multiple=32", "data.train.num_input_tokens=24",
    "data.train.num_target_tokens=24", "schedule.epoch_size=32", "schedule.epochs=3", "schedule.warmup_epochs=1",
    "optim.blr=1e-2", "optim.clip_grad=1.0", "metrics.log_every_steps=1", "checkpoint.every_steps=3",
    "checkpoint.keep_last_k=2", "metrics.val_every_steps=1000", "metrics.log_wandb=false",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def train_command(nproc: int = 1) -> list[str]:
    """``python -m egom2p.train``, under torchrun (gloo on CPU) when ``nproc > 1``."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
                if nproc > 1 else [sys.executable])
    return [*launcher, "-m", "egom2p.train"]


def command(out: Path, data_config: Path, *extra: str, nproc: int = 1) -> list[str]:
    # data= first: the TINY budgets then override keys of the data config it includes
    return [*train_command(nproc), f"data={data_config}", *TINY, f"output_dir={out}", *extra]


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


def step_dirs(out: Path) -> list[str]:
    """Names in ``out/checkpoints`` (step directories and anything else), sorted."""
    return sorted(p.name for p in (out / "checkpoints").iterdir())


def final_weights(out: Path, step: int) -> dict:
    """The weights of the run's last step directory (the end of a run is its last checkpoint)."""
    return load_file(out / "checkpoints" / f"step-{step}" / "model.safetensors")

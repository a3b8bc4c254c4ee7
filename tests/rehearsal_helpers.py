"""Helpers for the released-recipe rehearsal: the released 8-dataset shard layout on a local S3 server, the
size-only overrides of the released configs, and two-node torchrun launches on localhost."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from egom2p.core.testing import MotoS3Server, free_port
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TRAIN_CONFIG = ROOT / "configs/train/egom2p-b-released.yaml"
DATA_CONFIG = ROOT / "configs/data/egom2p-released.yaml"
PLACEHOLDER = "s3://YOUR-BUCKET"
MOD_FOLDERS = {"tok_rgb": "rgb", "tok_depth": "depth", "tok_gaze": "gaze", "tok_cam": "cam"}


def released_layout() -> tuple[dict[str, str], dict[str, str]]:
    """The released data config's train ``data_path`` (shard patterns) and val ``data_root`` (root folders) per
    dataset, as shipped (placeholder bucket)."""
    cfg = yaml.safe_load(DATA_CONFIG.read_text())
    train = {name: entry["data_path"] for name, entry in cfg["train"]["datasets"].items()}
    val = {name: entry["data_root"] for name, entry in cfg["val"]["datasets"].items()}
    return train, val


def shard_count(pattern: str) -> int:
    """How many shards a ``shard-{000000..0000NN}.tar`` pattern names."""
    lo, hi = re.search(r"\{(\d+)\.\.(\d+)\}", pattern).groups()
    return int(hi) - int(lo) + 1


def write_released_shards(local: Path, samples_per_shard: int = 2, val_samples: int = 8) -> dict[str, str]:
    """Synthetic tiny-modality shards at every path the released data config names, under ``local``.

    Each training dataset gets exactly the shard range and modality folders of its released ``data_path``
    (``<folder>/<dataset>/token/shard-*.tar``), so only the bucket changes between this and a real run. Each
    val dataset gets one shard in the same layout below ``val/`` (the released val root). Returns
    ``dataset -> val shard pattern`` relative to ``local``.
    """
    from egom2p.data.shards import write_shards
    from egom2p.data.synth import generate_samples

    train, val = released_layout()
    val_patterns = {}
    for index, (name, pattern) in enumerate(train.items()):
        folders = re.search(r"/\[([a-z,]+)\]/", pattern).group(1).split(",")
        count = shard_count(pattern) * samples_per_shard
        arrays = generate_samples(count, seed=index)
        written = write_shards(local, name, {f: arrays[f] for f in folders}, samples_per_shard=samples_per_shard,
                               subdir="token", keys=[f"{name}-{i:07d}" for i in range(count)])
        assert written.endswith(pattern.split("/token/")[1]), (written, pattern)
        if name in val:
            arrays = generate_samples(val_samples, seed=100 + index)
            written = write_shards(local / "val", name, {f: arrays[f] for f in folders}, samples_per_shard=val_samples,
                                   subdir="token", keys=[f"{name}-val-{i:07d}" for i in range(val_samples)])
            val_patterns[name] = str(Path(written).relative_to(local))
    return val_patterns


def upload(server: MotoS3Server, bucket: str, local: Path) -> None:
    """Upload every tar below ``local`` to ``s3://bucket/<relative path>`` on ``server``."""
    client = server.client()
    client.create_bucket(Bucket=bucket)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: client.upload_file(str(p), bucket, str(p.relative_to(local))), local.rglob("*.tar")))


def size_overrides(bucket: str, out: Path, max_steps: int) -> list[str]:
    """Only sizes and the bucket: a tiny model, tiny budgets and buffers, global batch 4, 4 steps per epoch.

    The schedule is 4 epochs (16 steps); ``max_steps`` stops earlier without changing it (a prefix of the run).
    """
    train, val = released_layout()
    paths = [f"data.train.datasets.{n}.data_path={p.replace(PLACEHOLDER, f's3://{bucket}')}" for n, p in train.items()]
    paths += [f"data.val.datasets.{n}.data_root={p.replace(PLACEHOLDER, f's3://{bucket}')}" for n, p in val.items()]
    buffers = [f"data.train.datasets.{n}.{k}=8" for n in train
               for k in ("wds_shuffle_buffer_tar", "wds_shuffle_buffer_repeat")]
    return [
        f"output_dir={out}", "dtype=float32", "device=cpu",
        "model.preset=egom2p-tiny", "model.modalities=tiny", "model.dim=48",
        "model.encoder_depth=1", "model.decoder_depth=1", "model.num_heads=4", "model.attn_backend=sdpa",
        "data.train.num_input_tokens=24", "data.train.num_target_tokens=24", *paths, *buffers,
        "loader.batch_size=2", "loader.num_workers=2", "loader.pack_rows=2", "loader.pack_multiple=32",
        "schedule.global_batch_size=4", "schedule.epoch_size=16", f"schedule.max_steps={max_steps}",
        "schedule.total_tokens=0", "schedule.epochs=4", "schedule.warmup_tokens=0", "schedule.warmup_epochs=1",
        "metrics.log_every_steps=1", "metrics.log_wandb=false",
    ]


def env(server: MotoS3Server) -> dict[str, str]:
    """The environment of every launched process: the local S3 server, one thread, no wandb."""
    return {**os.environ, **server.env, "EGOM2P_S3_ENDPOINT_URL": server.endpoint,
            "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def agent_command(overrides: list[str], nnodes: int, port: int, rdzv_id: str) -> list[str]:
    """One torchrun agent (one process) of an ``nnodes``-node c10d job running the released train config."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}", "--nproc_per_node=1",
            "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id={rdzv_id}", "--max-restarts=0",
            "-m", "egom2p.train", "--config", str(TRAIN_CONFIG), *overrides]


def start_agents(overrides: list[str], log_dir: Path, tag: str, server: MotoS3Server,
                 nnodes: int = 2) -> list[subprocess.Popen]:
    """Start ``nnodes`` agents, each in its own session (so the test signals exactly what it started)."""
    port = free_port()
    procs = []
    for node in range(nnodes):
        log = (log_dir / f"{tag}-node{node}.log").open("w")  # a file: a full pipe would block the run
        proc = subprocess.Popen(agent_command(overrides, nnodes, port, f"{tag}-{port}"), stdout=log,
                                stderr=subprocess.STDOUT, env=env(server), cwd=ROOT, start_new_session=True)
        proc.log_path = Path(log.name)
        procs.append(proc)
    return procs


def logs(procs: list[subprocess.Popen]) -> str:
    """The agents' logs, concatenated."""
    return "\n".join(p.log_path.read_text() for p in procs)


def wait_all(procs: list[subprocess.Popen], timeout: float = 120, expect_success: bool = True) -> None:
    """Wait for every agent to exit (kill the rest and fail on a timeout); with ``expect_success``, exit 0.

    A SIGTERM'd torchrun agent exits non-zero by design (it re-raises the signal after its workers
    stopped), so a preempted run passes ``expect_success=False`` and checks what the trainers wrote."""
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        kill(procs, signal.SIGKILL)
        raise AssertionError(f"agents timed out:\n{logs(procs)[-4000:]}") from None
    if expect_success:
        assert all(p.returncode == 0 for p in procs), f"{[p.returncode for p in procs]}\n{logs(procs)[-4000:]}"


def kill(procs: list[subprocess.Popen], sig: int) -> None:
    """Send ``sig`` to each agent's process group (the agent and its workers)."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, sig)


def read_metrics(out: Path) -> list[dict]:
    """The run's metrics.jsonl as a list of dicts."""
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_step(procs: list[subprocess.Popen], out: Path, step: int, timeout: float = 120) -> None:
    """Poll metrics.jsonl until a training step >= ``step`` is logged."""
    deadline = time.monotonic() + timeout
    while max((m["step"] for m in read_metrics(out) if "loss" in m), default=0) < step:
        if any(p.poll() is not None for p in procs):
            kill(procs, signal.SIGKILL)
            raise AssertionError(f"an agent ended early: {[p.poll() for p in procs]}\n{logs(procs)[-4000:]}")
        if time.monotonic() > deadline:
            kill(procs, signal.SIGKILL)
            raise AssertionError(f"no step {step} in time\n{logs(procs)[-4000:]}")
        time.sleep(0.05)


def step_numbers(out: Path) -> list[int]:
    """The complete step directories of a run, ascending."""
    return sorted(int(p.name.removeprefix("step-")) for p in (out / "checkpoints").glob("step-*") if "." not in p.name)


def weights(out: Path, step: int) -> dict:
    """model.safetensors of ``out``'s step directory ``step``."""
    return load_file(out / "checkpoints" / f"step-{step}" / "model.safetensors")

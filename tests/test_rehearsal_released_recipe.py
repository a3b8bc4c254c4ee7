"""The released recipe as a researcher runs it, at toy size (issue 12): the released train and data configs with
only size overrides and the bucket, on the released 8-dataset shard layout in a local S3 server; two torchrun
nodes on localhost (c10d) with 2 loader workers; SIGTERM and relaunch (bit-identical to an uninterrupted run);
continue on one process; egom2p-eval on the last step directory; an init_from fine-tuning run.

Preemption is SIGTERM to the torchrun agents (what SLURM and a cluster scheduler send): torchrun forwards it
to each trainer's whole process group, loader workers included; the workers ignore it and the trainer writes
its checkpoint. Validation reads the released val roots (``s3://BUCKET/val``) in the training layout.
"""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
import torch
from egom2p.core.testing import MotoS3Server
from rehearsal_helpers import (
    BIN,
    ROOT,
    TRAIN_CONFIG,
    env,
    kill,
    logs,
    read_metrics,
    size_overrides,
    start_agents,
    step_numbers,
    upload,
    wait_all,
    wait_for_step,
    weights,
    write_released_shards,
)

pytestmark = [pytest.mark.xdist_group("s3"), pytest.mark.long(seconds=95)]

BUCKET = "rehearsal"


def run_one_process(args: list[str], server: MotoS3Server, tool: str = "egom2p-train") -> subprocess.CompletedProcess:
    """A single-process command (the 1-GPU launch) that must succeed."""
    proc = subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, env=env(server), cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Both state dicts hold the same keys and bit-identical tensors."""
    assert a.keys() == b.keys()
    for key in a:
        assert torch_equal(a[key], b[key]), key


def torch_equal(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Same dtype, shape and every element equal."""
    # bit-identical, not allclose: an exact resume replays the same batches in the same order
    return x.dtype == y.dtype and x.shape == y.shape and bool((x == y).all())


def test_released_recipe_rehearsal(tmp_path, s3_server):
    local = tmp_path / "bucket"
    val_patterns = write_released_shards(local)
    upload(s3_server, BUCKET, local)
    val_on_s3 = {name: f"s3://{BUCKET}/{pattern}" for name, pattern in val_patterns.items()}

    # An uninterrupted two-node run: 3 of the schedule's 4 epochs (max_steps keeps the schedule).
    ref = tmp_path / "ref"
    ref.mkdir()
    agents = start_agents(size_overrides(BUCKET, ref, max_steps=12), tmp_path, "ref", s3_server)
    wait_all(agents)
    text = logs(agents)
    assert "world size 2" in text and "global batch 4 (accum_iter 1)" in text, text[-3000:]
    assert step_numbers(ref) == [4, 8, 12]
    # Validation follows each epoch's checkpoint and never stops training, whatever it finds.
    val_rows = [m for m in read_metrics(ref) if any(k.startswith("val/") for k in m)]
    assert sorted({m["step"] for m in val_rows}) == [4, 8, 12], read_metrics(ref)
    assert all(m.get("val/failures", 0) == 0 for m in val_rows), val_rows  # the released val roots, on S3

    # The same command preempted (SIGTERM to both torchrun agents), then relaunched unchanged.
    out = tmp_path / "preempted"
    out.mkdir()
    command = size_overrides(BUCKET, out, max_steps=12)
    agents = start_agents(command, tmp_path, "term", s3_server)
    wait_for_step(agents, out, 3)
    kill(agents, signal.SIGTERM)
    wait_all(agents, timeout=60, expect_success=False)
    text = logs(agents)
    assert "stop requested (SIGTERM)" in text, text[-3000:]
    stopped = step_numbers(out)[-1]
    assert 3 <= stopped < 12, step_numbers(out)
    agents = start_agents(command, tmp_path, "resume", s3_server)
    wait_all(agents)
    assert f"at step {stopped}" in logs(agents), logs(agents)[-3000:]
    assert step_numbers(out)[-1] == 12
    assert_same_weights(weights(ref, 12), weights(out, 12))

    # Continue on one process: same global batch and schedule (accum_iter 2), validation on the S3 val roots.
    one = run_one_process(["--config", str(TRAIN_CONFIG), *size_overrides(BUCKET, out, max_steps=16)], s3_server)
    assert "at step 12" in one.stdout and "now 1 (accum_iter 2): same global batch 4 and schedule" in one.stdout, \
        one.stdout[-3000:]
    assert step_numbers(out)[-1] == 16
    last_val = [m for m in read_metrics(out) if m["step"] == 16 and any(k.startswith("val/") for k in m)]
    assert last_val and all(f"val/{name}/loss" in last_val[-1] for name in val_on_s3), last_val
    assert last_val[-1].get("val/failures", 0) == 0, last_val

    # The last step directory drives egom2p-eval on S3 shards ...
    last = out / "checkpoints" / "step-16"
    results = tmp_path / "eval.json"
    run_one_process(["--checkpoint", str(last), "--data", val_on_s3["holoassist"], "--task", "rgb2depth",
                     "--max-samples", "4", "--device", "cpu", "--out", str(results)], s3_server, tool="egom2p-eval")
    assert "rgb2depth" in json.dumps(json.loads(results.read_text()))

    # ... and an init_from fine-tuning run: its weights, a fresh step, optimizer and schedule.
    tuned = tmp_path / "finetune"
    ft = run_one_process(["--config", str(TRAIN_CONFIG), *size_overrides(BUCKET, tuned, max_steps=2),
                          f"checkpoint.init_from={last}"], s3_server)
    assert f"initialised weights from {last}" in ft.stdout and "resumed from" not in ft.stdout, ft.stdout[-3000:]
    assert [m["step"] for m in read_metrics(tuned) if "loss" in m] == [1, 2]
    source, after = weights(out, 16), weights(tuned, 2)
    # Two warmup steps at lr ~1e-6 move no weight by more than 1e-4; a fresh init differs by ~0.02.
    assert all(float((after[k] - source[k]).abs().max()) < 1e-4 for k in source)
    assert any(not torch_equal(after[k], source[k]) for k in source)

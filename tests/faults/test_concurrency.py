"""Concurrency scenarios: real trainer processes sharing, re-taking and losing one output_dir."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from helpers import ENV, ROOT, TINY, assert_user_error, scenario

LOCK = ".egom2p-run.lock"


def trainer_command(data_config: Path, out: Path, *overrides: str) -> list[str]:
    """The tiny egom2p-train command writing to ``out``."""
    return [str(Path(sys.executable).parent / "egom2p-train"), f"data={data_config}", *TINY, f"output_dir={out}",
            *overrides]


def start(cmd: list[str], log: Path, **env: str) -> subprocess.Popen:
    """Start a trainer in its own session (so that a kill reaches only it), its output into ``log``."""
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**ENV, **env}, cwd=ROOT,
                            start_new_session=True)


def start_first(tmp_path: Path, data_config: Path, slurm_job: str) -> tuple[Path, Path, list[str], subprocess.Popen]:
    """The first trainer of a two-trainer scenario, as SLURM job ``slurm_job``: its output_dir, log, command, process."""
    out, log = tmp_path / "run", tmp_path / "first.log"
    cmd = trainer_command(data_config, out)
    return out, log, cmd, start(cmd, log, SLURM_JOB_ID=slurm_job)


def wait_for(condition, proc: subprocess.Popen, log: Path, what: str, seconds: float = 180) -> None:
    """Poll ``condition()`` while ``proc`` runs; fail with its log if it ends first or time runs out."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, f"the trainer ended before {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} in time"
        time.sleep(0.02)


def holder(out: Path) -> dict | None:
    """The holder record of ``out``'s lock file once it is written (read from another process: no lock lost)."""
    try:
        return json.loads((out / LOCK).read_text())
    except (FileNotFoundError, ValueError):
        return None


def logged_steps(out: Path) -> list[int]:
    """The steps of the training lines of ``out/metrics.jsonl``."""
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


@scenario("lock-second-trainer")
def test_second_trainer_on_one_output_dir_refuses(tmp_path, data_config):
    out, log, cmd, first = start_first(tmp_path, data_config, "1001")
    try:
        wait_for(lambda: holder(out) is not None, first, log, "lock file")
        # Paused while it holds the lock, so that it is surely still running when the second one starts.
        os.kill(first.pid, signal.SIGSTOP)
        record = holder(out)
        before = sorted(p.name for p in out.rglob("*"))
        second = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert_user_error(second, out, f"pid {first.pid} on host {socket.gethostname()}",
                          f"started {record['started']}", "SLURM job 1001")
        assert sorted(p.name for p in out.rglob("*")) == before and holder(out) == record  # nothing touched
        os.kill(first.pid, signal.SIGCONT)
        assert first.wait(timeout=180) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert "done at step 16" in log.read_text() and logged_steps(out) == list(range(1, 17))
    assert not (out / LOCK).exists()  # released at exit


@scenario("lock-stale-requeue")
def test_kill_9_then_requeue_takes_over_the_stale_lock(tmp_path, data_config):
    out, log, cmd, first = start_first(tmp_path, data_config, "2002")
    try:
        wait_for(lambda: (out / "checkpoints" / "step-2" / "model.safetensors").exists(), first, log, "checkpoint")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    record = holder(out)
    assert record is not None and record["pid"] == first.pid  # the dead trainer's lock file stays behind
    requeued = subprocess.run(cmd, env={**ENV, "SLURM_JOB_ID": "2002"}, cwd=ROOT, capture_output=True, text=True,
                              timeout=240)
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    took_over = [line for line in requeued.stdout.splitlines() if line.startswith("took over the lock")]
    assert took_over == [f"took over the lock of pid {first.pid} on host {socket.gethostname()} (started "
                         f"{record['started']}, SLURM job 2002) on {out}: that process is gone (its lock was "
                         "released when it ended)"], requeued.stdout[-3000:]
    assert "resumed from" in requeued.stdout and "done at step 16" in requeued.stdout
    assert logged_steps(out)[-1] == 16 and not (out / LOCK).exists()


@scenario("output-dir-deleted-mid-run")
def test_output_dir_deleted_mid_run_stops_without_recreating_it(tmp_path, data_config):
    out, log = tmp_path / "run", tmp_path / "train.log"
    # Long enough never to end by itself; no checkpoint is due, so none is being written when the folder goes.
    trainer = start(trainer_command(data_config, out, "schedule.epochs=200", "checkpoint.every_steps=100000"), log)
    try:
        wait_for(lambda: (out / "metrics.jsonl").is_file() and logged_steps(out), trainer, log, "metrics line")
        os.rename(out, tmp_path / "trash")  # what `rm -rf` does first, in one step: the path is gone
        shutil.rmtree(tmp_path / "trash")
        code = trainer.wait(timeout=120)
    finally:
        if trainer.poll() is None:
            os.killpg(trainer.pid, signal.SIGKILL)
    output = log.read_text()
    proc = subprocess.CompletedProcess(trainer.args, code, stdout="", stderr=output)
    assert_user_error(proc, f"output_dir {out} disappeared while training")
    assert not out.exists(), "the trainer recreated the deleted output_dir"

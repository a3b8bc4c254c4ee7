"""The run-directory lock: taken, refused while another process holds it, taken over from a dead holder, released,
taken by global rank 0 only, and the run stopped when its directory goes away."""

import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import datetime

import pytest
import torch
from egom2p.train.config import ConfigError
from egom2p.train.distributed import DistInfo
from egom2p.train.run_lock import LOCK_NAME, RunLock, hold_run_directory

# Another trainer: takes the lock of argv[1], says so, releases it when a line arrives on stdin.
HOLDER = """
import sys
from egom2p.train.run_lock import RunLock
lock = RunLock.acquire(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
lock.release()
"""


def start_holder(directory, **env):
    """A child process holding the lock of ``directory`` (with ``env`` added to its environment)."""
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
    assert child.stdout.readline().strip() == "locked"
    return child


def test_acquire_records_the_holder_and_release_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    before = datetime.now().astimezone().replace(microsecond=0)
    logs = []
    lock = RunLock.acquire(tmp_path / "run", log=logs.append)
    # Reading the file opens and closes it, which ends a POSIX lock of this process: nothing is checked after it.
    record = json.loads((tmp_path / "run" / LOCK_NAME).read_text())
    started = datetime.fromisoformat(record.pop("started"))
    assert record == {"host": socket.gethostname(), "pid": os.getpid(), "SLURM_JOB_ID": "4242"}
    assert before <= started <= datetime.now().astimezone() and started.tzinfo is not None
    assert logs == []  # a fresh directory: nothing taken over
    lock.release()
    lock.release()  # idempotent
    assert not (tmp_path / "run").exists()  # the lock had created it and nothing else was written


def test_release_keeps_a_directory_that_holds_the_run(tmp_path):
    (tmp_path / "run").mkdir()
    first = RunLock.acquire(tmp_path / "run")
    (tmp_path / "run" / "metrics.jsonl").write_text("{}\n")
    first.release()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["metrics.jsonl"]
    logs = []
    RunLock.acquire(tmp_path / "run", log=logs.append).release()
    assert logs == []  # a cleanly released lock is gone, not stale


def test_a_live_holder_refuses_and_a_dead_one_is_taken_over(tmp_path):
    run = tmp_path / "run"
    holder = start_holder(run, SLURM_JOB_ID="777", TORCHELASTIC_RUN_ID="rdzv-9")
    try:
        record = json.loads((run / LOCK_NAME).read_text())
        with pytest.raises(ConfigError) as refused:
            RunLock.acquire(run)
        message = str(refused.value)
        assert refused.value.key == "output_dir" and "\n" not in message
        for part in (f"{run} is in use", f"pid {holder.pid} on host {socket.gethostname()}",
                     f"started {record['started']}", "SLURM job 777", "torchelastic run rdzv-9"):
            assert part in message, message
        assert json.loads((run / LOCK_NAME).read_text()) == record  # the refused one changed nothing
    finally:
        holder.kill()  # kill -9: no release, the lock file stays; the kernel drops the lock
        holder.wait()
    assert (run / LOCK_NAME).exists()
    logs = []
    lock = RunLock.acquire(run, log=logs.append)
    try:
        assert len(logs) == 1 and logs[0].startswith(f"took over the lock of pid {holder.pid} on host "), logs
        assert f"started {record['started']}, SLURM job 777" in logs[0] and "that process is gone" in logs[0]
    finally:
        lock.release()


def test_a_cleanly_released_holder_leaves_no_stale_lock(tmp_path):
    holder = start_holder(tmp_path)
    holder.communicate("release\n", timeout=30)
    assert holder.returncode == 0 and not (tmp_path / LOCK_NAME).exists()
    logs = []
    RunLock.acquire(tmp_path, log=logs.append).release()
    assert logs == []


def test_one_process_cannot_hold_a_directory_twice(tmp_path):
    lock = RunLock.acquire(tmp_path / "run")
    (tmp_path / "alias").symlink_to(tmp_path / "run")  # another spelling of the same directory
    try:
        with pytest.raises(ConfigError, match="already held by this process"):
            RunLock.acquire(tmp_path / "alias")
        lock.check()  # the refused second attempt did not end the first lock
    finally:
        lock.release()


def test_a_directory_that_cannot_be_made_is_one_line_naming_it(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError, match=f"cannot create {tmp_path / 'file' / 'run'}") as err:
        RunLock.acquire(tmp_path / "file" / "run")
    assert err.value.key == "output_dir"


def test_only_global_rank_0_takes_the_lock(tmp_path):
    cpu = torch.device("cpu")
    # Rank 1 (e.g. the second node's first process, local rank 0): no lock, nothing written.
    with hold_run_directory(tmp_path / "run", DistInfo(rank=1, world_size=2, local_rank=0, device=cpu)) as lock:
        assert lock is None and not (tmp_path / "run").exists()
    with hold_run_directory(tmp_path / "run", DistInfo(rank=0, world_size=1, local_rank=0, device=cpu)) as lock:
        assert isinstance(lock, RunLock) and (tmp_path / "run" / LOCK_NAME).exists()
        (tmp_path / "run" / "config.yaml").write_text("seed: 0\n")
    assert not (tmp_path / "run" / LOCK_NAME).exists()  # released when the block ended


def test_the_lock_is_released_when_the_run_raises(tmp_path):
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    with pytest.raises(RuntimeError, match="boom"), hold_run_directory(tmp_path, info):
        raise RuntimeError("boom")
    assert not (tmp_path / LOCK_NAME).exists()
    with hold_run_directory(tmp_path, info) as lock:
        assert lock is not None


def test_check_stops_when_the_directory_disappears_is_replaced_or_loses_its_lock(tmp_path):
    run = tmp_path / "run"
    lock = RunLock.acquire(run)
    try:
        lock.check()
        os.rename(run, tmp_path / "moved")  # `mv` or the first, atomic half of `rm -rf`
        with pytest.raises(FileNotFoundError, match=f"output_dir {run} disappeared while training"):
            lock.check()
        assert not run.exists()  # nothing recreated
        run.mkdir()  # someone made a new, empty folder at the same path
        with pytest.raises(FileNotFoundError, match=f"output_dir {run} was replaced by another directory"):
            lock.check()
        run.rmdir()
        os.rename(tmp_path / "moved", run)
        lock.check()  # the same directory is back
        os.unlink(run / LOCK_NAME)  # a hand-deleted lock: a second trainer could now start here
        with pytest.raises(FileNotFoundError, match=f"the run lock {run / LOCK_NAME} was removed or replaced"):
            lock.check()
    finally:
        lock.release()
    shutil.rmtree(run, ignore_errors=True)


def test_check_stops_when_the_directory_is_no_longer_writable(tmp_path, monkeypatch):
    import egom2p.train.run_lock as run_lock

    lock = RunLock.acquire(tmp_path / "run")
    os.chmod(tmp_path / "run", 0o500)
    real_access = os.access
    if os.geteuid() == 0:  # root may write anywhere: the OS's answer for an unprivileged user stands in
        monkeypatch.setattr(run_lock.os, "access", lambda path, mode, **kw: (
            mode != os.W_OK or os.stat(path).st_mode & 0o200 != 0) and real_access(path, mode, **kw))
    try:
        with pytest.raises(PermissionError, match=f"output_dir {tmp_path / 'run'} is no longer writable"):
            lock.check()
    finally:
        os.chmod(tmp_path / "run", 0o700)
        lock.release()


def test_print_config_and_dry_run_take_no_lock(tmp_path, capsys):
    from egom2p.train.cli import main

    demo = "demo-cpu"
    held = RunLock.acquire(tmp_path / "held")  # a second lock in this process would be refused: exit 2
    try:
        for flag in ("--print-config", "--dry-run"):
            assert main(["--config", demo, flag, f"output_dir={tmp_path / 'held'}"]) == 0
            assert main(["--config", demo, flag, f"output_dir={tmp_path / 'fresh'}"]) == 0
        held.check()
    finally:
        held.release()
    assert not (tmp_path / "fresh").exists()

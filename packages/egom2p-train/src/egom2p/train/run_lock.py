"""One trainer per run directory: the lock file ``output_dir/.egom2p-run.lock``.

Global rank 0 opens the lock file and holds an exclusive POSIX record lock on it (``fcntl.lockf``: the kind
NFS and Lustre pass on to their lock servers) for the whole run; the file names the holder (host, pid, start
time, SLURM job and torchelastic run when there are ones). A second trainer finds the lock held and refuses,
naming that holder. The kernel (or the NFS lock server) drops the lock when its process dies, however it dies,
so a lock file without a held lock is stale: a requeued job takes it over and says whose it was. A clean end
removes the file before letting go of the lock.

While the run goes on, :meth:`RunLock.check` (called before checkpoints and metrics are written) stops it with
one line when ``output_dir`` was deleted, replaced or made read-only, instead of writing into a recreated one.

POSIX locks belong to the process, and closing *any* descriptor of the file releases them: nothing else in the
process may open the lock file while it is held, and a second lock of the same directory in one process is
refused outright (it would otherwise succeed, then drop the first one when closed).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from egom2p.train import distributed as D
from egom2p.train.config import ConfigError

LOCK_NAME = ".egom2p-run.lock"
_HOLDER_ENV = {"SLURM_JOB_ID": "SLURM job", "TORCHELASTIC_RUN_ID": "torchelastic run"}
_HELD: set[tuple[int, int]] = set()  # (st_dev, st_ino) of the run directories this process holds
_MAX_HOLDER_BYTES = 4096  # a holder record is one short JSON line; more than this is not ours


def holder_record() -> dict[str, Any]:
    """What this process writes into the lock file: host, pid, start time (ISO, local), job ids when set."""
    record: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(),
                              "started": datetime.now().astimezone().isoformat(timespec="seconds")}
    record.update({name: os.environ[name] for name in _HOLDER_ENV if os.environ.get(name)})
    return record


def describe_holder(record: dict[str, Any] | None) -> str:
    """``pid 123 on host x (started 2025-01-01T10:00:00+01:00, SLURM job 42)``, or what is known of it."""
    if not record:
        return "a trainer that has not written its details (the lock file is empty or unreadable)"
    extra = [f"started {record.get('started', '?')}"]
    extra += [f"{label} {record[name]}" for name, label in _HOLDER_ENV.items() if record.get(name)]
    return f"pid {record.get('pid', '?')} on host {record.get('host', '?')} ({', '.join(extra)})"


def _read_holder(fd: int) -> dict[str, Any] | None:
    """The holder record in the open lock file, or None when it is empty or not one of ours."""
    try:
        record = json.loads(os.pread(fd, _MAX_HOLDER_BYTES, 0).decode())
    except (OSError, ValueError):  # empty, cut short by a crash between create and write, or foreign
        return None
    return record if isinstance(record, dict) else None


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a released lock file is unlinked, a new one made)."""
    try:
        st, here = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)


class RunLock:
    """The held lock of one run directory; get one with :meth:`acquire`, end it with :meth:`release`."""

    def __init__(self, directory: Path, fd: int, identity: tuple[int, int], created: bool):
        self.directory = directory
        self.path = directory / LOCK_NAME
        self._fd: int | None = fd
        self._identity = identity  # (st_dev, st_ino) of the directory when locked
        self._created = created  # the directory is removed again at release if nothing else was written to it

    @classmethod
    def acquire(cls, output_dir: str | Path, log: Callable[[str], None] = print) -> RunLock:
        """Create ``output_dir`` if needed and lock it for this process.

        Raises ``ConfigError`` (key ``output_dir``, one line) when another trainer holds it (naming that holder)
        or when the directory or its lock cannot be made. A lock file left by a process that is gone is taken
        over, and ``log`` says whose it was.
        """
        directory = Path(output_dir)
        try:
            created = not directory.is_dir()
            directory.mkdir(parents=True, exist_ok=True)
            st = os.stat(directory)
        except OSError as err:
            raise ConfigError(f"config key 'output_dir': cannot create {directory}: {err.strerror or err}",
                              "output_dir") from None
        if (st.st_dev, st.st_ino) in _HELD:
            raise ConfigError(f"config key 'output_dir': {directory} is already held by this process "
                              f"(pid {os.getpid()}): one trainer per output_dir", "output_dir")
        path = directory / LOCK_NAME
        for _ in range(3):  # a holder releasing between our open and our lock unlinks the file we opened
            fd = cls._open_and_lock(path, directory)
            if _same_file(fd, path):
                break
            os.close(fd)
        else:
            raise ConfigError(f"config key 'output_dir': the lock file {path} keeps being replaced by another "
                              "process", "output_dir")
        stale = _read_holder(fd)
        if stale is not None or os.fstat(fd).st_size:
            log(f"took over the lock of {describe_holder(stale)} on {directory}: that process is gone "
                "(its lock was released when it ended)")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder_record()).encode() + b"\n", 0)
            os.fsync(fd)
        except OSError as err:
            os.close(fd)
            raise ConfigError(f"config key 'output_dir': cannot write the lock file {path}: {err.strerror or err}",
                              "output_dir") from None
        lock = cls(directory, fd, (st.st_dev, st.st_ino), created)
        _HELD.add(lock._identity)
        return lock

    @staticmethod
    def _open_and_lock(path: Path, directory: Path) -> int:
        """Open (or create) the lock file and take its lock without waiting; ``ConfigError`` when that fails."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ConfigError(f"config key 'output_dir': cannot open the lock file {path}: {err.strerror or err}",
                              "output_dir") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_holder(fd)
            os.close(fd)
            if err.errno in (errno.EACCES, errno.EAGAIN):
                raise ConfigError(f"config key 'output_dir': {directory} is in use by another trainer: "
                                  f"{describe_holder(holder)}; lock file {path}. Wait for it to end, stop it, or "
                                  "choose another output_dir", "output_dir") from None
            raise ConfigError(f"config key 'output_dir': cannot lock {path}: {err.strerror or err} (the run lock "
                              "needs a filesystem with POSIX locks: NFS or Lustre mounted with locking)",
                              "output_dir") from None
        return fd

    def check(self) -> None:
        """Raise a one-line ``OSError`` naming the path if the run directory or its lock is no longer ours.

        ``FileNotFoundError`` when ``output_dir`` disappeared, was replaced by another directory or lost its lock
        file; ``PermissionError`` when it is no longer writable. Nothing is recreated.
        """
        try:
            st = os.stat(self.directory)
        except FileNotFoundError:
            raise FileNotFoundError(f"output_dir {self.directory} disappeared while training; stopping (nothing "
                                    "is recreated)") from None
        if (st.st_dev, st.st_ino) != self._identity:
            raise FileNotFoundError(f"output_dir {self.directory} was replaced by another directory while "
                                    "training; stopping (nothing is written into it)")
        if self._fd is None or not _same_file(self._fd, self.path):
            raise FileNotFoundError(f"the run lock {self.path} was removed or replaced while training (another "
                                    f"trainer could take output_dir {self.directory}); stopping")
        if not os.access(self.directory, os.W_OK):
            raise PermissionError(f"output_dir {self.directory} is no longer writable; stopping")

    def release(self) -> None:
        """Remove the lock file (if it is still ours), then let go of the lock; idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _HELD.discard(self._identity)
        try:
            if _same_file(fd, self.path):  # unlinked while held: no one can lock this inode after us
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            if self._created:  # a run refused before writing anything leaves no empty folder behind
                with contextlib.suppress(OSError):
                    os.rmdir(self.directory)
        finally:
            os.close(fd)


@contextlib.contextmanager
def hold_run_directory(output_dir: str | Path, info: D.DistInfo,
                       log: Callable[[str], None] = print) -> Iterator[RunLock | None]:
    """Collective: global rank 0 holds the lock of ``output_dir`` inside the block; the other ranks hold none.

    The other ranks share the directory by design (rank 0 alone writes to it). When rank 0 cannot take the
    lock, every rank raises the same ``ConfigError``. The lock is released when the block ends, however it ends.
    """
    lock, problem = None, None
    if info.is_main:
        try:
            lock = RunLock.acquire(output_dir, log)
        except ConfigError as err:
            problem = str(err)
    problem = D.broadcast_object(problem)
    if problem is not None:
        raise ConfigError(problem, "output_dir")
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()

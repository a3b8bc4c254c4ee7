"""Disk space: checked before a checkpoint is written, and "disk full" said in those words when a write runs out
(a full filesystem, a quota, or the process's file size limit)."""

from __future__ import annotations

import errno
import resource
import shutil
import signal
from collections import namedtuple

import numpy as np
import pytest
import torch
from egom2p.core import disk_space
from egom2p.core.checkpoints import read_checkpoint_dir, write_checkpoint_dir
from egom2p.core.disk_space import (
    disk_full_errors,
    out_of_space_reason,
    require_free_space,
    tensor_bytes,
)
from egom2p.core.errors import DiskFullError

Usage = namedtuple("Usage", "total used free")


def test_tensor_bytes_counts_every_tensor_in_nested_state():
    state = {"model": {"w": torch.zeros(3, 4), "h": torch.zeros(8, dtype=torch.bfloat16)},
             "optimizer": {"state": {0: {"exp_avg": torch.zeros(10, dtype=torch.float64), "step": torch.tensor(3.0)}}},
             "rng": [np.zeros(5, dtype=np.uint32), (torch.zeros(2, dtype=torch.uint8), 7)], "step": 4, "name": "x"}
    assert tensor_bytes(state) == 3 * 4 * 4 + 8 * 2 + 10 * 8 + 4 + 5 * 4 + 2


@pytest.mark.parametrize("free, needed", [(0, 1), (2**30, 2**30), (5 * 2**20, 4 * 2**20 + 1), (3 * 2**30, 3 * 2**30)])
def test_too_little_free_space_is_refused_naming_the_path(tmp_path, monkeypatch, free, needed):
    measured = []
    monkeypatch.setattr(shutil, "disk_usage", lambda path: measured.append(path) or Usage(10 * 2**30, 0, free))
    target = tmp_path / "run" / "checkpoints" / "step-4"  # not created yet: its nearest parent is measured
    with pytest.raises(DiskFullError, match=r"^disk full: .*step-4: the weights needs about [\d.]+ [GM]iB, [\d.]+ [GM]iB free$"):
        require_free_space(target, needed, "the weights")
    require_free_space(target, free - disk_space.HEADROOM, "the weights")  # exactly enough, headroom included
    assert measured == [tmp_path, tmp_path]


def test_write_checkpoint_dir_checks_space_before_writing(tmp_path, monkeypatch):
    state = {"w": torch.zeros(1024, 1024)}  # 4 MiB
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(2**30, 0, 4 * 2**20))
    with pytest.raises(DiskFullError, match=r"disk full: .*ckpt: the weights needs about 5\.0 MiB, 4\.0 MiB free") as err:
        write_checkpoint_dir(tmp_path / "ckpt", state, {"dim": 1})
    assert err.value.errno == errno.ENOSPC and not (tmp_path / "ckpt").exists()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(2**30, 0, 5 * 2**20))
    write_checkpoint_dir(tmp_path / "ckpt", state, {"dim": 1})
    assert torch.equal(read_checkpoint_dir(tmp_path / "ckpt")[0]["w"], state["w"])


def test_out_of_space_is_recognised_however_a_library_reports_it():
    assert out_of_space_reason(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
    assert out_of_space_reason(OSError(errno.EDQUOT, "quota")) == "Disk quota exceeded"
    try:  # torch writing to a Python file: a RuntimeError whose context is the OSError
        try:
            raise OSError(errno.EFBIG, "File too large")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904
    except RuntimeError as wrapped:
        assert out_of_space_reason(wrapped) == "File too large"
    rust = Exception("Error while serializing: I/O error: No space left on device (os error 28)")
    assert out_of_space_reason(rust) == "No space left on device"
    for other in (OSError(errno.ENOENT, "gone"), Exception("I/O error: not found (os error 2)"), ValueError("x")):
        assert out_of_space_reason(other) is None


def test_disk_full_errors_translates_and_passes_others(tmp_path):
    with pytest.raises(DiskFullError) as err, disk_full_errors(tmp_path / "x"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(err.value) == f"disk full: {tmp_path / 'x'}: No space left on device"
    assert err.value.path == tmp_path / "x" and err.value.reason == "No space left on device"
    with pytest.raises(FileNotFoundError), disk_full_errors(tmp_path):
        raise FileNotFoundError("missing")
    inner = DiskFullError(tmp_path / "inner", "File too large")
    with pytest.raises(DiskFullError) as err, disk_full_errors(tmp_path / "outer"):
        raise inner
    assert err.value is inner


@pytest.mark.parametrize("limit", [64 * 1024, 300 * 1024])
def test_a_file_size_limit_hit_while_writing_says_disk_full(tmp_path, limit):
    # ulimit -f: the write gets EFBIG (SIGXFSZ ignored). Lowered and restored in this process only.
    state = {"a": torch.zeros(100 * 1024), "b": torch.ones(50 * 1024)}  # 600 KiB of weights
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(DiskFullError) as err:
            write_checkpoint_dir(tmp_path / "ckpt", state, {"dim": 1})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert str(err.value) == f"disk full: {tmp_path / 'ckpt'}: File too large"
    assert list((tmp_path / "ckpt").iterdir()) == []  # the temporary file was removed

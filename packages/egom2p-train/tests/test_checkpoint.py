"""Atomic checkpoints: temp files never count as checkpoints, only the newest K are kept."""

import torch
from egom2p.train.checkpoint import TEMP_PREFIX, CheckpointManager, atomic_torch_save


def test_save_lists_and_loads_latest(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last_k=2)
    for step in (5, 10, 15):
        mgr.save(step, {"step": step, "w": torch.full((2,), float(step))})
    assert [s for s, _ in mgr.list()] == [10, 15]  # keep-last-K pruned step 5
    path, state = mgr.load_latest()
    assert path.name == "step-000000015.pt" and state["step"] == 15 and state["w"].tolist() == [15.0, 15.0]


def test_partial_temp_file_is_ignored_and_cleaned(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last_k=3)
    mgr.save(4, {"step": 4})
    # What a process killed in the middle of writing step 8 leaves behind.
    torn = mgr.dir / f"{TEMP_PREFIX}step-000000008.pt.abc123"
    torn.write_bytes(b"PK\x03\x04 half a zip")
    assert [s for s, _ in mgr.list()] == [4]
    assert mgr.load_latest()[1]["step"] == 4
    mgr.save(8, {"step": 8})
    assert not torn.exists()


def test_unreadable_newest_falls_back_to_older(tmp_path, capsys):
    mgr = CheckpointManager(tmp_path, keep_last_k=3)
    mgr.save(1, {"step": 1})
    (mgr.dir / "step-000000002.pt").write_bytes(b"garbage")
    path, state = mgr.load_latest()
    assert state["step"] == 1
    assert "skipping unreadable checkpoint" in capsys.readouterr().err


def test_failed_write_leaves_no_file(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    target = tmp_path / "ckpt.pt"
    try:
        atomic_torch_save({"x": Unpicklable()}, target)
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []


def test_empty_directory_has_no_checkpoint(tmp_path):
    assert CheckpointManager(tmp_path).load_latest() is None

"""Checkpoints are verified before they are believed, written only where there is room, and a run that ends
without its final checkpoint says so; values that make training meaningless are refused at start-up."""

from __future__ import annotations

import json
import resource
import shutil
import signal
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from egom2p.core.checkpoints import INTEGRITY_NAME, verify_checkpoint_dir
from egom2p.core.errors import DiskFullError
from egom2p.train.checkpoint import CheckpointManager
from egom2p.train.config import ConfigError, load_config
from egom2p.train.faults import NonFiniteStepError
from fakes import FakeLoader
from test_trainer_loop import SigtermLoader, make_cfg
from test_trainer_resume import trainer_for

ROOT = Path(__file__).resolve().parents[3]
CONFIG = {"kind": "cam", "dim": 4}


def _weights(n: int) -> dict[str, torch.Tensor]:
    return {"w": torch.arange(n, dtype=torch.float32), "b": torch.ones(3)}


def _state(step: int, n: int) -> dict:
    return {"step": step, "optimizer": {"state": {0: {"exp_avg": torch.full((n,), float(step))}}}, "rng": [1, 2]}


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - 3] ^= 0x10  # in the last tensor's bytes
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("n", [5, 4096])
def test_every_step_directory_is_recorded_and_verified(tmp_path, n):
    manager = CheckpointManager(tmp_path, keep_last_k=3, log=lambda _m: None)
    path = manager.save(2, _weights(n), CONFIG, _state(2, n))
    files = json.loads((path / INTEGRITY_NAME).read_text())["files"]
    assert sorted(files) == ["config.json", "model.safetensors", "train_state.pt"]
    assert files["model.safetensors"]["tensors"] == {"b": {"dtype": "float32", "shape": [3]},
                                                     "w": {"dtype": "float32", "shape": [n]}}
    assert verify_checkpoint_dir(path)
    weights, state = manager.load(path)
    assert torch.equal(weights["w"], _weights(n)["w"]) and state["step"] == 2


@pytest.mark.parametrize("damaged", ["model.safetensors", "train_state.pt", "config.json"])
def test_resume_falls_back_from_a_damaged_newest_step_naming_the_file(tmp_path, capsys, damaged):
    manager = CheckpointManager(tmp_path, keep_last_k=3, log=lambda _m: None)
    for step in (2, 4):
        manager.save(step, _weights(64), CONFIG, _state(step, 64))
    _flip_a_byte(manager.dir / "step-4" / damaged)
    path, weights, state = manager.load_latest()
    assert path == manager.dir / "step-2" and state["step"] == 2
    warning = capsys.readouterr().err.strip()
    assert warning.startswith(f"warning: skipping unreadable checkpoint {manager.dir / 'step-4'}: "
                              f"{manager.dir / 'step-4' / damaged}: content differs from integrity.json")
    assert "\n" not in warning


def test_a_checkpoint_without_manifest_still_resumes(tmp_path):
    manager = CheckpointManager(tmp_path, log=lambda _m: None)
    path = manager.save(2, _weights(8), CONFIG, _state(2, 8))
    (path / INTEGRITY_NAME).unlink()  # a run written before manifests existed
    _flip_a_byte(path / "model.safetensors")  # unnoticed without a manifest: nothing to compare with
    assert manager.load_latest()[0] == path


Usage = namedtuple("Usage", "total used free")


def test_too_little_disk_space_writes_nothing_and_names_the_step(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path, log=lambda _m: None)
    manager.save(2, _weights(1024), CONFIG, _state(2, 1024))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(2**30, 0, 2**20))  # < 1 MiB headroom + 8 KiB
    with pytest.raises(DiskFullError, match=r"^disk full: .*step-4: the checkpoint of step 4 needs about 1\.0 MiB, "
                                            r"1\.0 MiB free; not written; the older checkpoints are intact"):
        manager.save(4, _weights(1024), CONFIG, _state(4, 1024))
    assert [s for s, _ in manager.list()] == [2] and sorted(p.name for p in manager.dir.iterdir()) == ["step-2"]


def test_a_file_size_limit_hit_mid_checkpoint_says_disk_full_and_keeps_the_older_one(tmp_path):
    manager = CheckpointManager(tmp_path, log=lambda _m: None)
    older = manager.save(2, _weights(16384), CONFIG, _state(2, 16384))
    weights_size = (older / "model.safetensors").stat().st_size
    state_size = (older / "train_state.pt").stat().st_size
    assert weights_size < state_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so that the write gets EFBIG (ulimit -f)
    # The weights fit, train_state.pt (torch.save) does not: the torch writer's failure is recognised too.
    resource.setrlimit(resource.RLIMIT_FSIZE, ((weights_size + state_size) // 2, hard))
    try:
        with pytest.raises(DiskFullError) as err:
            manager.save(4, _weights(16384), CONFIG, _state(4, 16384))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert str(err.value) == (f"disk full: {manager.dir / 'step-4'}: File too large; not written; the older "
                              "checkpoints are intact: make room and rerun the same command to resume")
    assert sorted(p.name for p in manager.dir.iterdir()) == ["step-2"] and verify_checkpoint_dir(older)


def test_a_run_that_ends_inside_a_nan_streak_is_not_done(tmp_path):
    # Steps 5 and 6 (batches 4, 5) are non-finite and step 6 is the last: its checkpoint cannot be written.
    trainer, logs = trainer_for(make_cfg(tmp_path, max_steps=6, every_steps=2, pack=False),
                                FakeLoader(poison_steps={4, 5}))
    with pytest.raises(NonFiniteStepError) as err:
        trainer.fit()
    assert str(err.value) == (
        "the run ended at step 6 inside 2 non-finite steps in a row, so its final checkpoint was not written; the "
        f"newest checkpoint is {trainer.checkpoints.dir / 'step-4'}: rerun the same command to resume from it (with a "
        "lower optim.blr, or optim.clip_grad set, if the loss diverges again)")
    assert [s for s, _ in trainer.checkpoints.list()] == [2, 4]
    assert "checkpoint of step 6 postponed: 2 non-finite steps in a row" in logs


def test_a_stop_inside_a_nan_streak_is_not_a_clean_stop(tmp_path):
    preempted_in_a_streak = SigtermLoader(at=5)  # SIGTERM while producing batch 5 (step 6), which is non-finite
    preempted_in_a_streak.poison_steps = {5}
    trainer, _ = trainer_for(make_cfg(tmp_path, max_steps=12, every_steps=4, pack=False), preempted_in_a_streak)
    with pytest.raises(NonFiniteStepError, match=r"^stop requested \(SIGTERM\) at step 6 inside 1 non-finite steps in "
                                                 r"a row, so its final checkpoint was not written; the newest checkpoint"
                                                 r" is .*step-4: rerun"):
        trainer.fit()
    healthy, logs = trainer_for(make_cfg(tmp_path / "b", max_steps=12, every_steps=4, pack=False), SigtermLoader(at=5))
    healthy.fit()
    assert f"stop requested (SIGTERM): checkpoint {healthy.checkpoints.dir / 'step-6'} written at step 6, exiting" in logs


@pytest.mark.parametrize("override, key", [
    ("optim.blr=.inf", "optim.blr"), ("optim.blr=.nan", "optim.blr"), ("optim.weight_decay=.inf", "optim.weight_decay"),
    ("optim.opt_eps=.inf", "optim.opt_eps"), ("optim.clip_grad=.inf", "optim.clip_grad"),
    ("optim.opt_betas=[0.9,.nan]", "optim.opt_betas"), ("schedule.total_tokens=.inf", "schedule.total_tokens"),
    ("schedule.warmup_epochs=.inf", "schedule.warmup_epochs"), ("model.mlp_ratio=.inf", "model.mlp_ratio"),
])
def test_infinite_or_nan_values_are_refused_naming_the_key(override, key):
    base = ["data=demo", "output_dir=/tmp/run", "schedule.epoch_size=1000"]
    with pytest.raises(ConfigError, match=rf"^config key '{key}': must be a finite number, got .*(inf|nan)") as err:
        load_config(None, [*base, override])
    assert err.value.key == key

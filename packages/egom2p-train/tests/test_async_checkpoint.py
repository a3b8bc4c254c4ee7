"""checkpoint.async_save: background step directories equal synchronous ones, the last save waits, errors surface."""

import shutil
import threading
import time

import pytest
import torch
from egom2p.train import checkpoint as ckpt_module
from egom2p.train.checkpoint import CheckpointManager, detached
from egom2p.train.config import config_changes
from egom2p.train.faults import NonFiniteStepError
from fakes import FakeLoader
from test_trainer_loop import SigtermLoader, make_cfg, make_trainer


def async_cfg(tmp_path, on=True, **kwargs):
    cfg = make_cfg(tmp_path, **kwargs)
    cfg.checkpoint.async_save = on
    return cfg


def assert_same(a, b, where="state"):
    """Nested containers equal, tensors bitwise."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif hasattr(a, "shape"):  # numpy RNG state
        assert (a == b).all(), where
    else:
        assert a == b, where


def record_saves(monkeypatch, manager, delay=0.0, gate=None):
    """Wrap ``manager.save``: optionally hold it (``gate``) or slow it down; returns the (step, start, end) records."""
    real, calls = manager.save, []

    def save(step, *args):
        start = time.perf_counter()
        if gate is not None:
            assert gate.wait(30), "the test never opened the gate"
        time.sleep(delay)
        path = real(step, *args)
        calls.append((step, start, time.perf_counter(), threading.current_thread() is threading.main_thread()))
        return path

    monkeypatch.setattr(manager, "save", save)
    return calls


def test_detached_copies_only_what_shares_storage_with_the_live_state():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    fresh = torch.zeros(2)
    state = {"w": model.weight, "view": model.bias[:1], "avg": optimizer.state[model.weight]["exp_avg"],
             "fresh": fresh, "nested": [(1, "x")]}
    out = detached(state, model, optimizer)
    assert out["fresh"] is fresh and out["nested"] == [(1, "x")] and out["nested"] is not state["nested"]
    for key in ("w", "view", "avg"):
        assert torch.equal(out[key], state[key])
        assert out[key].untyped_storage().data_ptr() != state[key].untyped_storage().data_ptr(), key


def test_background_save_equals_the_synchronous_save_of_the_same_step(tmp_path, monkeypatch):
    sync = make_trainer(async_cfg(tmp_path / "sync", on=False))
    for _ in range(5):
        sync.train_step()
    expected_path = sync.save_checkpoint()

    background = make_trainer(async_cfg(tmp_path / "async"))
    for _ in range(5):
        background.train_step()
    at_save = {k: v.clone() for k, v in background.bare_model.state_dict().items()}
    gate = threading.Event()
    calls = record_saves(monkeypatch, background.checkpoints, gate=gate)
    assert background.save_checkpoint(background=True) is None  # handed to the writer, which is held
    for _ in range(3):  # training goes on, in place, while the writer holds the state of step 5
        background.train_step()
    assert any(not torch.equal(at_save[k], v) for k, v in background.bare_model.state_dict().items())
    gate.set()
    background.checkpoints.wait()
    assert [(step, in_main) for step, *_, in_main in calls] == [(5, False)]

    weights, state = CheckpointManager.load(background.checkpoints.dir / "step-5")
    expected_weights, expected_state = CheckpointManager.load(expected_path)
    assert_same(weights, at_save, "weights")
    assert_same(weights, expected_weights, "weights")
    assert state["step"] == expected_state["step"] == 5
    # Each state holds its own run's config, which differs in the run directory and the save mode only.
    configs = state.pop("config"), expected_state.pop("config")
    assert [key for key, *_ in config_changes(*configs)] == ["output_dir", "checkpoint.async_save"]
    assert_same(state, expected_state)


@pytest.mark.parametrize("how", ["end", "sigterm"])
def test_the_last_save_is_synchronous_and_waits_for_the_one_in_flight(tmp_path, monkeypatch, how):
    # every 4 steps: step 4 goes to the (slow) writer; step 6 is the end of the run or the SIGTERM stop.
    loader = SigtermLoader(at=5) if how == "sigterm" else FakeLoader()
    trainer = make_trainer(async_cfg(tmp_path, max_steps=6 if how == "end" else 30), loader)
    logs = []
    trainer.log = trainer.checkpoints.log = logs.append
    calls = record_saves(monkeypatch, trainer.checkpoints, delay=0.5)
    trainer.fit()
    assert trainer.step == 6
    (s4, _, end4, main4), (s6, start6, _, main6) = calls
    assert (s4, main4, s6, main6) == (4, False, 6, True)  # step 4 in the background, step 6 inline
    assert start6 >= end4  # the final save started after the background one had finished
    assert [s for s, _ in trainer.checkpoints.list()] == [4, 6]  # both complete; the newest is the final one
    assert sorted(p.name for p in trainer.checkpoints.dir.iterdir()) == ["step-4", "step-6"]
    assert any(line.startswith(f"checkpoint {trainer.checkpoints.dir / 'step-4'} written in the background in ")
               for line in logs), logs


def failing_write(monkeypatch, step):
    real = ckpt_module.write_pretrained

    def write(directory, *args):
        if directory.name.startswith(f"step-{step}."):
            raise OSError(28, "No space left on device")
        return real(directory, *args)

    monkeypatch.setattr(ckpt_module, "write_pretrained", write)


def test_a_background_write_error_is_logged_and_raised_at_the_next_save(tmp_path, monkeypatch):
    failing_write(monkeypatch, step=4)
    trainer = make_trainer(async_cfg(tmp_path, max_steps=20))
    logs = []
    trainer.log = trainer.checkpoints.log = logs.append
    with pytest.raises(OSError, match="No space left on device"):
        trainer.fit()
    assert trainer.step == 8  # raised when the next save (step 8) waited for the failed one
    assert any("background save of step 4 failed" in line and "No space left" in line for line in logs), logs
    assert sorted(p.name for p in trainer.checkpoints.dir.iterdir()) == []  # its temporary directory removed

    # The last background save of a run fails: the end of fit raises it.
    trainer = make_trainer(async_cfg(tmp_path / "end", max_steps=6))
    with pytest.raises(OSError, match="No space left on device"):
        trainer.fit()
    assert trainer.step == 6 and [s for s, _ in trainer.checkpoints.list()] == []


def test_a_background_write_error_does_not_hide_the_error_that_stops_the_run(tmp_path, monkeypatch):
    failing_write(monkeypatch, step=4)
    # Batches 4..6 (steps 5..7) are non-finite: the third in a row stops the run before the next save.
    trainer = make_trainer(async_cfg(tmp_path, max_steps=20, pack=False), FakeLoader(poison_steps={4, 5, 6}))
    logs = []
    trainer.log = trainer.checkpoints.log = logs.append
    with pytest.raises(NonFiniteStepError):
        trainer.fit()
    assert any("background save of step 4 failed" in line for line in logs), logs


def test_resume_from_a_background_checkpoint_is_exact(tmp_path, monkeypatch):
    full = make_trainer(async_cfg(tmp_path / "full", on=False))
    full.fit()

    half = make_trainer(async_cfg(tmp_path / "half", max_steps=14))
    calls = record_saves(monkeypatch, half.checkpoints, delay=0.2)  # steps 13, 14 train while 12 is written
    half.fit()
    assert [(s, in_main) for s, *_, in_main in calls] == [(4, False), (8, False), (12, False), (14, True)]
    # As if the run had been killed after the background save of step 12.
    shutil.rmtree(half.checkpoints.dir / "step-14")
    resumed = make_trainer(async_cfg(tmp_path / "half"))
    assert resumed.try_resume() == half.checkpoints.dir / "step-12" and resumed.step == 12
    resumed.fit()
    assert resumed.step == full.step == 30
    for k, v in full.bare_model.state_dict().items():
        assert torch.equal(v, resumed.bare_model.state_dict()[k]), k

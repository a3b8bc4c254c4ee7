"""Step-directory checkpoints: atomic, weights-only loadable, pruned to K, temp dirs never count, inference-ready."""

import os
import pickle

import pytest
import torch
from egom2p.core.checkpoint_layout import TRAIN_STATE_NAME
from egom2p.model import EgoM2P
from egom2p.train.checkpoint import CheckpointManager
from fakes import tiny_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return EgoM2P(tiny_config())


def save(mgr, model, step, **extra):
    state = {"step": step, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "betas": (0.9, 0.95)}]}, **extra}
    return mgr.save(step, model.state_dict(), model.config, state)


def test_save_lists_prunes_and_loads_latest(tmp_path, model):
    mgr = CheckpointManager(tmp_path, keep_last_k=2)
    for step in (5, 10, 15):
        save(mgr, model, step)
    assert [s for s, _ in mgr.list()] == [10, 15]  # keep-last-K pruned step 5
    assert sorted(p.name for p in mgr.dir.iterdir()) == ["step-10", "step-15"]
    path, weights, state = mgr.load_latest()
    assert path.name == "step-15" and state["step"] == 15
    assert weights.keys() == model.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_train_state_loads_weights_only_and_step_dir_opens_for_inference(tmp_path, model):
    from egom2p.train.rng import capture_rng_state

    path = save(CheckpointManager(tmp_path), model, 3, rng=[capture_rng_state()])
    state = torch.load(path / TRAIN_STATE_NAME, weights_only=True)  # plain tensors and containers only
    assert state["step"] == 3 and state["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.95)
    loaded = EgoM2P.from_pretrained(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    assert EgoM2P.from_pretrained(tmp_path).config == model.config  # a run dir opens its newest step


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    import random

    import numpy as np
    from egom2p.train.rng import capture_rng_state, restore_rng_state

    torch.save(capture_rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_killed_save_leaves_a_temp_dir_that_is_ignored_and_removed(tmp_path, model):
    mgr = CheckpointManager(tmp_path, keep_last_k=3)
    save(mgr, model, 4)
    # What a process killed in the middle of writing step 8 leaves behind.
    torn = mgr.dir / "step-8.tmp-12345"
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"half a file")
    assert [s for s, _ in mgr.list()] == [4]
    assert mgr.load_latest()[2]["step"] == 4
    assert EgoM2P.from_pretrained(tmp_path).config == model.config  # inference skips it too
    assert mgr.remove_temp_dirs() == [torn] and not torn.exists()


def test_failed_save_leaves_the_previous_checkpoints_only(tmp_path, model):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    mgr = CheckpointManager(tmp_path, keep_last_k=3)
    save(mgr, model, 1)
    with pytest.raises((RuntimeError, pickle.PicklingError)):
        save(mgr, model, 2, bad=Unpicklable())
    assert sorted(os.listdir(mgr.dir)) == ["step-1"]


def test_unreadable_newest_falls_back_to_older(tmp_path, model, capsys):
    mgr = CheckpointManager(tmp_path, keep_last_k=3)
    save(mgr, model, 1)
    newest = save(mgr, model, 2)
    (newest / TRAIN_STATE_NAME).write_bytes(b"garbage")
    path, _, state = mgr.load_latest()
    assert path.name == "step-1" and state["step"] == 1
    assert "skipping unreadable checkpoint" in capsys.readouterr().err


def test_incomplete_step_dir_is_not_a_checkpoint(tmp_path, model):
    mgr = CheckpointManager(tmp_path)
    save(mgr, model, 1)
    (mgr.dir / "step-9").mkdir()  # e.g. copied by hand without its files
    assert [s for s, _ in mgr.list()] == [1]
    assert CheckpointManager(tmp_path / "empty").load_latest() is None

"""Resuming honours the current config, healthy checkpoints survive NaN streaks, validation never kills a run."""

import math

import pytest
import torch
from egom2p.train.config import ConfigError, LoaderConfig, ScheduleConfig
from egom2p.train.distributed import DistInfo
from egom2p.train.trainer import Trainer
from fakes import BUDGETS, FakeLoader, PoisonableEgoM2P, tiny_config
from test_trainer_loop import make_cfg


def trainer_for(cfg, loader=None, world_size=1, val_loaders=None):
    torch.manual_seed(0)
    logs = []
    info = DistInfo(rank=0, world_size=world_size, local_rank=0, device=torch.device("cpu"))
    trainer = Trainer(cfg, PoisonableEgoM2P(tiny_config()), loader or FakeLoader(), info, BUDGETS, val_loaders,
                      log=logs.append)
    return trainer, logs


def test_resume_follows_the_new_blr_and_logs_the_change(tmp_path):
    first, _ = trainer_for(make_cfg(tmp_path, max_steps=8))
    first.fit()
    cfg = make_cfg(tmp_path)
    cfg.optim.blr, cfg.optim.weight_decay = 0.5, 0.1
    resumed, logs = trainer_for(cfg)
    resumed.try_resume()
    assert resumed.step == 8
    expected = resumed.schedule.lr_at(8)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12)
    assert resumed.schedule.peak_lr == pytest.approx(first.schedule.peak_lr / 4)
    assert [g["weight_decay"] for g in resumed.optimizer.param_groups] == [0.1, 0.0]
    assert "resume: optim.blr: 2.0 -> 0.5" in logs and "resume: optim.weight_decay: 0.05 -> 0.1" in logs, logs
    assert resumed.train_step()["lr"] == pytest.approx(expected, rel=1e-12)


def test_resume_refuses_a_new_seed(tmp_path):
    trainer_for(make_cfg(tmp_path, max_steps=4))[0].fit()
    resumed, _ = trainer_for(make_cfg(tmp_path, seed=1))
    with pytest.raises(ConfigError, match="'seed': 0 -> 1 since .* changes what is trained.*checkpoint.init_from"):
        resumed.try_resume()


def test_resume_refuses_another_model(tmp_path):
    trainer_for(make_cfg(tmp_path, max_steps=4))[0].fit()
    cfg = make_cfg(tmp_path)
    torch.manual_seed(0)
    other = PoisonableEgoM2P(tiny_config().__class__(**{**tiny_config().__dict__, "dim": 24}))
    trainer = Trainer(cfg, other, FakeLoader(), DistInfo(0, 1, 0, torch.device("cpu")), BUDGETS, log=lambda _m: None)
    with pytest.raises(ConfigError, match="'model': cannot resume from .*step-4.*keys or shapes differ"):
        trainer.try_resume()


def test_no_checkpoint_inside_a_nan_streak_and_the_counter_restarts(tmp_path):
    # Steps 5..6 (batches 4, 5) are non-finite: the checkpoint due at step 6 waits for step 7, which is finite.
    cfg = make_cfg(tmp_path, max_steps=9, every_steps=3, pack=False)
    trainer, logs = trainer_for(cfg, FakeLoader(poison_steps={4, 5}))
    trainer.fit()
    assert [s for s, _ in trainer.checkpoints.list()] == [7, 9]
    assert any("checkpoint of step 6 postponed" in line for line in logs)
    state = torch.load(trainer.checkpoints.dir / "step-7" / "train_state.pt", weights_only=True)
    assert state["guard"] == {"in_a_row": 0, "total_skipped": 2}

    stopped = make_cfg(tmp_path / "b", max_steps=12, every_steps=3, pack=False)
    trainer, _ = trainer_for(stopped, FakeLoader(poison_steps={2, 3, 4, 5, 6, 7, 8}))
    with pytest.raises(Exception, match="non-finite steps in a row"):
        trainer.fit()
    assert [s for s, _ in trainer.checkpoints.list()] == []  # step 3 fell inside the streak: nothing written
    # A checkpoint taken with a non-zero counter (an older run) resumes with the counter at 0.
    trainer.guard.in_a_row = 2
    trainer.save_checkpoint()
    resumed, _ = trainer_for(make_cfg(tmp_path / "b", pack=False))
    resumed.try_resume()
    assert resumed.guard.in_a_row == 0 and resumed.guard.total_skipped == trainer.guard.total_skipped


def test_resume_on_another_world_size_keeps_the_global_batch(tmp_path):
    def cfg(max_steps=None):
        c = make_cfg(tmp_path, max_steps=max_steps)
        c.loader, c.schedule = LoaderConfig(batch_size=2, pack_multiple=8), ScheduleConfig(
            global_batch_size=4, epoch_size=40, epochs=3, warmup_epochs=1, max_steps=max_steps)
        return c

    one, _ = trainer_for(cfg(max_steps=3))
    assert one.schedule.accum_iter == 2
    one.fit()
    two, logs = trainer_for(cfg(), world_size=2)
    two.try_resume()
    assert two.schedule.accum_iter == 1 and two.schedule == one.schedule.__class__(**{**one.schedule.__dict__,
                                                                                      "accum_iter": 1})
    assert any("world size 1 (accum_iter 2), now 2 (accum_iter 1): same global batch 4 and schedule" in line
               for line in logs), logs


class BrokenVal:
    def __iter__(self):
        yield from ()
        raise OSError("s3://bucket/val/shard-000000.tar: S3 still failing after 300s of retries")


def test_validation_failure_is_logged_counted_and_training_goes_on(tmp_path):
    cfg = make_cfg(tmp_path, max_steps=4)
    cfg.metrics.val_every_steps = 2
    trainer, logs = trainer_for(cfg, val_loaders=lambda: {"good": [next(iter(FakeLoader()))], "bad": BrokenVal()})
    last = trainer.fit()
    assert trainer.step == 4 and trainer.val_failures == 2
    assert last["val/failures"] == 2 and math.isfinite(last["val/good/loss"])
    assert any("validation of 'bad' failed at step 2: OSError" in line for line in logs)
    # Checkpoint first, then validation: the step-4 checkpoint exists although validation failed after it.
    assert [s for s, _ in trainer.checkpoints.list()] == [4]


def test_validation_averages_each_modality_over_all_batches(tmp_path):
    # Batch 1 has rgb targets, batch 2 has none: rgb's loss is (l1 + 0) / 2, as the original's meter.
    trainer, _ = trainer_for(make_cfg(tmp_path))
    full = next(iter(FakeLoader()))
    empty = {"tok_rgb": {**full["tok_rgb"], "target_mask": torch.ones_like(full["tok_rgb"]["target_mask"])}}
    trainer.val_loaders = lambda: {"d": [full]}
    one = trainer.validate()["val/d/tok_rgb_loss"]
    trainer.val_loaders = lambda: {"d": [full, empty]}
    both = trainer.validate()
    assert both["val/d/tok_rgb_loss"] == pytest.approx(one / 2, rel=1e-6)


def test_bf16_autocast_loss_is_finite_and_close_to_fp32(tmp_path):
    losses = {}
    for dtype in ("float32", "bfloat16"):
        trainer, _ = trainer_for(make_cfg(tmp_path / dtype, dtype=dtype) if False else _with_dtype(tmp_path, dtype))
        losses[dtype] = [trainer.train_step()["loss"] for _ in range(4)]
    assert all(math.isfinite(v) for v in losses["bfloat16"])
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.03)


def _with_dtype(tmp_path, dtype):
    cfg = make_cfg(tmp_path / dtype)
    cfg.dtype = dtype
    return cfg

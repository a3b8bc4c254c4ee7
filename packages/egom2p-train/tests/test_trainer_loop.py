"""The loop in one process with a tiny model: bad-step skipping, stopping, exact in-process resume, step dirs."""

import json

import pytest
import torch
from egom2p.model import EgoM2P
from egom2p.train.config import CheckpointConfig, LoaderConfig, MetricsConfig, OptimConfig, ScheduleConfig, TrainConfig
from egom2p.train.distributed import DistInfo
from egom2p.train.faults import NonFiniteStepError
from egom2p.train.trainer import Trainer
from fakes import BUDGETS, FakeLoader, PoisonableEgoM2P, tiny_config

CPU = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def make_cfg(tmp_path, max_steps=None, every_steps=4, pack=True, **run):
    return TrainConfig(output_dir=str(tmp_path), dtype="float32", max_bad_steps=3, **run,
                       loader=LoaderConfig(batch_size=2, pack=pack, pack_multiple=8),
                       optim=OptimConfig(blr=2.0, clip_grad=1.0),
                       schedule=ScheduleConfig(epoch_size=20, epochs=3, warmup_epochs=1, max_steps=max_steps),
                       checkpoint=CheckpointConfig(every_steps=every_steps, keep_last_k=2),
                       metrics=MetricsConfig(log_every_steps=1))


def make_trainer(cfg, loader=None):
    torch.manual_seed(0)
    return Trainer(cfg, PoisonableEgoM2P(tiny_config()), loader or FakeLoader(), CPU, BUDGETS, log=lambda _m: None)


def test_nonfinite_step_is_skipped_without_touching_weights(tmp_path):
    trainer = make_trainer(make_cfg(tmp_path, pack=False), FakeLoader(poison_steps={3}))
    for _ in range(3):
        trainer.train_step()
    before = {k: v.clone() for k, v in trainer.bare_model.state_dict().items()}
    result = trainer.train_step()
    assert result["skipped"] and trainer.guard.total_skipped == 1
    assert all(torch.equal(before[k], v) for k, v in trainer.bare_model.state_dict().items())
    assert all(p.grad is None for p in trainer.bare_model.parameters())
    assert not trainer.train_step()["skipped"]  # training goes on afterwards
    assert any(not torch.equal(before[k], v) for k, v in trainer.bare_model.state_dict().items())


def test_k_bad_steps_in_a_row_stop_with_the_batch_saved(tmp_path):
    trainer = make_trainer(make_cfg(tmp_path, pack=False), FakeLoader(poison_steps={2, 3, 4}))
    with pytest.raises(NonFiniteStepError, match="debug_batch.pt"):
        trainer.fit()
    dumped = torch.load(tmp_path / "debug_batch.pt", weights_only=True)
    assert dumped["batches_per_rank"][0][0]["poison"]["flag"].all()


def test_fit_logs_checkpoints_and_resumes_exactly(tmp_path):
    full = make_trainer(make_cfg(tmp_path / "full"))
    full.fit()
    assert full.step == full.schedule.total_steps == 30
    rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert {"loss", "tok_rgb_loss", "lr", "grad_norm", "tokens_per_s_per_device", "data/samples"} <= rows[0].keys()
    assert rows[0]["mfu_computed"] is None and rows[0]["mfu_valid"] is None  # CPU: no peak FLOP/s, n/a
    assert rows[0]["valid_tok_s"] > 0

    half = make_trainer(make_cfg(tmp_path / "half", max_steps=13))
    half.fit()
    assert [s for s, _ in half.checkpoints.list()] == [12, 13]  # every 4 steps + the end, keep 2
    assert sorted(p.name for p in half.checkpoints.dir.iterdir()) == ["step-12", "step-13"]
    resumed = make_trainer(make_cfg(tmp_path / "half"))
    assert resumed.try_resume() == half.checkpoints.dir / "step-13" and resumed.step == 13
    resumed.fit()
    for k, v in full.bare_model.state_dict().items():
        assert torch.equal(v, resumed.bare_model.state_dict()[k]), k
    # The end of a run is its last step directory, and it opens for inference as it is.
    loaded = EgoM2P.from_pretrained(tmp_path / "half")
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, full.bare_model.state_dict()[k]), k


class SigtermLoader(FakeLoader):
    """Delivers SIGTERM to this process while producing batch ``at``."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def __iter__(self):
        import os
        import signal

        for batch in super().__iter__():
            if self.position - 1 == self.at:
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch


def test_sigterm_writes_a_checkpoint_and_returns(tmp_path):
    trainer = make_trainer(make_cfg(tmp_path, every_steps=100), SigtermLoader(at=6))
    trainer.fit()
    assert trainer.step == 7  # the step in progress finished, then the loop stopped
    assert [s for s, _ in trainer.checkpoints.list()] == [7]

"""LR rule and cosine schedule: the released recipe's numbers (docs/original-behaviour.md#training-recipe)."""

import math

import pytest
import torch
from egom2p.train.config import ConfigError, LoaderConfig, OptimConfig, ScheduleConfig, TrainConfig
from egom2p.train.schedule import derive_schedule


def config(batch_size: int, blr: float = 1e-4, min_blr: float = 0.0, **schedule) -> TrainConfig:
    return TrainConfig(loader=LoaderConfig(batch_size=batch_size), optim=OptimConfig(blr=blr, min_blr=min_blr),
                       schedule=ScheduleConfig(**schedule))


RELEASED = config(4, total_tokens=500, warmup_tokens=10, epoch_size=1_000_000, epochs=-1, warmup_epochs=-1)


@pytest.fixture(scope="module")
def released():
    return derive_schedule(RELEASED, world_size=256, tokens_per_sample=2048 + 2048)


def test_released_lengths_and_peak(released):
    assert released.global_batch == 1024
    assert released.peak_lr == pytest.approx(4e-4, rel=1e-12)
    assert released.epochs == 123 and released.steps_per_epoch == 976
    assert released.total_steps == 120_048 and released.warmup_steps == 2385


def test_released_values_at_known_steps(released):
    lr, w, k = 4e-4, 2385, 120_048 - 2385
    assert released.lr_at(0) == 0.0
    assert released.lr_at(1) == pytest.approx(lr / 2384, rel=1e-12)
    assert released.lr_at(2384) == pytest.approx(lr, rel=1e-12)  # linspace endpoint included
    assert released.lr_at(2385) == pytest.approx(lr, rel=1e-12)  # cosine starts at the peak
    assert released.lr_at(w + k // 2) == pytest.approx(0.5 * lr * (1 + math.cos(math.pi * (k // 2) / k)), rel=1e-12)
    assert released.lr_at(120_047) == pytest.approx(0.5 * lr * (1 + math.cos(math.pi * (k - 1) / k)), rel=1e-12)
    assert released.lr_at(120_048) == 0.0  # past the end: min lr


def test_matches_the_original_linspace_array():
    s = derive_schedule(config(10, blr=2.56e-3, min_blr=2.56e-4, epoch_size=100, epochs=3, warmup_epochs=1),
                        world_size=1, tokens_per_sample=80)
    warm = torch.linspace(0, s.peak_lr, s.warmup_steps, dtype=torch.float64).tolist()
    k = s.total_steps - s.warmup_steps
    cos = [s.min_lr + 0.5 * (s.peak_lr - s.min_lr) * (1 + math.cos(math.pi * i / k)) for i in range(k)]
    assert [s.lr_at(i) for i in range(s.total_steps)] == pytest.approx(warm + cos, rel=1e-12, abs=1e-18)
    assert s.peak_lr == pytest.approx(1e-4) and s.min_lr == pytest.approx(1e-5)


def test_lambda_drives_lambdalr():
    s = derive_schedule(config(256, blr=1e-3, epoch_size=2560, epochs=2, warmup_epochs=1), world_size=1,
                        tokens_per_sample=80)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=s.peak_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, s.lr_lambda)
    seen = []
    for _ in range(s.total_steps):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([s.lr_at(i) for i in range(s.total_steps)], rel=1e-12)


def test_epoch_is_an_exact_number_of_optimizer_steps():
    # accum_iter counts: an epoch is epoch_size // (batch_size x accum_iter x world) optimizer steps.
    s = derive_schedule(config(4, accum_iter=2, epoch_size=1000, epochs=5, warmup_epochs=1), world_size=3,
                        tokens_per_sample=80)
    assert s.global_batch == 24 and s.steps_per_epoch == 1000 // 24 and s.total_steps == 5 * (1000 // 24)


def test_epoch_smaller_than_a_batch_names_epoch_size():
    with pytest.raises(ConfigError, match="'schedule.epoch_size'"):
        derive_schedule(config(64, epoch_size=100), world_size=2, tokens_per_sample=80)


def test_released_config_file_gives_the_released_run():
    from pathlib import Path

    from egom2p.train.config import load_config

    root = Path(__file__).resolve().parents[3]
    cfg = load_config(root / "configs/train/egom2p-b-released.yaml")
    data = cfg.data_config()
    assert (data.max_input_tokens, data.max_target_tokens) == (2048, 2048)  # budgets live in the data config
    s = derive_schedule(cfg, world_size=256, tokens_per_sample=data.max_input_tokens + data.max_target_tokens)
    assert s.global_batch == 1024
    assert (s.peak_lr, s.total_steps, s.warmup_steps) == (pytest.approx(4e-4), 120_048, 2385)


@pytest.mark.parametrize("world_size,accum", [(8, 32), (64, 4), (256, 1)])
def test_released_recipe_is_the_same_on_any_world_size(world_size, accum):
    from pathlib import Path

    from egom2p.train.config import load_config
    from egom2p.train.schedule import dry_run_report

    cfg = load_config(Path(__file__).resolve().parents[3] / "configs/train/egom2p-b-released.yaml")
    report = dry_run_report(cfg, world_size)
    assert report["global_batch_size"] == 1024 and report["micro_batch"] == 4 and report["accum_iter"] == accum
    assert report["peak_lr"] == pytest.approx(4e-4, rel=1e-12)
    assert (report["warmup_steps"], report["total_steps"]) == (2385, 120_048)


def test_global_batch_that_does_not_divide_names_both_keys():
    cfg = config(4, global_batch_size=1024, epoch_size=1_000_000)
    with pytest.raises(ConfigError, match="'schedule.global_batch_size': 1024 .*loader.batch_size 4 x world size 3"):
        derive_schedule(cfg, world_size=3, tokens_per_sample=80)


def test_explicit_accum_iter_must_agree_with_the_global_batch():
    assert derive_schedule(config(4, global_batch_size=64, accum_iter=8, epoch_size=6400, epochs=2, warmup_epochs=1),
                           world_size=2, tokens_per_sample=80).accum_iter == 8
    with pytest.raises(ConfigError, match="'schedule.accum_iter': 2 disagrees .* = 8"):
        derive_schedule(config(4, global_batch_size=64, accum_iter=2, epoch_size=6400), world_size=2,
                        tokens_per_sample=80)

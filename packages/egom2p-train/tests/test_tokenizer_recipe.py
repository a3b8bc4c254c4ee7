"""The tokenizer recipe: step directories that open as tokenizers, exact resume, validation metrics against a
float64 reference, the window loader and sources, config mistakes, the dry run, and a 2-process gloo run."""

import json
import math
import re
import shutil

import numpy as np
import pytest
import torch
from egom2p.core.checkpoint_layout import TRAIN_STATE_NAME
from egom2p.tokenizers import camera, gaze
from egom2p.tokenizers.gaze import GAZE_FRAMES
from egom2p.tokenizers.metrics import camera_metrics
from egom2p.tokenizers.synthetic import synthetic_camera_track, synthetic_camera_windows, synthetic_gaze_windows
from egom2p.tokenizers.tracks import camera_windows, resample_camera
from egom2p.tokenizers.vqvae import VQVAE
from egom2p.train.cli import main
from egom2p.train.config import ConfigError, load_config
from egom2p.train.distributed import DistInfo
from egom2p.train.recipes.window_loader import WindowLoader
from egom2p.train.recipes.window_sources import read_windows
from egom2p.train.trainer import build_trainer
from launch import ROOT, logged_steps, run, train_command

CPU = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
# A 32-wide, 1 + 1 block tokenizer on 40 synthetic windows: 5 steps per epoch of batch 8, 20 steps in all.
TINY = ["recipe=tokenizer", "tokenizer.preset=cam-tiny", "tokenizer.dim_tokens=32", "tokenizer.depth=1",
        "tokenizer.num_heads=2", "dtype=float32", "device=cpu", "loader.batch_size=8", "optim.blr=1e-2",
        "optim.clip_grad=1.0", "schedule.epochs=4", "schedule.warmup_epochs=1", "metrics.log_every_steps=1",
        "checkpoint.every_steps=3", "checkpoint.keep_last_k=2", "metrics.val_every_steps=1000",
        "tokenizer_data.train=[{synthetic: {windows: 40, seed: 0}}]",
        "tokenizer_data.val=[{synthetic: {windows: 10, seed: 1}}]"]
GAZE = ["tokenizer.preset=gaze-tiny", "tokenizer_data.gaze_frame=holoassist"]
DEMO = "cam-demo-cpu"  # the shipped config, by name


def config(out, *extra):
    return load_config(None, [*TINY, f"output_dir={out}", *extra])


def trainer_for(out, *extra):
    return build_trainer(config(out, *extra), CPU, log=lambda _msg: None)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_short_run_writes_step_dirs_that_open_as_tokenizers(tmp_path):
    trainer = trainer_for(tmp_path, "schedule.max_steps=7")
    trainer.fit()
    assert [s for s, _ in trainer.checkpoints.list()] == [6, 7]
    for source in (trainer.checkpoints.dir / "step-7", tmp_path):  # a step directory, and the run's newest step
        loaded = VQVAE.from_pretrained(source)
        assert loaded.config == trainer.recipe.tokenizer
        ours = trainer.bare_model.state_dict()
        assert loaded.state_dict().keys() == ours.keys()
        assert all(torch.equal(v, ours[k]) for k, v in loaded.state_dict().items())  # codebook buffers included
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 8))
    assert {"loss", "recon_loss", "commit_loss", "codebook_live_codes", "codebook_perplexity", "lr",
            "valid_tok_s", "data/windows", "data/epoch"} <= rows[-1].keys()
    assert rows[-1]["loss"] == pytest.approx(rows[-1]["recon_loss"] + rows[-1]["commit_loss"], rel=1e-5)
    assert 1 <= rows[-1]["codebook_live_codes"] <= 256 and rows[-1]["data/epoch"] == 1
    assert trainer.schedule.tokens_per_sample == 30 and trainer.schedule.epoch_size == 40


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    full = trainer_for(tmp_path / "full")
    full.fit()
    assert full.step == 20
    killed = trainer_for(tmp_path / "killed", "schedule.max_steps=8")
    killed.fit()
    # As if killed during step 8: the newest checkpoint is step 6's, written in the background while steps 7
    # and 8 trained on (mid epoch 2, after dead-code refills).
    shutil.rmtree(killed.checkpoints.dir / "step-8")
    resumed = trainer_for(tmp_path / "killed")
    assert resumed.try_resume() == killed.checkpoints.dir / "step-6" and resumed.step == 6
    assert (resumed.train_loader.state_dict()["epoch"], resumed.train_loader.state_dict()["batch"]) == (1, 1)
    resumed.fit()
    expected, got = full.bare_model.state_dict(), resumed.bare_model.state_dict()
    assert "quantize._codebook.embed" in got and "quantize._codebook.cluster_size" in got
    for key, value in expected.items():
        assert torch.equal(value, got[key]), key


def test_resume_refuses_other_training_windows(tmp_path):
    trainer_for(tmp_path, "schedule.max_steps=3").fit()
    other = trainer_for(tmp_path, "tokenizer_data.train=[{synthetic: {windows: 48, seed: 0}}]")
    with pytest.raises(ConfigError, match=r"'tokenizer_data.train': .*'windows': 40.* -> .*'windows': 48.* changes what is"):
        other.try_resume()


@pytest.mark.parametrize("kind", ["cam", "gaze"])
def test_validation_reports_the_paper_metrics_of_the_decoded_windows(tmp_path, kind):
    # 10 validation windows in batches of int(1.5 x 5) = 7: two batches of unequal size, summed exactly.
    trainer = trainer_for(tmp_path, "loader.batch_size=5", *(GAZE if kind == "gaze" else ()))
    for _ in range(3):
        trainer.train_step()
    metrics = trainer.validate()
    model, x = trainer.bare_model.eval(), trainer.recipe.val_windows
    with torch.no_grad():
        recon, _, tokens = model(x, return_tokens=True)
    recon, x64 = recon.double().numpy(), x.double().numpy()
    assert metrics[f"val/{kind}/loss"] == pytest.approx(float(model.reconstruction_loss(torch.from_numpy(recon),
                                                                                       x.double())), rel=1e-4)
    counts = torch.bincount(tokens.reshape(-1), minlength=256).double()
    probs = counts[counts > 0] / counts.sum()
    assert metrics[f"val/{kind}/live_codes"] == int((counts > 0).sum())
    assert metrics[f"val/{kind}/perplexity"] == pytest.approx(math.exp(-(probs * probs.log()).sum()), rel=1e-9)
    if kind == "cam":
        reference = camera_metrics(camera.denormalize_9d(recon), camera.denormalize_9d(x64))
        for name in ("ate_original_m", "ate_se3_m", "ate_sim3_m", "ate_unaligned_m", "rte_m", "rre_deg"):
            assert metrics[f"val/cam/{name}"] == pytest.approx(reference[name], rel=1e-9), name
        assert metrics["val/cam/ate_se3_m"] > 0
    else:
        crop = np.array(GAZE_FRAMES["holoassist"].crop, dtype=np.float64)
        valid = x64[..., 2] > 0.5
        pred_units, true_units = recon * 0.5 + 0.5, x64[..., :2] * 0.5 + 0.5
        assert metrics["val/gaze/gaze_mse"] == pytest.approx(((pred_units - true_units)[valid] ** 2).mean(), rel=1e-9)
        error = np.linalg.norm((pred_units - true_units)[valid] * crop, axis=-1).mean()
        assert metrics["val/gaze/gaze_error_crop_px"] == pytest.approx(error, rel=1e-9)


def test_the_window_loader_gives_every_rank_equal_disjoint_batches_and_resumes():
    windows = torch.arange(23.0)[:, None, None].expand(23, 2, 1)
    loaders = [WindowLoader(windows, batch_size=3, rank=r, world_size=2, seed=5) for r in range(2)]
    assert [loader.batches_per_epoch for loader in loaders] == [3, 3]  # 23 // (3 x 2); the tail is dropped
    streams = [iter(loader) for loader in loaders]
    epochs = []
    for _ in range(2):
        seen = [torch.cat([next(s)[:, 0, 0] for _ in range(3)]) for s in streams]
        assert all(len(ids) == 9 for ids in seen)
        together = torch.cat(seen).long()
        assert len(set(together.tolist())) == 18  # disjoint shares
        permutation = torch.from_numpy(np.random.default_rng((5, len(epochs))).permutation(23))
        # Global batch b is the slice [6b, 6b + 6) of the epoch's permutation; rank r holds its r-th half.
        assert torch.equal(torch.stack([seen[0].view(3, 3), seen[1].view(3, 3)], 1).reshape(-1).long(), permutation[:18])
        epochs.append(together)
    assert not torch.equal(epochs[0], epochs[1])  # a new order each epoch
    saved = loaders[1].state_dict()
    expected = [next(streams[1]) for _ in range(4)]
    restored = WindowLoader(windows, batch_size=3, rank=1, world_size=2, seed=5)
    restored.load_state_dict(saved)
    stream = iter(restored)
    assert all(torch.equal(next(stream), batch) for batch in expected)
    with pytest.raises(ValueError, match="loader state is for"):
        WindowLoader(windows[:20], batch_size=3, rank=1, world_size=2, seed=5).load_state_dict(saved)


def test_sources_window_arrays_tracks_folders_and_synthetic_become_model_inputs(tmp_path):
    windows = synthetic_camera_windows(5, seed=3)
    np.save(tmp_path / "windows.npy", windows)
    track = synthetic_camera_track(4.0, seed=4)  # 120 frames at 30 fps
    folder = tmp_path / "tracks"
    folder.mkdir()
    np.savez(folder / "walk.npz", poses=track.poses, fps=30.0)
    cfg = config(tmp_path / "run", f"tokenizer_data.train=[{tmp_path / 'windows.npy'}, {folder},"
                                   " {synthetic: {windows: 2, seed: 9}}]", "tokenizer_data.stride=20",
                 "tokenizer_data.basis=holoassist")
    inputs = read_windows(cfg.tokenizer_data, "train", cfg.tokenizer_config())
    cut, _, _ = camera_windows(resample_camera(track), stride=20)  # frames 0, 20, 40, 60
    expected = np.concatenate([windows, cut, synthetic_camera_windows(2, seed=9)])
    assert inputs.dtype == np.float32 and inputs.shape == (5 + 4 + 2, 60, 9)
    assert np.array_equal(inputs, camera.poses_to_model_input(expected, "holoassist"))

    gaze_cfg = config(tmp_path / "gaze", *GAZE, "tokenizer_data.train=[{synthetic: {windows: 3, seed: 2}}]")
    pixels = synthetic_gaze_windows(3, seed=2, frame=GAZE_FRAMES["holoassist"])
    assert np.array_equal(read_windows(gaze_cfg.tokenizer_data, "train", gaze_cfg.tokenizer_config()),
                          gaze.pixels_to_model_input(pixels, "holoassist"))


def one_line_error(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no traceback
    return err


@pytest.mark.parametrize("override, message", [
    ("tokenizer.dim_token=64", "unknown config key 'tokenizer.dim_token'.*did you mean 'tokenizer.dim_tokens'"),
    ("model.dim=48", "config key 'model.dim' .* belongs to recipe 'egom2p', but this config has recipe 'tokenizer'"),
    ("data=demo", "config key 'data' .* belongs to recipe 'egom2p'"),
    ("loss_type=token", "config key 'loss_type' .* belongs to recipe 'egom2p'"),
    ("tokenizer.dim_tokens=30", "config key 'tokenizer.dim_tokens': .*divisible by num_heads"),
    ("tokenizer.preset=cam-huge", "config key 'tokenizer.preset': unknown tokenizer preset 'cam-huge'"),
    ("tokenizer_data.train=[{synthetic: {windows: 4, seeds: 1}}]", "'tokenizer_data.train': source 0: synthetic needs"),
    ("tokenizer_data.gaze_frame=holoassist", "'tokenizer_data.gaze_frame': is for gaze tokenizers"),
    ("tokenizer_data.train=[nope/missing.npy]", "'tokenizer_data.train': source 0 .*missing.npy.*no such file"),
    ("fsdp=true", "config key 'fsdp': the tokenizer recipe trains with DDP"),
])
def test_config_mistakes_are_one_line_naming_the_key(tmp_path, capsys, override, message):
    err = one_line_error(["--config", str(DEMO), f"output_dir={tmp_path}", override], capsys)
    assert re.search(message, err), err


def test_tokenizer_sections_are_refused_under_the_egom2p_recipe(tmp_path, capsys):
    err = one_line_error(["--config", "demo-cpu", "tokenizer.depth=2"], capsys)
    assert "config key 'tokenizer.depth'" in err and "belongs to recipe 'tokenizer'" in err


def test_gaze_needs_its_frame(tmp_path, capsys):
    err = one_line_error(["--config", str(DEMO), "tokenizer.preset=gaze-tiny"], capsys)
    assert "config key 'tokenizer_data.gaze_frame': must be set for a gaze tokenizer" in err


def test_dry_run_prints_the_tokenizer_schedule(capsys):
    demo = "gaze-demo-cpu"
    assert main(["--config", str(demo), "--dry-run", "--world-size", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    cfg = load_config(demo)
    windows = cfg.tokenizer_data.train[0]["synthetic"]["windows"]
    global_batch = 2 * cfg.loader.batch_size
    assert report["recipe"] == "tokenizer" and report["tokens_per_sample"] == 30
    assert report["epoch_size"] == windows and report["global_batch_size"] == global_batch
    assert report["steps_per_epoch"] == windows // global_batch
    assert report["total_steps"] == cfg.schedule.epochs * (windows // global_batch)
    assert report["peak_lr"] == pytest.approx(cfg.optim.blr * global_batch / 256)


@pytest.mark.parametrize("kind, blr", [("cam", 2.5e-5), ("gaze", 5e-5)])
@pytest.mark.parametrize("world_size, accum", [(4, 1), (2, 2)])
def test_the_released_recipe_dry_run(capsys, kind, blr, world_size, accum):
    """Global batch 512 (the original: 4 GPUs x 128), lr = blr x 512 / 256, 200 epochs with 5 of warmup, on any
    GPU count that divides it (the data is not read when schedule.epoch_size is given)."""
    released = ROOT / f"configs/tokenizers/{kind}-released.yaml"
    assert main(["--config", str(released), "--dry-run", "--world-size", str(world_size),
                 "schedule.epoch_size=51200"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["global_batch_size"], report["micro_batch"], report["accum_iter"]) == (512, 128, accum)
    assert report["peak_lr"] == pytest.approx(blr * 2)
    assert (report["steps_per_epoch"], report["warmup_steps"], report["total_steps"]) == (100, 500, 20000)


def test_the_released_recipe_names_its_placeholder_data(capsys):
    err = one_line_error(["--config", str(ROOT / "configs/tokenizers/cam-released.yaml"), "--dry-run"], capsys)
    assert "config key 'tokenizer_data.train': source 0 (/path/to/camera/train)" in err and "no such" in err


@pytest.mark.xdist_group("torchrun")
@pytest.mark.long(seconds=18)
def test_two_process_gloo_run_keeps_codebooks_identical_and_learns_from_both_ranks(tmp_path):
    out = tmp_path / "run"
    proc = run([*train_command(2), *TINY, f"output_dir={out}", "schedule.max_steps=5", "loader.batch_size=4",
                "metrics.val_every_steps=5"])
    text = proc.stdout + proc.stderr
    assert "world size 2" in text and "replicas identical on 2 ranks at step 5" in text  # parameters and buffers
    assert logged_steps(out) == [1, 2, 3, 4, 5]
    val = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "val/cam/loss" in line]
    assert len(val) == 1 and val[0]["step"] == 5 and val[0]["val/cam/ate_se3_m"] > 0
    train_state = torch.load(out / "checkpoints/step-5" / TRAIN_STATE_NAME, weights_only=True)
    assert [(d["rank"], d["epoch"], d["batch"]) for d in train_state["data"]] == [(0, 0, 5), (1, 0, 5)]
    # Rank r's batch is the r-th half of the global batch of 8 that one process with batch 8 takes, rank 0 draws
    # the dead-code refills as that process does, and the codebook sums both ranks' statistics: the two runs differ
    # only by the order of float sums (measured: 6e-8); a codebook fed by rank 0's half alone would not match.
    reference = trainer_for(tmp_path / "one", "schedule.max_steps=5")
    reference.fit()
    two = VQVAE.from_pretrained(out).state_dict()
    for key, value in reference.bare_model.state_dict().items():
        assert torch.allclose(two[key], value, rtol=0, atol=1e-5), (key, (two[key] - value).abs().max())

"""From recordings to predictions: egom2p-tokenize prepare -> egom2p-data validate -> a few steps of egom2p-train ->
egom2p-eval on video -> batch inference with the decoded clips.

Two synthetic recordings (a rendered video at 30 fps with its depth, a camera track at 60 Hz, gaze at 10 Hz) go
through the command a user runs, with the Cosmos stand-in and tiny random camera / gaze tokenizers; the shards pass
the data checker with the released modality shapes and the demo trainer reads them.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
import yaml
from e2e_helpers import BIN, read_metrics, run_trainer
from egom2p.core.shards import read_tar_members

pytest.importorskip("av")
from egom2p.tokenizers.video_io import read_video  # noqa: E402


@pytest.mark.long(seconds=115)
def test_prepared_recordings_validate_and_train(tmp_path):
    from egom2p.tokenizers.cosmos_standin import write_standin
    from egom2p.tokenizers.synthetic_recording import write_synthetic_recording
    from egom2p.tokenizers.vqvae import VQVAE

    for name, seconds, seed in (("P01", 6.2, 0), ("P02", 4.2, 1)):  # the 10 Hz gaze covers every clip
        write_synthetic_recording(tmp_path / "recs" / name, seconds, seed)
    torch.manual_seed(0)
    VQVAE.from_preset("cam-tiny").save_pretrained(tmp_path / "cam")
    VQVAE.from_preset("gaze-tiny").save_pretrained(tmp_path / "gaze")
    write_standin(tmp_path / "cosmos")
    prepare = subprocess.run(
        [str(BIN / "egom2p-tokenize"), "prepare", "--input", str(tmp_path / "recs"), "--out", str(tmp_path / "data"),
         "--dataset", "mine", "--video-tokenizer", str(tmp_path / "cosmos"), "--cam-tokenizer", str(tmp_path / "cam"),
         "--gaze-tokenizer", str(tmp_path / "gaze"), "--gaze-frame", "holoassist", "--gaze-fps", "10"],
        capture_output=True, text=True, timeout=300)
    assert prepare.returncode == 0, prepare.stderr
    pattern = prepare.stdout.splitlines()[0]
    assert pattern.endswith("[rgb,depth,cam,gaze]/mine/shard-{000000..000001}.tar".split("]", 1)[1])
    assert "5 samples of 2 recordings" in prepare.stdout

    modalities = "egom2p"  # the released set, by name
    validate = subprocess.run([str(BIN / "egom2p-data"), "validate", "--data", pattern, "--modalities", modalities],
                              capture_output=True, text=True, timeout=120)
    assert validate.returncode == 0 and "problems: 0" in validate.stdout, validate.stdout + validate.stderr

    domains = ["tok_cam", "tok_depth", "tok_gaze", "tok_rgb"]
    data = {"train": {"num_input_tokens": 64, "num_target_tokens": 64,
                      "datasets": {"mine": {"in_domains": domains, "out_domains": domains, "data_path": pattern,
                                            "alphas_config": "demo_rgb2all_all2all"}}},
            "val": {"datasets": {"mine": {"data_path": pattern}}}}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(data))
    done = run_trainer(tmp_path / "run", tmp_path / "data.yaml", f"model.modalities={modalities}",
                       "schedule.max_steps=3", "loader.batch_size=2", "schedule.global_batch_size=2",
                       "loader.pack_rows=null", "metrics.log_every_steps=1", "metrics.eval_freq=1000",
                       "schedule.epoch_size=4")
    assert done.returncode == 0, done.stderr[-3000:]
    losses = [row["loss"] for row in read_metrics(tmp_path / "run") if "loss" in row]
    assert len(losses) == 3 and all(loss == loss and loss > 0 for loss in losses)

    # egom2p-eval on video: the decoded prediction against the decoded held-out clip (one pass, no nucleus sort of
    # 64,000 logits: this checks the path, not the sampler)
    evaluate = subprocess.run(
        [str(BIN / "egom2p-eval"), "--checkpoint", str(tmp_path / "run"), "--task", "rgb2depth", "--task", "depth2rgb",
         "--data", pattern, "--max-samples", "1", "--steps", "1", "--top-p", "0", "--cfg", "1",
         "--video-tokenizer", str(tmp_path / "cosmos"), "--out", str(tmp_path / "eval.json")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    results = {r["task"]: r for r in json.loads((tmp_path / "eval.json").read_text())}
    depth, rgb = results["rgb2depth"]["signals"], results["depth2rgb"]["signals"]
    assert depth["n_samples"] == 1 and 0 <= depth["mean"]["delta_1_25"] <= 1 and depth["mean"]["abs_rel"] >= 0
    assert rgb["n_samples"] == 1 and 0 < rgb["mean"]["psnr_db"] < 100 and -1 <= rgb["mean"]["ssim"] <= 1
    assert "abs_rel" in evaluate.stdout and "ssim" in evaluate.stdout

    # batch inference over the shards of P02 (two clips): depth tokens, and beside them the decoded clips
    one_shard = pattern.replace("shard-{000000..000001}", "shard-000001")
    generate = [str(BIN / "egom2p-generate"), "--checkpoint", str(tmp_path / "run"), "--data", one_shard, "--task",
                "rgb2depth", "--out", str(tmp_path / "preds"), "--steps", "1", "--top-p", "0", "--cfg", "1",
                "--video-tokenizer", str(tmp_path / "cosmos"), "--decode"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(generate, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0 and "<key>.mp4 per sample" in done.stdout, done.stderr[-3000:]
    clips = read_tar_members(str(tmp_path / "preds/depth_video/mine/shard-000001.tar"))
    tokens = read_tar_members(str(tmp_path / "preds/depth/mine/shard-000001.tar"))
    assert [(k, e) for k, e, _ in clips] == [(k, "mp4") for k, _, _ in tokens] == [("P02_000000", "mp4"),
                                                                                    ("P02_000060", "mp4")]
    (tmp_path / "clip.mp4").write_bytes(clips[1][2])
    assert read_video(tmp_path / "clip.mp4").frames.shape == (16, 256, 256, 3)
    again = subprocess.run(generate, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0 and "1 finished shards skipped" in again.stdout, again.stdout + again.stderr

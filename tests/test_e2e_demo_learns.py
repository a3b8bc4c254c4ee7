"""The demo pipeline at a smaller scale: synth data -> egom2p-train -> egom2p-eval, and the model has learned.

The eval also runs as the paper scores camera predictions: with a camera tokenizer (``--tokenizer tok_cam=``) the
predicted and held-out tokens are decoded to poses and compared by ATE / RTE / RRE. The demo's camera tokens are
made by a rule, not by a tokenizer, so a tokenizer of the demo's token shape (64 codes, 8 tokens = 16 frames;
random weights) stands in: it turns equal tokens into equal trajectories and different ones into different
trajectories, which is what the check needs.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from e2e_helpers import BIN, ROOT, read_metrics

pytestmark = [pytest.mark.xdist_group("demo"), pytest.mark.long(seconds=400)]

# The demo's rules make rgb -> depth a per-cell lookup (perfect accuracy 1.0, chance 2/32) and rgb -> cam a
# function of the frame-to-frame motion (perfect 1.0, chance 1/8). The floors are the README's promise: over
# seeds 0-3 on 1 and 2 threads the recipe as it is (demo-cpu.yaml, 2,400 steps) ended at rgb -> cam 0.97-1.00
# and rgb -> depth >= 0.999 on 128 held-out samples (the alphas preset demo_rgb2all_all2all says why).
MIN_ACCURACY = {"rgb2depth": 0.99, "rgb2cam": 0.95}


def test_demo_training_learns_the_synthetic_rules(tmp_path, synth_root, demo_run):
    from egom2p.data.synth import chance_accuracy, perfect_accuracy

    _, patterns = synth_root
    out = demo_run
    metrics = [row for row in read_metrics(out) if "loss" in row]  # training rows (validation rows hold val/...)
    assert metrics[-1]["step"] == 2400
    assert metrics[-1]["tok_depth_loss"] < 0.6 * metrics[0]["tok_depth_loss"]

    val = patterns["val/synth_full"]
    for task, threshold in MIN_ACCURACY.items():
        report = tmp_path / f"{task}.json"
        # The run directory names its newest step directory: the end of the run.
        cmd = [str(BIN / "egom2p-eval"), "--checkpoint", str(out), "--data", val, "--task", task,
               "--max-samples", "64", "--batch-size", "16", "--json", str(report)]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-3000:]
        res = json.loads(report.read_text())
        res = res[0] if isinstance(res, list) else res
        assert res["n_samples"] == 64
        assert res["accuracy"] >= threshold * perfect_accuracy(task), (task, res)
        assert res["accuracy"] > 3 * chance_accuracy(task), (task, res)

    # The camera predictions as trajectories: far closer to the truth than another clip's trajectory is.
    from egom2p.core.layout import expand_folders, expand_shard_pattern
    from egom2p.core.shards import decode_tokens, read_tar_members
    from egom2p.tokenizers.metrics import ate_se3
    from egom2p.tokenizers.vqvae import VQVAE

    tokenizer = VQVAE.from_preset("cam-tiny", codebook_size=64, num_frames=16)
    tokenizer.save_pretrained(tmp_path / "tok_cam")
    report = tmp_path / "rgb2cam-signals.json"
    cmd = [str(BIN / "egom2p-eval"), "--checkpoint", str(out), "--data", val, "--task", "rgb2cam",
           "--max-samples", "64", "--batch-size", "16", "--json", str(report),
           "--tokenizer", f"tok_cam={tmp_path / 'tok_cam'}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    signals = json.loads(report.read_text())[0]["signals"]
    assert signals["n_samples"] == 64 and signals["gt"] == "decoded tokens"
    truth = [decode_tokens(f"{key}.{ext}", data) for shard in expand_shard_pattern(expand_folders(val)["cam"])
             for key, ext, data in read_tar_members(shard)]
    poses = tokenizer.decode_poses(np.stack(truth))
    other_clip = float(np.median(ate_se3(np.roll(poses, 1, axis=0), poses)))
    print(json.dumps({"rgb2cam_signals": signals, "median_ate_se3_m_of_another_clip": other_clip}))
    assert signals["median"]["ate_se3_m"] < 0.5 * other_clip, (signals, other_clip)

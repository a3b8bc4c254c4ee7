"""A new modality end to end (docs/new-modality.md, at test sizes): a raw fifth signal -> its own tokenizer -> token
shards beside the demo's -> a pretrained model fine-tuned with the modality added (frozen warm-up, then everything)
-> predicted from RGB and decoded back to the signal.

The signal is egom2p-data synth's 2-D hand track: it starts under frame 0's salient cell and moves along the
frame-to-frame motion, so it can be read off rgb. The pretrained model is the CPU demo (``demo_run``, shared with
test_e2e_demo_learns.py); the fine-tuning runs the example's recipe for 4 of its 8 epochs (400 steps, the warm-up's
100 included).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from e2e_helpers import BIN, ROOT
from egom2p.core.presets import preset_file

pytestmark = [pytest.mark.xdist_group("demo"), pytest.mark.long(seconds=150)]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
MIN_HAND_ACCURACY = 0.6  # and at least 5x chance
OLD_TASK_TOLERANCE = 0.05  # accuracy the old tasks may lose to the fine-tuning


def run(*cmd: str, timeout: float = 600) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def accuracy(checkpoint, data, task, tmp_path) -> float:
    report = tmp_path / f"{checkpoint.name}-{task}.json"
    run(BIN / "egom2p-eval", "--checkpoint", checkpoint, "--data", data, "--dataset", "synth_full", "--task", task,
        "--max-samples", "64", "--batch-size", "16", "--json", report)
    return json.loads(report.read_text())[0]["accuracy"]


def hand_data_config(path, data):
    """The shipped data config demo-hand over the test's data folder."""
    config = yaml.safe_load(Path(preset_file("data", "demo-hand")).read_text())
    for split in ("train", "val"):
        for entry in config[split]["datasets"].values():
            entry["data_path"] = entry["data_path"].replace("data/demo", str(data))  # alphas_config: a preset name
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_new_modality_is_tokenized_learned_and_predicted_from_rgb(tmp_path, synth_root, demo_run):
    # The demo's shards (linked, not changed) and its raw hand tracks (egom2p-data synth --hand); hand/ joins them.
    root, _ = synth_root
    data, raw, pre = tmp_path / "data", root / "raw", demo_run
    for split in ("train", "val"):
        (data / split).mkdir(parents=True)
        for folder in ("cam", "depth", "gaze", "rgb"):
            (data / split / folder).symlink_to(root / split / folder)

    # 1. The new signal's tokenizer, trained by the tokenizer recipe on the raw tracks.
    tok = tmp_path / "hand-tokenizer"
    run(BIN / "egom2p-train", "--config", "hand-demo-cpu", f"output_dir={tok}",
        f"tokenizer_data.train=[{raw / 'train-hand.npy'}]", f"tokenizer_data.val=[{raw / 'val-hand.npy'}]")

    # 2. Its token shards beside the demo's, with the demo samples' keys.
    for split in ("train", "val"):
        run(BIN / "egom2p-tokenize", "encode", "--tokenizer", tok, "--input", raw / f"{split}-hand.npy",
            "--keys", raw / f"{split}-hand.keys.txt", "--folder", "hand", "--gaze-frame", "aria",
            "--out", data / split, "--dataset", "synth_full", "--samples-per-shard", "256")
    run(BIN / "egom2p-data", "validate", "--data",
        f"{data}/train/[cam,depth,gaze,hand,rgb]/synth_full/shard-{{000000..000007}}.tar",
        "--modalities", "tiny-hand")

    # 3. Fine-tuning with tok_hand added: the warm-up trains only its embeddings, then everything trains.
    val = data / "val"
    before = {task: accuracy(pre, val, task, tmp_path) for task in ("rgb2depth", "rgb2cam")}
    ft = tmp_path / "finetuned"
    log = run(BIN / "egom2p-train", "--config", "demo-hand-finetune", f"output_dir={ft}",
              f"data={hand_data_config(tmp_path / 'hand.yaml', data)}", f"checkpoint.init_from={pre}",
              "schedule.epochs=4", "metrics.eval_freq=4", "checkpoint.save_ckpt_freq=4")
    assert "new modalities (fresh embeddings): tok_hand; dropped modalities: none" in log
    assert "step 0: frozen warm-up (embeddings only)" in log and "step 100: all parameters" in log

    # 4. The new task learned well above chance; the old ones kept.
    from egom2p.core.layout import expand_shard_pattern
    from egom2p.core.shards import decode_tokens, read_tar_members

    def tokens(pattern):
        return np.stack([decode_tokens(f"{k}.{e}", d) for s in expand_shard_pattern(pattern)
                         for k, e, d in read_tar_members(s)])

    train_hand = tokens(f"{data}/train/hand/synth_full/shard-{{000000..000007}}.tar")
    mode = np.array([np.bincount(column, minlength=64).argmax() for column in train_hand.T])
    chance = float((tokens(f"{val}/hand/synth_full/shard-000000.tar") == mode).mean())
    after = {task: accuracy(ft, val, task, tmp_path) for task in ("rgb2depth", "rgb2cam", "rgb2hand")}
    print(json.dumps({"before": before, "after": after, "rgb2hand_chance": chance}))
    assert after["rgb2hand"] >= max(MIN_HAND_ACCURACY, 5 * chance), (after, chance)
    for task, value in before.items():
        assert after[task] >= value - OLD_TASK_TOLERANCE, (task, before, after)

    # 5. Predicted from rgb and decoded back to hand tracks: near the true ones, far from another sample's.
    preds = tmp_path / "preds"
    run(BIN / "egom2p-generate", "--checkpoint", ft, "--data", f"{val}/[rgb]/synth_full/shard-000000.tar",
        "--task", "rgb2hand", "--out", preds, "--batch-size", "32")
    decoded = tmp_path / "hand-pred.npy"
    run(BIN / "egom2p-tokenize", "decode", "--tokenizer", tok, "--gaze-frame", "aria",
        "--input", f"{preds}/[hand]/synth_full/shard-000000.tar", "--out", decoded)
    keys = (tmp_path / "hand-pred.keys.txt").read_text().split()
    truth_keys = (raw / "val-hand.keys.txt").read_text().split()
    truth = np.load(raw / "val-hand.npy")[[truth_keys.index(k) for k in keys]]
    predicted = np.load(decoded)
    error = np.linalg.norm(predicted - truth, axis=-1).mean(axis=1)
    other = np.linalg.norm(np.roll(truth, 1, axis=0) - truth, axis=-1).mean(axis=1)
    print(json.dumps({"median_px_error": float(np.median(error)), "median_px_to_another_sample": float(np.median(other))}))
    assert np.median(error) < 0.25 * np.median(other)

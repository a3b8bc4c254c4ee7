"""Every step directory the trainer writes is an inference artifact: it loads with EgoM2P.from_pretrained and
egom2p-generate / egom2p-eval run on it as they are."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import torch
from e2e_helpers import BIN, ROOT, run_trainer, write_data_config
from safetensors.torch import load_file

pytestmark = pytest.mark.xdist_group("trainer")


def test_step_directories_open_for_inference_generation_and_eval(tmp_path, synth_root):
    from egom2p.data.synth import generate_samples
    from egom2p.model import EgoM2P

    _, patterns = synth_root
    out = tmp_path / "run"
    result = run_trainer(out, write_data_config(tmp_path / "data.yaml", patterns), "schedule.max_steps=4",
                         "checkpoint.every_steps=2", "loader.batch_size=8", "model.dim=48", "model.encoder_depth=1",
                         "model.decoder_depth=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2", "step-4"]
    assert f"weights for inference in {out / 'checkpoints' / 'step-4'}" in result.stdout

    step = out / "checkpoints" / "step-2"
    model = EgoM2P.from_pretrained(step)
    weights = load_file(step / "model.safetensors")
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert model.config.dim == 48 and sorted(model.modalities) == ["tok_cam", "tok_depth", "tok_gaze", "tok_rgb"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    np.savez(tmp_path / "rgb.npz", generate_samples(1, seed=5)["rgb"][0])
    gen = subprocess.run([str(BIN / "egom2p-generate"), "--checkpoint", str(step), "--cond", f"tok_rgb={tmp_path / 'rgb.npz'}",
                          "--target", "tok_depth", "--target", "tok_cam", "--steps", "2", "--out", str(tmp_path / "gen.npz")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr[-3000:]
    assert (tmp_path / "gen_tok_depth.npz").is_file() and (tmp_path / "gen_tok_cam.npz").is_file()

    report = tmp_path / "eval.json"
    ev = subprocess.run([str(BIN / "egom2p-eval"), "--checkpoint", str(step), "--data", patterns["val/synth_full"],
                         "--task", "rgb2cam", "--max-samples", "8", "--batch-size", "8", "--json", str(report)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr[-3000:]
    res = json.loads(report.read_text())
    res = res[0] if isinstance(res, list) else res
    assert res["n_samples"] == 8 and 0.0 <= res["accuracy"] <= 1.0

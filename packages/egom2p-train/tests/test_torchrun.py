"""A 2-process torchrun (gloo) run through the console entry point, then resumed under FSDP2."""

import json

import pytest
import torch
from egom2p.model import EgoM2P
from launch import command, final_weights, logged_steps, run, step_dirs


@pytest.mark.xdist_group("torchrun")
@pytest.mark.long(seconds=10)
def test_two_process_gloo_run_logs_checkpoints_keeps_replicas_equal_and_resumes_under_fsdp(tmp_path, demo_data_config):
    out = tmp_path / "run"
    proc = run(command(out, demo_data_config, "schedule.max_steps=5", nproc=2))
    text = proc.stdout + proc.stderr
    assert "world size 2" in text and "parameters" in text
    assert "replicas identical on 2 ranks at step 5" in text
    assert logged_steps(out) == [1, 2, 3, 4, 5]  # rank 0 only writes
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss", "lr", "grad_norm", "tok_rgb_loss", "tok_depth_loss", "tokens_per_s_per_device"} <= row.keys()
    assert step_dirs(out) == ["step-3", "step-5"]
    assert (out / "config.yaml").exists()
    weights = final_weights(out, 5)
    model = EgoM2P.from_pretrained(out)  # the run directory opens its newest step for inference
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())

    # The same run directory continues under FSDP2 from the DDP checkpoint (state read by rank 0, broadcast).
    proc = run(command(out, demo_data_config, "schedule.max_steps=7", "fsdp=true", nproc=2))
    assert "resumed from" in proc.stdout and "at step 5" in proc.stdout
    assert logged_steps(out)[-2:] == [6, 7]
    assert step_dirs(out) == ["step-6", "step-7"]

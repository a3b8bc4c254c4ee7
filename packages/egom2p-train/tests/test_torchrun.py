"""A 2-process torchrun (gloo) run through the console entry point, then resumed under FSDP2."""

import json

import pytest
from launch import command, logged_steps, run


@pytest.mark.xdist_group("torchrun")
def test_two_process_gloo_run_logs_checkpoints_keeps_replicas_equal_and_resumes_under_fsdp(tmp_path, demo_data_config):
    out = tmp_path / "run"
    proc = run(command(out, demo_data_config, "max_steps=5", nproc=2))
    text = proc.stdout + proc.stderr
    assert "world size 2" in text and "parameters" in text
    assert "replicas identical on 2 ranks at step 5" in text
    assert logged_steps(out) == [1, 2, 3, 4, 5]  # rank 0 only writes
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss", "lr", "grad_norm", "tok_rgb_loss", "tok_depth_loss", "tokens_per_s_per_device"} <= row.keys()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000000003.pt", "step-000000005.pt"]
    assert (out / "config.yaml").exists() and (out / "final" / "model.safetensors").exists()

    # The same run directory continues under FSDP2 from the DDP checkpoint.
    proc = run(command(out, demo_data_config, "max_steps=7", "fsdp=true", nproc=2))
    assert "resumed from" in proc.stdout and "at step 5" in proc.stdout
    assert logged_steps(out)[-2:] == [6, 7]

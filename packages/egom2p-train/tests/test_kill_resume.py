"""Kill-and-resume equivalence (SIGKILL mid-run and mid-save) and SIGTERM handling, one process."""

import os
import re
import signal
import time

import pytest
from launch import command, final_weights, run, start_and_wait_for_step, step_dirs


@pytest.mark.xdist_group("torchrun")
@pytest.mark.long(seconds=45)
def test_sigkill_mid_run_and_mid_save_then_resume_matches_uninterrupted(tmp_path, demo_data_config):
    ref = tmp_path / "ref"
    run(command(ref, demo_data_config, "schedule.max_steps=8"))

    out = tmp_path / "killed"
    cmd = command(out, demo_data_config, "schedule.max_steps=8")
    proc = start_and_wait_for_step(cmd, out, step=4)
    # step 3's checkpoint is written in the background (checkpoint.async_save): kill once it is complete
    deadline = time.monotonic() + 60
    while not (out / "checkpoints" / "step-3").is_dir() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # What a kill in the middle of the next save leaves behind: a torn temporary step directory.
    torn = out / "checkpoints" / "step-6.tmp-424242"
    torn.mkdir(exist_ok=True)
    (torn / "model.safetensors").write_bytes(b"torn")

    resumed = run(cmd)
    match = re.search(r"resumed from \S+/step-(\d+) at step (\d+)", resumed.stdout)
    assert match and match.group(1) == match.group(2) and int(match.group(2)) in (3, 6), resumed.stdout[-2000:]
    assert f"removed {torn}" in resumed.stdout and not torn.exists()
    assert step_dirs(out) == step_dirs(ref) == ["step-6", "step-8"]
    expected, got = final_weights(ref, 8), final_weights(out, 8)
    assert expected.keys() == got.keys()
    for key in expected:
        assert (expected[key] == got[key]).all(), key


@pytest.mark.xdist_group("torchrun")
@pytest.mark.long(seconds=12)
def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tmp_path, demo_data_config):
    out = tmp_path / "term"
    proc = start_and_wait_for_step(command(out, demo_data_config, "schedule.max_steps=1000", "schedule.epochs=200",
                                           "checkpoint.every_steps=1000"), out, step=2)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    output = proc.log_path.read_text()
    assert proc.returncode == 0, output[-3000:]
    assert "stop requested (SIGTERM)" in output
    steps = [int(name.removeprefix("step-")) for name in step_dirs(out)]
    assert len(steps) == 1 and steps[0] >= 2


@pytest.mark.xdist_group("torchrun")
@pytest.mark.long(seconds=40)
def test_resume_with_loader_workers_is_exact(tmp_path, demo_data_config):
    # The workers' stream positions travel in train_state.pt (a weights-only load) like the rest.
    workers = ("loader.num_workers=2", "checkpoint.every_steps=100")
    ref, split = tmp_path / "ref", tmp_path / "split"
    run(command(ref, demo_data_config, "schedule.max_steps=6", *workers))
    run(command(split, demo_data_config, "schedule.max_steps=3", *workers))
    resumed = run(command(split, demo_data_config, "schedule.max_steps=6", *workers))
    assert "at step 3" in resumed.stdout
    expected, got = final_weights(ref, 6), final_weights(split, 6)
    assert all((expected[k] == got[k]).all() for k in expected)

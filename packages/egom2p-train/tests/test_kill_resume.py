"""Kill-and-resume equivalence (SIGKILL mid-run and mid-save) and SIGTERM handling, one process."""

import os
import re
import signal

import pytest
from launch import command, final_weights, run, start_and_wait_for_step


@pytest.mark.xdist_group("torchrun")
def test_sigkill_mid_run_and_mid_save_then_resume_matches_uninterrupted(tmp_path, demo_data_config):
    ref = tmp_path / "ref"
    run(command(ref, demo_data_config, "max_steps=8"))

    out = tmp_path / "killed"
    cmd = command(out, demo_data_config, "max_steps=8")
    proc = start_and_wait_for_step(cmd, out, step=4)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # What a kill in the middle of the next save leaves behind: a torn temporary file.
    (out / "checkpoints" / ".tmp-step-000000006.pt.x1y2z3").write_bytes(b"PK\x03\x04 torn")

    resumed = run(cmd)
    match = re.search(r"resumed from \S+step-0+(\d+)\.pt at step (\d+)", resumed.stdout)
    assert match and match.group(1) == match.group(2) and int(match.group(2)) in (3, 6), resumed.stdout[-2000:]
    expected, got = final_weights(ref), final_weights(out)
    assert expected.keys() == got.keys()
    for key in expected:
        assert (expected[key] == got[key]).all(), key


@pytest.mark.xdist_group("torchrun")
def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tmp_path, demo_data_config):
    out = tmp_path / "term"
    proc = start_and_wait_for_step(command(out, demo_data_config, "max_steps=1000", "epochs=200",
                                           "checkpoint_every_steps=1000"), out, step=2)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    output = proc.log_path.read_text()
    assert proc.returncode == 0, output[-3000:]
    assert "stop requested (SIGTERM)" in output
    steps = [int(p.name[5:14]) for p in (out / "checkpoints").glob("step-*.pt")]
    assert len(steps) == 1 and steps[0] >= 2

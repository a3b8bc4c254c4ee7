"""Config-change faults: a resume with an edited config is a visible decision, and config files are read as data.

The console script's ``main`` runs in this process (``run_here``): the exit code, stdout and stderr are the
script's, without an interpreter start-up per scenario.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
import torch
from egom2p.core.config_files import MAX_ALIAS_NODES
from helpers import TINY, assert_user_error, scenario, train_here

IN_DOMAINS = "data.train.datasets.synth_full.in_domains"
WITHOUT_GAZE = "[tok_cam,tok_depth,tok_rgb]"


def tiny(data_config: Path, run: Path, *overrides: str) -> list[str]:
    """The arguments of the tiny run (``helpers.TINY``) on ``data_config`` into ``run``."""
    return [f"data={data_config}", *TINY, f"output_dir={run}", *overrides]


@pytest.fixture
def stopped_run(tmp_path, data_config, capsys) -> Path:
    """A tiny run stopped at its step-2 checkpoint."""
    run = tmp_path / "run"
    proc = train_here(capsys, *tiny(data_config, run, "schedule.max_steps=2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def steps_logged(run: Path) -> list[int]:
    return [int(line.split('"step": ')[1].split(",")[0]) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------------------------- resume with changes
@scenario("resume-data-changed")
def test_resume_data_changed(stopped_run, data_config, capsys):
    proc = train_here(capsys, *tiny(data_config, stopped_run, f"{IN_DOMAINS}={WITHOUT_GAZE}", "schedule.max_steps=3"))
    assert_user_error(proc, f"'{IN_DOMAINS}'", "'tok_gaze', 'tok_rgb'] -> ['tok_cam', 'tok_depth', 'tok_rgb']",
                      stopped_run / "checkpoints" / "step-2", f"resume.allow_changes=[{IN_DOMAINS}]")
    assert not (stopped_run / "checkpoints" / "step-3").exists() and max(steps_logged(stopped_run)) == 2


@scenario("resume-allowed-change")
def test_resume_allowed_change(stopped_run, data_config, capsys):
    proc = train_here(capsys, *tiny(data_config, stopped_run, f"{IN_DOMAINS}={WITHOUT_GAZE}", "schedule.max_steps=3",
                                  "resume.allow_changes=[data.train.datasets]"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (f"resume: {IN_DOMAINS}: ['tok_cam', 'tok_depth', 'tok_gaze', 'tok_rgb'] -> ['tok_cam', 'tok_depth', "
            "'tok_rgb'] (allowed by resume.allow_changes)") in proc.stdout.splitlines(), proc.stdout
    assert "resumed from" in proc.stdout and steps_logged(stopped_run)[-1] == 3
    # The new checkpoint remembers the config it was trained with: the next resume compares against the edit.
    state = torch.load(stopped_run / "checkpoints" / "step-3" / "train_state.pt", weights_only=True)
    assert state["config"]["data"]["train"]["datasets"]["synth_full"]["in_domains"] == ["tok_cam", "tok_depth", "tok_rgb"]


@scenario("resume-lr-changed")
def test_resume_lr_changed(stopped_run, data_config, capsys):
    proc = train_here(capsys, *tiny(data_config, stopped_run, "optim.blr=2e-4", "schedule.max_steps=3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "resume: optim.blr: 0.0001 -> 0.0002" in lines, proc.stdout
    assert any("LR schedule recomputed at step 2" in line for line in lines), proc.stdout
    assert steps_logged(stopped_run)[-1] == 3


# ----------------------------------------------------------------------------------------------- config files are data
@scenario("config-duplicate-key")
def test_config_duplicate_key(tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text("seed: 1\noptim:\n  blr: 1.0e-4\n  weight_decay: 0.05\n  blr: 1.0e-3\n")
    assert_user_error(train_here(capsys, "--config", config), config, "line 5", "duplicate key 'blr' (first at line 3)")


def billion_laughs(levels: int = 9) -> str:
    """YAML whose anchors nest ``levels`` deep, each level 9 aliases of the previous: 9**levels leaves expanded."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@scenario("config-alias-bomb")
def test_config_alias_bomb(tmp_path, capsys):
    config = tmp_path / "laughs.yaml"
    config.write_text(billion_laughs())
    tracemalloc.start()
    start = time.perf_counter()
    try:
        proc = train_here(capsys, "--config", config)
        seconds, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 5 and peak < 50 * 2**20, (seconds, peak)
    assert_user_error(proc, config, "line 6", f"beyond {MAX_ALIAS_NODES} nodes")  # 9 + 10 * 9**4 > 100000 at l4


@scenario("config-is-directory")
def test_config_is_directory(tmp_path, capsys):
    assert_user_error(train_here(capsys, "--config", tmp_path), f"{tmp_path} is a folder")


@scenario("config-binary-file")
def test_config_binary_file(tmp_path, data_config, capsys):
    binary = tmp_path / "data.yaml.gz"
    binary.write_bytes(b"train:\n  weights: [1]\n\x1f\x8b\x08\x00\x00\x00")
    proc = train_here(capsys, *tiny(binary, tmp_path / "run"))
    assert_user_error(proc, binary, "line 3", "a binary file")


@scenario("config-symlink-loop")
def test_config_symlink_loop(tmp_path, data_config, capsys):
    loop = tmp_path / "modalities.yaml"
    loop.symlink_to(loop.name)
    proc = train_here(capsys, *tiny(data_config, tmp_path / "run", f"model.modalities={loop}"))
    assert_user_error(proc, "model.modalities", loop, "symlink loop")


@scenario("config-file-as-folder")
def test_config_file_as_folder(tmp_path, capsys):
    (tmp_path / "train.yaml").write_text("seed: 1\n")
    assert_user_error(train_here(capsys, "--config", tmp_path / "train.yaml" / "x.yaml"),
                      f"{tmp_path / 'train.yaml'} is a file, not a folder")

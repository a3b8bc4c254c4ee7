"""Integrity scenarios: damaged step directories against resume and generate, a config dtype the tensors do not
have, a file size limit hit mid-checkpoint, and meaningless optimizer values."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import torch
from egom2p.core.checkpoints import verify_checkpoint_dir, write_integrity
from helpers import BIN, ENV, ROOT, TINY, assert_user_error, cli, scenario, train_here
from safetensors.torch import load_file, save_file


def flip_a_byte(path: Path) -> None:
    """Flip one bit in the middle of ``path`` (inside the tensor bytes: the file still parses)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _first_run(tmp_path: Path, data_config: Path, capsys, max_steps: int) -> Path:
    """A tiny run of ``max_steps`` steps in ``tmp_path/run`` (a checkpoint every 2 steps); its checkpoints folder."""
    first = train_here(capsys, f"data={data_config}", *TINY, f"output_dir={tmp_path / 'run'}",
                              f"schedule.max_steps={max_steps}")
    assert first.returncode == 0, first.stderr[-3000:]
    return tmp_path / "run" / "checkpoints"


@scenario("ckpt-bitflip-resume")
def test_bitflip_resume(tmp_path, data_config, capsys):
    steps = _first_run(tmp_path, data_config, capsys, max_steps=4)
    flip_a_byte(steps / "step-4" / "model.safetensors")
    proc = train_here(capsys, f"data={data_config}", *TINY, f"output_dir={tmp_path / 'run'}",
                             "schedule.max_steps=6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"{steps / 'step-4' / 'model.safetensors'}: content differs" in warnings[0]
    assert f"resumed from {steps / 'step-2'} at step 2" in proc.stdout
    assert proc.stdout.strip().endswith(f"done at step 6; weights for inference in {steps / 'step-6'}")


@scenario("ckpt-bitflip-generate")
def test_bitflip_generate(tmp_path, checkpoint):
    step = tmp_path / "run" / "checkpoints" / "step-2"
    shutil.copytree(checkpoint, step)
    write_integrity(step)  # what the trainer records in each step directory
    flip_a_byte(step / "model.safetensors")
    proc = cli("egom2p-generate", "--checkpoint", tmp_path / "run", "--target", "tok_cam", "--out", tmp_path / "c.npy")
    assert_user_error(proc, step / "model.safetensors", "content differs from integrity.json")
    assert not (tmp_path / "c.npy").exists()


@scenario("ckpt-dtype-mismatch")
def test_dtype_mismatch(tmp_path, checkpoint):
    bad = tmp_path / "bad"
    shutil.copytree(checkpoint, bad)
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "dtype": "float32"}))
    weights = load_file(bad / "model.safetensors")
    key = sorted(weights)[-1]
    weights[key] = weights[key].to(torch.float16)
    save_file(weights, bad / "model.safetensors")
    write_integrity(bad)  # a writer that recorded what it wrote: the files are intact, their dtypes disagree
    proc = cli("egom2p-generate", "--checkpoint", bad, "--target", "tok_cam", "--out", tmp_path / "c.npy")
    assert_user_error(proc, bad / "config.json", "'dtype' is float32", f"tensor '{key}' is float16")


def _file_size_limit(limit: int):
    def apply() -> None:  # in the child: ulimit -f, with SIGXFSZ ignored so that the write gets EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return apply


@scenario("ckpt-disk-full")
def test_disk_full(tmp_path, data_config, capsys):
    steps = _first_run(tmp_path, data_config, capsys, max_steps=2)
    limit = (steps / "step-2" / "model.safetensors").stat().st_size // 2
    cmd = [str(BIN / "egom2p-train"), f"data={data_config}", *TINY, f"output_dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=240,
                          preexec_fn=_file_size_limit(limit))
    assert_user_error(proc, "disk full", steps / "step-4", "the older checkpoints are intact")
    assert sorted(p.name for p in steps.iterdir()) == ["step-2"] and verify_checkpoint_dir(steps / "step-2")


@scenario("memory-over-machine")
def test_memory_over_machine(tmp_path, capsys):
    proc = train_here(capsys, "--config", "cam-demo-cpu",
                      f"output_dir={tmp_path / 'run'}", "loader.batch_size=10000000")
    assert_user_error(proc, "the run needs about", "loader.batch_size", "available host memory",
                      "check_memory: false")
    assert not (tmp_path / "run" / "checkpoints").exists()


def _refused(tmp_path, data_config, capsys, override: str) -> None:
    proc = train_here(capsys, f"data={data_config}", *TINY, f"output_dir={tmp_path / 'run'}", override)
    assert_user_error(proc, f"config key '{override.split('=')[0]}'")
    assert not (tmp_path / "run").exists()


@scenario("config-zero-lr")
def test_config_zero_lr(tmp_path, data_config, capsys):
    _refused(tmp_path, data_config, capsys, "optim.blr=0")


@scenario("config-infinite-lr")
def test_config_infinite_lr(tmp_path, data_config, capsys):
    _refused(tmp_path, data_config, capsys, "optim.blr=.inf")


@scenario("config-negative-wd")
def test_config_negative_wd(tmp_path, data_config, capsys):
    _refused(tmp_path, data_config, capsys, "optim.weight_decay=-0.05")

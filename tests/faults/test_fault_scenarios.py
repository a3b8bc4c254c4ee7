"""The fault-injection suite: the scenarios of docs/reliability.md's table, run against the real console scripts.

Each test asserts the intended outcome (a one-line error naming the file, key or value and exit 2; or
survived and reported), never a traceback for a user's mistake, never silently wrong, never data lost.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    BY_ID,
    ENV,
    ROOT,
    TESTED,
    TINY,
    TINY_MODALITIES,
    assert_user_error,
    cli,
    code_pickle,
    copy_shards,
    float_tokens,
    folder_shard,
    members,
    out_of_vocab_tokens,
    replace_member,
    scenario,
    train,
    zlib_bomb,
)
from scenario_table import DOC


@pytest.fixture
def val(shards, tmp_path) -> str:
    """A private copy of the synth_full val shards (4 folders, 1 shard of 8 samples), free to damage."""
    return copy_shards(shards["val/synth_full"], tmp_path / "val")


def validate(pattern: str, *extra: object) -> subprocess.CompletedProcess:
    return cli("egom2p-data", "validate", "--data", pattern, "--modalities", TINY_MODALITIES, *extra)


# ----------------------------------------------------------------------------------------------- the table itself
def test_every_table_row_has_a_test_and_every_test_a_row():
    # Importing a module registers its tests' ids; @scenario raises there for an id without a row.
    for module in sorted(Path(__file__).parent.glob("test_*.py")):
        importlib.import_module(module.stem)
    assert set(BY_ID) - TESTED == set(), f"rows of {DOC} without a test"


# ----------------------------------------------------------------------------------------------- bad shards
@scenario("shard-truncated")
def test_shard_truncated(val):
    shard = folder_shard(val, "rgb")
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2 + 100])
    proc = validate(val)
    assert proc.returncode == 1 and str(shard) in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@scenario("shard-truncated-at-boundary")
def test_shard_truncated_at_member_boundary(shards, tmp_path):
    from egom2p.core.shards import write_tar

    train = copy_shards(shards["train/synth_full"], tmp_path / "train")  # 2 shards of 16 samples
    for folder in ("cam", "depth", "gaze", "rgb"):
        shard = folder_shard(train, folder, 0)
        write_tar(shard, members(shard)[:5])  # the first shard: 16 samples -> 5, in every folder alike
    proc = validate(train, "--expect-samples-per-shard", 16)
    assert proc.returncode == 1 and "shard-000000.tar" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@scenario("shard-empty")
def test_shard_empty(val):
    from egom2p.core.shards import write_tar

    shard = folder_shard(val, "cam")
    write_tar(shard, [])
    proc = validate(val)
    assert proc.returncode == 1 and str(shard) in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@scenario("shard-missing")
def test_shard_missing(tmp_path):
    pattern = tmp_path / "[rgb,cam]/x/shard-000000.tar"
    assert_user_error(cli("egom2p-data", "inspect", "--data", pattern), "shard-000000.tar")


@scenario("shard-float-tokens")
def test_shard_float_tokens(val):
    name = replace_member(folder_shard(val, "depth"), 0, float_tokens((2, 4, 4)))
    proc = validate(val)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1 and name in text and "float32" in text, text


@scenario("shard-out-of-vocab")
def test_shard_out_of_vocab(val):
    name = replace_member(folder_shard(val, "cam"), 0, out_of_vocab_tokens((8,), 64))
    proc = validate(val)
    assert proc.returncode == 1 and name.split(".")[0] in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@scenario("shard-zlib-bomb")
def test_shard_zlib_bomb(val):
    name = replace_member(folder_shard(val, "rgb"), 0, zlib_bomb(256))
    # Run the command in a child that reports its own peak memory afterwards: VmHWM of its own address space
    # (ru_maxrss would carry over the pytest worker's peak from before the exec).
    code = ("import re, sys; from egom2p.data.cli import main; rc = main(sys.argv[1:]); "
            "hwm = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)); "
            "print('MAXRSS_MB', hwm // 1024, file=sys.stderr); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "validate", "--data", val, "--modalities",
                           str(TINY_MODALITIES)], env=ENV, capture_output=True, text=True, timeout=180)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1 and name.split(".")[0] in text, text
    peak = int(text.split("MAXRSS_MB")[1].split()[0])
    assert peak < 1000, f"peak memory {peak} MB: the member was inflated"  # torch alone is ~400 MB


@scenario("write-dotted-keys")
def test_write_dotted_keys(tmp_path):
    for folder in ("rgb", "cam"):
        (tmp_path / "tokens" / folder).mkdir(parents=True)
        for key in ("clip.v1", "clip.v2"):
            np.save(tmp_path / "tokens" / folder / f"{key}.npy", np.zeros(8 if folder == "cam" else (2, 4, 4), np.int64))
    proc = cli("egom2p-data", "write", "--from-dir", tmp_path / "tokens", "--out", tmp_path / "out", "--dataset", "d")
    assert_user_error(proc, "clip.v1")
    assert not list((tmp_path / "out").rglob("*.tar")) if (tmp_path / "out").exists() else True


@scenario("write-mixed-suffixes")
def test_write_mixed_suffixes(tmp_path):
    folder = tmp_path / "tokens" / "cam"
    folder.mkdir(parents=True)
    np.save(folder / "other.npy", np.zeros(8, np.int64))
    np.savez_compressed(folder / "other.npz", np.zeros(8, np.int64))
    proc = cli("egom2p-data", "write", "--from-dir", tmp_path / "tokens", "--out", tmp_path / "out", "--dataset", "d")
    assert_user_error(proc, "other")


@scenario("write-outside-root")
def test_write_outside_root(tmp_path):
    folder = tmp_path / "tokens" / "cam"
    folder.mkdir(parents=True)
    np.save(folder / "a.npy", np.zeros(8, np.int64))
    proc = cli("egom2p-data", "write", "--from-dir", tmp_path / "tokens", "--out", tmp_path / "a" / "out",
               "--dataset", "../../x")
    assert_user_error(proc, "../../x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "tokens"] and not (tmp_path / "a").exists() or \
        not any((tmp_path / "a").rglob("*.tar"))
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------------------------- bad configs
@scenario("config-unknown-key")
def test_config_unknown_key(tmp_path, data_config):
    assert_user_error(train(tmp_path, data_config, "loader.batch_sise=3"), "loader.batch_sise", "loader.batch_size")


@scenario("config-wrong-type")
def test_config_wrong_type(tmp_path, data_config):
    assert_user_error(train(tmp_path, data_config, "optim.blr=fast"), "optim.blr", "fast")


@scenario("config-missing-file")
def test_config_missing_file(tmp_path):
    assert_user_error(cli("egom2p-train", "--config", tmp_path / "nope.yaml"), tmp_path / "nope.yaml")


@scenario("config-missing-data-file")
def test_config_missing_data_file(tmp_path):
    assert_user_error(train(tmp_path, tmp_path / "nope.yaml"), tmp_path / "nope.yaml")


@scenario("config-budget-too-large")
def test_config_budget_too_large(tmp_path, data_config):
    proc = train(tmp_path, data_config, "data.train.num_input_tokens=5000")
    assert_user_error(proc, "num_input_tokens")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@scenario("config-cuda-without-cuda")
def test_config_cuda_without_cuda(tmp_path, data_config):
    import torch

    assert not torch.cuda.is_available(), "this scenario needs a machine without CUDA"
    assert_user_error(train(tmp_path, data_config, "device=cuda"), "device")


@scenario("config-missing-shards")
def test_config_missing_shards(tmp_path, data_config):
    pattern = f"{tmp_path}/nowhere/[cam,depth,gaze,rgb]/synth_full/shard-000000.tar"
    proc = train(tmp_path, data_config, f"data.train.datasets.synth_full.data_path={pattern}")
    assert_user_error(proc, "synth_full")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@scenario("output-dir-not-writable")
def test_output_dir_not_writable(tmp_path, data_config):
    (tmp_path / "file").write_text("not a folder")
    proc = cli("egom2p-train", f"data={data_config}", *TINY, f"output_dir={tmp_path / 'file' / 'run'}")
    assert_user_error(proc, tmp_path / "file")


# ----------------------------------------------------------------------------------------------- bad checkpoints
@scenario("ckpt-missing")
def test_ckpt_missing(tmp_path):
    assert_user_error(cli("egom2p-convert", "--checkpoint", tmp_path / "nope.pth", "--out", tmp_path / "o"),
                      tmp_path / "nope.pth")


@scenario("ckpt-not-torch")
def test_ckpt_not_torch(tmp_path):
    (tmp_path / "ckpt.pth").write_text("hello")
    assert_user_error(cli("egom2p-convert", "--checkpoint", tmp_path / "ckpt.pth", "--out", tmp_path / "o"),
                      tmp_path / "ckpt.pth")


@scenario("ckpt-pickle-code")
def test_ckpt_pickle_code(tmp_path):
    marker = tmp_path / "EXECUTED"
    path = code_pickle(tmp_path / "evil.pth", marker, {"model": {}, "args": {}})
    proc = cli("egom2p-convert", "--checkpoint", path, "--out", tmp_path / "o")
    assert not marker.exists(), "unpickling ran code from the checkpoint"
    assert_user_error(proc, path)


@scenario("ckpt-wrong-shapes")
def test_ckpt_wrong_shapes(tmp_path, checkpoint):
    bad = tmp_path / "bad"
    shutil.copytree(checkpoint, bad)
    config = json.loads((bad / "config.json").read_text())
    config["dim"] = 72  # a valid model, but not the one these weights belong to
    (bad / "config.json").write_text(json.dumps(config))
    proc = cli("egom2p-generate", "--checkpoint", bad, "--target", "tok_cam", "--out", tmp_path / "cam.npy")
    assert_user_error(proc, bad / "config.json", "integrity.json recorded")  # the edit is seen first
    (bad / "integrity.json").unlink()  # as its message says, for an edit made on purpose
    proc = cli("egom2p-generate", "--checkpoint", bad, "--target", "tok_cam", "--out", tmp_path / "cam.npy")
    assert_user_error(proc, bad, "the config makes", "has shape")
    assert not (tmp_path / "cam.npy").exists()


@scenario("resume-pickle-code")
def test_resume_pickle_code(tmp_path, data_config, checkpoint):
    step = tmp_path / "run" / "checkpoints" / "step-2"
    shutil.copytree(checkpoint, step)
    marker = tmp_path / "EXECUTED"
    code_pickle(step / "train_state.pt", marker, {"step": 2})
    proc = train(tmp_path, data_config)
    assert not marker.exists(), "resume ran code from train_state.pt"
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"skipping unreadable checkpoint {step}" in proc.stderr


# ----------------------------------------------------------------------------------------------- generate, eval
@scenario("generate-float-cond")
def test_generate_float_cond(tmp_path, checkpoint):
    np.save(tmp_path / "rgb.npy", np.full((2, 4, 4), 3.7, np.float32))
    proc = cli("egom2p-generate", "--checkpoint", checkpoint, "--cond", f"tok_rgb={tmp_path / 'rgb.npy'}",
               "--target", "tok_cam", "--out", tmp_path / "cam.npy")
    assert_user_error(proc, tmp_path / "rgb.npy")
    assert not (tmp_path / "cam.npy").exists()


@scenario("generate-out-of-vocab-cond")
def test_generate_out_of_vocab_cond(tmp_path, checkpoint):
    tokens = np.zeros((2, 4, 4), np.int64)
    tokens[0, 0, 0] = 64
    np.save(tmp_path / "rgb.npy", tokens)
    proc = cli("egom2p-generate", "--checkpoint", checkpoint, "--cond", f"tok_rgb={tmp_path / 'rgb.npy'}",
               "--target", "tok_cam", "--out", tmp_path / "cam.npy")
    assert_user_error(proc, "tok_rgb")


@scenario("eval-missing-target")
def test_eval_missing_target(shards, checkpoint):
    proc = cli("egom2p-eval", "--checkpoint", checkpoint, "--data", shards["val/synth_nogaze"], "--task", "rgb2gaze")
    assert_user_error(proc, "tok_gaze", code=1)
    assert "nan" not in proc.stdout


@scenario("eval-missing-shards")
def test_eval_missing_shards(tmp_path, checkpoint):
    pattern = f"{tmp_path}/[rgb,cam]/x/shard-000000.tar"
    assert_user_error(cli("egom2p-eval", "--checkpoint", checkpoint, "--data", pattern, "--task", "rgb2cam"),
                      "shard-000000.tar")


# ----------------------------------------------------------------------------------------------- kills
@scenario("kill-9-resume")
def test_kill_9_and_resume(tmp_path, data_config):
    out = tmp_path / "run"
    cmd = [str(Path(sys.executable).parent / "egom2p-train"), f"data={data_config}", *TINY, f"output_dir={out}"]
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 180
    while not (out / "checkpoints" / "step-2" / "model.safetensors").exists():
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    proc = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    resumed_at = int(proc.stdout.split("at step ")[1].split()[0])
    assert resumed_at >= 2 and steps[-1] == 16 and sorted(set(steps)) == list(range(1, 17))

"""The command-line surface: frozen options, examples in --help, --print-config, --dry-run, errors exit 2 naming the key."""

import json
import subprocess
import sys

import pytest
import yaml
from egom2p.core.presets import preset_file
from egom2p.train import __version__
from egom2p.train.cli import build_parser, main
from egom2p.train.config import load_config
from launch import ENV, ROOT, TINY, logged_steps, train_command

DEMO = "demo-cpu"  # the shipped config, by name
RELEASED = str(ROOT / "configs/train/egom2p-b-released.yaml")


def test_cli_surface_is_frozen():
    actions = {a.dest: a.option_strings for a in build_parser()._actions}
    assert actions == {"help": ["-h", "--help"], "config": ["--config", "-c"], "print_config": ["--print-config"],
                       "dry_run": ["--dry-run"], "world_size": ["--world-size"], "version": ["--version"],
                       "overrides": []}


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "torchrun --standalone --nproc_per_node=8 -m egom2p.train" in text and "schedule.max_steps=20" in text
    assert "--print-config" in text and "--dry-run --world-size 256" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"egom2p-train {__version__}"


def test_bad_override_exits_2_naming_the_key(capsys):
    assert main(["--config", DEMO, "loader.batch_sise=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line, no traceback
    assert "unknown config key 'loader.batch_sise'" in err and "did you mean 'loader.batch_size'" in err


def test_missing_config_file_exits_2(capsys, tmp_path):
    assert main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_print_config_prints_the_resolved_tree_and_it_loads_back(capsys, tmp_path):
    assert main(["--config", DEMO, "--print-config", "model.dim=48", "data.train.num_input_tokens=32"]) == 0
    text = capsys.readouterr().out
    tree = yaml.safe_load(text)
    assert tree["model"]["dim"] == 48 and tree["model"]["mlp_ratio"] == 4.0 and tree["loader"]["batch_size"] == 32
    assert tree["data"]["train"]["num_input_tokens"] == 32
    assert tree["model"]["modalities"] == preset_file("modalities", "tiny")  # the name resolved to the shipped file
    (tmp_path / "resolved.yaml").write_text(text)
    assert load_config(tmp_path / "resolved.yaml") == load_config(DEMO, ["model.dim=48", "data.train.num_input_tokens=32"])


@pytest.mark.parametrize("world_size", [8, 64, 256])
def test_dry_run_prints_the_released_schedule_as_one_json_line(capsys, world_size):
    """The released recipe is world-size independent: the same global batch, lr and steps on 8, 64 or 256 GPUs."""
    assert main(["--config", RELEASED, "--dry-run", "--world-size", str(world_size)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    report = json.loads(out)
    assert report["global_batch_size"] == 1024 and report["peak_lr"] == pytest.approx(4e-4)
    assert report["warmup_steps"] == 2385 and report["total_steps"] == 120048
    assert report["micro_batch"] * report["accum_iter"] * world_size == 1024


@pytest.mark.parametrize("argv", [["--world-size", "8"], ["--dry-run", "--world-size", "0"], ["--no-such-option"]])
def test_usage_errors_exit_2_with_one_line(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(["--config", RELEASED, *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("egom2p-train: error: ") and "see egom2p-train --help" in err


def test_help_shows_every_option_documented_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for action in build_parser()._actions:
        assert action.help, action.dest
    assert "(default: $WORLD_SIZE, else 1)" in text and "Exit codes:" in text and "egom2p-train plot" in text


def test_runs_from_any_directory_and_evaluates_with_init_from(tmp_path):
    """A shipped config with an absolute path, from an unrelated working directory: its own relative paths resolve
    against the repository, command-line paths against the working directory."""
    subprocess.run([sys.executable, "-m", "egom2p.data.cli", "synth", "--out", "data", "--train-samples", "32",
                    "--val-samples", "8", "--samples-per-shard", "16"], cwd=tmp_path, env=ENV, check=True,
                   capture_output=True)
    data = ["data.train.datasets.synth_full.data_path=data/train/[cam,depth,gaze,rgb]/synth_full/shard-{000000..000001}.tar",
            "data.train.datasets.synth_nogaze.data_path=data/train/[cam,depth,rgb]/synth_nogaze/shard-{000000..000001}.tar",
            "data.val.datasets.synth_full.data_path=data/val/[cam,depth,gaze,rgb]/synth_full/shard-000000.tar",
            "data.val.datasets.synth_nogaze.data_path=data/val/[cam,depth,rgb]/synth_nogaze/shard-000000.tar"]
    tiny = [o for o in TINY if not o.startswith("model.modalities")]  # the demo config's own, relative, path is used
    done = subprocess.run([*train_command(), "--config", DEMO, *data, *tiny, "schedule.max_steps=2", "output_dir=run"],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert logged_steps(tmp_path / "run") == [1, 2] and (tmp_path / "run/checkpoints/step-2/model.safetensors").is_file()

    # The run's curves, drawn headless from its metrics.jsonl by the console command.
    done = subprocess.run([sys.executable, "-m", "egom2p.train", "plot", "run"], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "egom2p-train: wrote run/metrics.png"
    assert (tmp_path / "run/metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # eval_only from init_from: validation of those weights, no training, no checkpoint.
    done = subprocess.run([*train_command(), "--config", DEMO, *data, *tiny, "output_dir=eval", "eval_only=true",
                           "checkpoint.init_from=run"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "initialised weights from " + str(tmp_path / "run") in done.stdout
    assert '"val/synth_full/loss"' in done.stdout and not (tmp_path / "eval/checkpoints").exists()
    # A checkpoint that does not fit the model section is one line naming the key.
    done = subprocess.run([*train_command(), "--config", DEMO, *data, *tiny, "model.dim=60", "output_dir=eval2",
                           "eval_only=true", "checkpoint.init_from=run"], cwd=tmp_path, env=ENV, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 2 and "config key 'checkpoint.init_from'" in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("code", ["ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES"])
def test_storage_failures_are_one_line_exit_2(capsys, monkeypatch, tmp_path, code):
    """A full disk, a quota, a file size limit, a read-only or forbidden folder met anywhere in a run (metrics,
    plots, the resolved config) is the user's environment: one line naming the path, exit 2, no traceback."""
    import errno
    import os

    import egom2p.train.trainer as trainer

    def no_room(cfg, log):
        number = getattr(errno, code)
        raise OSError(number, os.strerror(number), str(tmp_path / "run" / "metrics.jsonl"))

    monkeypatch.setattr(trainer, "run_training", no_room)
    assert main(["--config", DEMO, f"output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and f"{tmp_path / 'run' / 'metrics.jsonl'}" in err


def test_other_os_errors_are_not_hidden(monkeypatch, tmp_path):
    import egom2p.train.trainer as trainer

    def broken(cfg, log):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(trainer, "run_training", broken)
    with pytest.raises(OSError, match="Input/output error"):
        main(["--config", DEMO, f"output_dir={tmp_path / 'run'}"])

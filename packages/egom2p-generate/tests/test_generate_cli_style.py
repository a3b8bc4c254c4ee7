"""One command-line style for egom2p-generate, egom2p-eval and egom2p-convert: documented options with
their defaults, --version, the common mistakes as one line and exit 2, warnings for clamped settings,
and unconditional generation."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys

import numpy as np
import pytest
import torch
from egom2p.core.shards import encode_tokens, write_tar
from egom2p.generate import GenerationSampler, build_generation_schedule
from egom2p.generate.cli import build_parser as generate_parser
from egom2p.generate.cli import main as generate_main
from egom2p.generate.eval_cli import build_parser as eval_parser
from egom2p.generate.eval_cli import main as eval_main
from egom2p.model import EgoM2P
from egom2p.model.convert import build_parser as convert_parser
from egom2p.model.convert import main as convert_main

COMMANDS = {"egom2p-generate": (generate_parser, generate_main), "egom2p-eval": (eval_parser, eval_main),
            "egom2p-convert": (convert_parser, convert_main)}


def _run(main, argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse: --help, --version, usage errors
        code = exit_info.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_every_option_is_documented_with_its_default(prog, capsys):
    build, main = COMMANDS[prog]
    parser = build()
    shared = {"--checkpoint", "--version"}
    options = {s for a in parser._actions for s in a.option_strings}
    assert shared <= options and not [a.dest for a in parser._actions if not a.option_strings]  # no positionals
    for action in parser._actions:
        assert action.help and action.help != argparse.SUPPRESS, f"{prog}: {action.option_strings} has no help"
    code, out, _ = _run(main, ["--help"], capsys)
    assert code == 0 and "examples:" in out
    for action in parser._actions:
        quiet = action.default is None or action.default is False or action.default in ([], argparse.SUPPRESS)
        if not quiet and action.option_strings != ["--help"]:
            assert "(default: " in parser._get_formatter()._get_help_string(action), action.option_strings
    code, out, _ = _run(main, ["--version"], capsys)
    assert code == 0 and out.strip() == f"{prog} {importlib.metadata.version('egom2p-generate')}"


def test_shared_options_mean_the_same_everywhere():
    helps = {}
    for parser in (build() for build, _ in COMMANDS.values()):
        for action in parser._actions:
            for flag in action.option_strings:
                if flag in ("--checkpoint", "--data", "--dataset", "--device", "--seed"):
                    helps.setdefault(flag, set()).add((action.help, str(action.default)))
    assert all(len(v) == 1 for v in helps.values()), helps
    assert set(helps) == {"--checkpoint", "--data", "--dataset", "--device", "--seed"}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    write_tar(root / "rgb" / "val" / "shard-0.tar", [(f"k{i}.npz", encode_tokens(rng.integers(0, 256, (2, 4, 4))))
                                                     for i in range(2)])
    write_tar(root / "cam" / "val" / "shard-0.tar", [(f"k{i}.npz", encode_tokens(rng.integers(0, 64, 8)))
                                                     for i in range(2)])
    np.savez(root / "rgb.npz", rng.integers(0, 256, (2, 4, 4)))
    (root / "junk.pth").write_bytes(b"not a checkpoint")
    return root


def mistakes(checkpoint, root):
    ck = ["--checkpoint", str(checkpoint), "--device", "cpu"]
    rgb = f"tok_rgb={root / 'rgb.npz'}"
    pattern = str(root) + "/[rgb,cam]/val/shard-0.tar"
    generate = [
        ([], "the following arguments are required: --checkpoint"),
        ([*ck], "give --target MODALITY"),
        ([*ck, "--target", "tok_cam"], "--out FILE is required"),
        (["--checkpoint", str(root / "missing"), "--target", "tok_cam", "--out", "o.npz"], "missing: no such file or directory"),
        (["--checkpoint", str(root / "junk.pth"), "--target", "tok_cam", "--out", "o.npz"], "junk.pth: not a PyTorch checkpoint"),
        ([*ck, "--cond", f"tok_rgb={root / 'nope.npz'}", "--target", "tok_cam", "--out", "o.npz"], "conditioning file not found"),
        ([*ck, "--cond", rgb, "--target", "tok_cam", "--out", "o.npz", "--steps", "0"], "argument --steps: expected a positive integer"),
        ([*ck, "--target", "tok_cam", "--out", "o.npz", "--device", "gpu9"], "unknown device 'gpu9'"),
        ([*ck, "--cond", rgb, "--target", "tok_cam", "--out", "o.npz", "--steps", "3", "5"],
         "--steps: give one value or one per --target (1), got 3 5"),
        ([*ck, "--data", pattern, "--task", "rgb2cam", "--out-root", str(root / "p")], "unrecognized arguments: --out-root"),
        ([*ck, "--cond", rgb, "--target", "tok_cam", "--out", "o.npz", "--num-samples", "2"], "--num-samples is for unconditional"),
        ([*ck, "--data", pattern, "--task", "rgb2cam"], "missing --out DIR"),
        ([*ck, "--data", pattern, "--task", "rgb2cam", "--out", str(root / "p"), "--target", "tok_cam"],
         "--target: not with --data"),
        ([*ck, "--data", str(root), "--task", "rgb2cam", "--out", str(root / "p")], "also give the dataset name"),
        ([*ck, "--data", str(root) + "/[rgb,audio]/val/shard-0.tar", "--task", "rgb2cam", "--out", str(root / "p")],
         "data folders ['audio']"),
        ([*ck, "--data", str(root) + "/[cam]/val/shard-0.tar", "--task", "rgb2cam", "--out", str(root / "p")],
         "reads the tok_rgb folder 'rgb'"),
        ([*ck, "--data", str(root) + "/[rgb]/val/shard-9.tar", "--task", "rgb2cam", "--out", str(root / "p")],
         "data file not found"),
    ]
    evaluate = [
        ([*ck, "--data", pattern], "the following arguments are required: --task"),
        ([*ck, "--data", pattern, "--task", "rgbaudio"], "argument --task: unknown task 'rgbaudio'"),
        ([*ck, "--data", pattern, "--task", "rgb2audio"], "task 'rgb2audio' needs modality 'tok_audio', which this "
                                                          "checkpoint lacks"),
        ([*ck, "--data", pattern, "--task", "rgb2cam", "--max-samples", "0"], "argument --max-samples: expected a positive"),
        ([*ck, "--data", pattern, "--task", "rgb2cam", "--task", "cam2rgb", "--steps", "3", "5", "7"],
         "--steps: give one value or one per --task (2), got 3 5 7"),
        ([*ck, "--data", str(root) + "/[rgb,cam]/val/shard-7.tar", "--task", "rgb2cam"], "data file not found"),
        ([*ck, "--data", str(root / "nowhere"), "--dataset", "val", "--task", "rgb2cam"], "nowhere is not a folder"),
    ]
    return {"egom2p-generate": generate, "egom2p-eval": evaluate}


@pytest.mark.parametrize("prog", ["egom2p-generate", "egom2p-eval"])
def test_common_mistakes_exit_2_with_one_line(prog, checkpoint, shards, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main = COMMANDS[prog][1]
    for argv, expected in mistakes(checkpoint, shards)[prog]:
        code, _, err = _run(main, argv, capsys)
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"{prog}: error: "), (argv, err)
        assert expected in err, (argv, err)
    assert not (shards / "p").exists() and not list(tmp_path.iterdir())


def test_eval_exits_1_when_nothing_was_evaluated(checkpoint, shards, capsys, tmp_path):
    out = tmp_path / "r.json"
    code, stdout, err = _run(eval_main, ["--checkpoint", str(checkpoint), "--device", "cpu", "--task", "rgb2gaze",
                                         "--task", "rgb2cam", "--data", str(shards) + "/[rgb,cam]/val/shard-0.tar",
                                         "--out", str(out)], capsys)
    assert code == 1 and err.count("\n") == 1
    assert "nothing evaluated for rgb2gaze (2 samples lack tok_rgb or tok_gaze)" in err
    assert "rgb2gaze           -" in stdout and "nan" not in stdout  # the table still shows both tasks
    assert '"accuracy": null' in out.read_text()


def test_out_steps_and_batch_size_take_the_same_form_in_generate_and_eval():
    """--out is each command's main output; --steps takes one value for all or one per target / task, --batch-size
    one N, in both commands (generate's batch-inference folder was --out-root)."""
    forms = {}
    for build in (generate_parser, eval_parser):
        actions = {flag: action for action in build()._actions for flag in action.option_strings}
        assert "--out" in actions and "--out-root" not in actions
        forms[build] = [(actions[flag].nargs, actions[flag].type, actions[flag].metavar) for flag in ("--steps", "--batch-size")]
    assert forms[generate_parser] == forms[eval_parser]
    assert forms[eval_parser][0][0] == "+"


def test_eval_steps_one_for_all_or_one_per_task(checkpoint, shards, capsys, monkeypatch):
    from egom2p.generate import eval_cli

    steps, real = [], eval_cli.run_eval_task
    monkeypatch.setattr(eval_cli, "run_eval_task", lambda *a, **kw: steps.append(kw["steps"]) or real(*a, **kw))
    argv = ["--checkpoint", str(checkpoint), "--device", "cpu", "--task", "rgb2cam", "--task", "cam2rgb", "--data",
            str(shards) + "/[rgb,cam]/val/shard-0.tar"]
    for extra, want in (([], [None, None]), (["--steps", "2"], [2, 2]), (["--steps", "2", "3"], [2, 3])):
        steps.clear()
        code, _, err = _run(eval_main, [*argv, *extra], capsys)
        assert code == 0 and steps == want, (extra, err)


def test_clamped_settings_warn_in_one_line(checkpoint, shards, capsys, tmp_path):
    argv = ["--checkpoint", str(checkpoint), "--device", "cpu", "--cond", f"tok_rgb={shards / 'rgb.npz'}",
            "--target", "tok_cam", "--steps", "100", "--top-k", "500", "--out", str(tmp_path / "o.npz")]
    code, out, err = _run(generate_main, argv, capsys)
    assert code == 0 and "8 steps," in out
    assert "egom2p-generate: warning: 100 decoding steps requested for tok_cam, which has 8 tokens: 8 steps run\n" in err
    assert "egom2p-generate: warning: top-k 500 is above the vocabulary of tok_cam (64): all 64 tokens are kept" in err
    code, _, err = _run(eval_main, ["--checkpoint", str(checkpoint), "--device", "cpu", "--task", "rgb2cam", "--steps",
                                    "9", "--data", str(shards) + "/[rgb,cam]/val/shard-0.tar"], capsys)
    assert code == 0 and "egom2p-eval: warning: 9 decoding steps requested for tok_cam, which has 8 tokens" in err
    code, _, err = _run(generate_main, ["--checkpoint", str(checkpoint), "--device", "cpu", "--target", "tok_cam",
                                        "--cfg", "3", "--out", str(tmp_path / "u.npz")], capsys)
    assert code == 0 and "--cfg 3.0 does not apply to tok_cam: nothing conditions it" in err


def test_unconditional_generation_from_the_command_line(checkpoint, tmp_path, capsys):
    argv = ["--checkpoint", str(checkpoint), "--device", "cpu", "--target", "tok_cam", "--target", "tok_gaze",
            "--num-samples", "3", "--steps", "2", "--seed", "5", "--out", str(tmp_path / "u.npz")]
    code, out, _ = _run(generate_main, argv, capsys)
    assert code == 0 and "tok_cam: (3, 8)" in out
    cam, gaze = (np.load(tmp_path / f"u_{t}.npz")["arr_0"] for t in ("tok_cam", "tok_gaze"))
    assert cam.shape == (3, 8) and gaze.shape == (3, 8)
    # the Python API with the same settings: nothing conditions the camera; the gaze is guided by it
    model = EgoM2P.from_pretrained(checkpoint)
    schedule = build_generation_schedule([], ["tok_cam", "tok_gaze"], [8, 8], ["roar"] * 2, [2, 2], ["linear"] * 2,
                                         [0.01] * 2, ["constant"] * 2, [1.0, 2.0], ["constant"] * 2, True)
    empty = {"tok_cam": {"tensor": torch.zeros(3, 8, dtype=torch.long), "input_mask": torch.ones(3, 8, dtype=torch.bool),
                         "target_mask": torch.zeros(3, 8, dtype=torch.bool)}}
    want = GenerationSampler(model).generate(empty, schedule, seed=5, top_p=0.8)
    np.testing.assert_array_equal(cam, want["tok_cam"]["tensor"].numpy())
    np.testing.assert_array_equal(gaze, want["tok_gaze"]["tensor"].numpy())
    # one sample without --num-samples: written unbatched, like a token file of one sample
    assert _run(generate_main, argv[:6] + ["--out", str(tmp_path / "one.npz")], capsys)[0] == 0
    assert np.load(tmp_path / "one.npz")["arr_0"].shape == (8,)


def test_missing_optional_extras_are_one_line_hints(checkpoint, shards, capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    code, _, err = _run(eval_main, ["--checkpoint", str(checkpoint), "--device", "cpu", "--task", "rgb2cam", "--data",
                                    str(shards) + "/[rgb,cam]/val/shard-0.tar", "--save-figures", str(tmp_path)], capsys)
    assert code == 2 and err == "egom2p-eval: error: figures need matplotlib: pip install 'egom2p-generate[viz]'\n"
    monkeypatch.setitem(sys.modules, "boto3", None)
    from egom2p.core import s3

    s3._client.cache_clear()
    code, _, err = _run(eval_main, ["--checkpoint", str(checkpoint), "--device", "cpu", "--task", "rgb2cam", "--data",
                                    "s3://bucket/[rgb,cam]/val/shard-0.tar"], capsys)
    s3._client.cache_clear()
    assert code == 2 and err.startswith("egom2p-eval: error: s3:// paths need boto3: install the [s3] extra") and err.count("\n") == 1

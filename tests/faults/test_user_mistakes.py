"""User mistakes that once ended in a traceback, run through the console scripts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from egom2p.core.layout import expand_folders, expand_shard_pattern
from egom2p.core.shards import write_tar
from helpers import assert_user_error, cli, copy_shards, float_tokens, members, scenario, train


@pytest.fixture
def rgb(tmp_path):
    """One tok_rgb sample of the tiny modalities (2 x 4 x 4 ids)."""
    path = tmp_path / "rgb.npz"
    np.savez(path, np.zeros((2, 4, 4), dtype=np.int64))
    return path


@scenario("convert-out-is-file")
def test_convert_out_is_file(checkpoint, tmp_path):
    out = tmp_path / "taken"
    out.write_text("a file")
    assert_user_error(cli("egom2p-convert", "--checkpoint", checkpoint, "--out", out), out)
    assert out.read_text() == "a file"


@scenario("generate-nonfinite-guidance")
@pytest.mark.parametrize("option", ["guide", "--cfg inf", "--temp inf"])
def test_generate_nonfinite_guidance(checkpoint, rgb, tmp_path, option):
    if option == "guide":
        extra, named = ["--guide", f"tok_rgb={rgb}:nan"], ["--guide", "nan"]
    else:
        flag, value = option.split()
        extra, named = ["--cond", f"tok_rgb={rgb}", flag, value], [flag, value]
    proc = cli("egom2p-generate", "--checkpoint", checkpoint, *extra, "--target", "tok_cam", "--out", tmp_path / "g")
    assert_user_error(proc, *named)


@scenario("generate-empty-cond")
def test_generate_empty_cond(checkpoint, tmp_path):
    empty = tmp_path / "empty.npz"
    np.savez(empty, np.zeros((0, 2, 4, 4), dtype=np.int64))
    proc = cli("egom2p-generate", "--checkpoint", checkpoint, "--cond", f"tok_rgb={empty}", "--target", "tok_cam",
               "--out", tmp_path / "g")
    assert_user_error(proc, empty, "no sample")


@scenario("device-cuda-without-cuda")
def test_device_cuda_without_cuda(checkpoint, rgb, tmp_path):
    import torch

    assert not torch.cuda.is_available(), "this scenario needs a machine without CUDA"
    for script, args in (("egom2p-generate", ["--cond", f"tok_rgb={rgb}", "--target", "tok_cam", "--out", tmp_path / "g"]),
                         ("egom2p-eval", ["--data", tmp_path / "none/[rgb,cam]/s.tar", "--task", "rgb2cam"])):
        proc = cli(script, "--checkpoint", checkpoint, "--device", "cuda", *args)
        assert_user_error(proc, "--device", "CUDA is not available on this machine")


@scenario("generate-out-without-suffix")
def test_generate_out_without_suffix(checkpoint, rgb, tmp_path):
    for targets, written in ((["tok_cam"], ["clip.npz"]), (["tok_cam", "tok_depth"], ["clip_tok_cam.npz",
                                                                                       "clip_tok_depth.npz"])):
        out = tmp_path / "preds" / "clip"
        steps = ["--steps", *["2"] * len(targets)]
        target_args = [arg for t in targets for arg in ("--target", t)]
        proc = cli("egom2p-generate", "--checkpoint", checkpoint, "--cond", f"tok_rgb={rgb}", *target_args, *steps,
                   "--out", out)
        assert proc.returncode == 0, proc.stderr
        printed = [line.rsplit(" -> ", 1)[1] for line in proc.stdout.splitlines() if " -> " in line]
        assert printed == [str(out.parent / name) for name in written]
        assert all((out.parent / name).is_file() for name in written)
        for name in written:
            (out.parent / name).unlink()
        assert not any((out.parent).iterdir())


@scenario("train-domain-without-folder")
def test_train_domain_without_folder(shards, data_config, tmp_path):
    pattern = shards["train/synth_full"].replace("[cam,depth,gaze,rgb]", "[cam,depth,rgb]")
    proc = train(tmp_path, data_config, f"data.train.datasets.synth_full.data_path={pattern}")
    assert_user_error(proc, "data.train.datasets.synth_full.data_path", "tok_gaze", "folder gaze")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@scenario("train-every-sample-bad")
def test_train_every_sample_bad(shards, data_config, tmp_path):
    overrides = []
    for name in ("synth_full", "synth_nogaze"):
        pattern = copy_shards(shards[f"train/{name}"], tmp_path / "bad" / name)
        for shard in expand_shard_pattern(expand_folders(pattern)["cam"]):
            write_tar(shard, [(member, float_tokens((8,))) for member, _ in members(Path(shard))])
        overrides.append(f"data.train.datasets.{name}.data_path={pattern}")
    proc = train(tmp_path, data_config, *overrides)
    stopped = [line for line in proc.stderr.splitlines() if "stopped:" in line]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(stopped) == 1 and "samples were bad" in stopped[0] and "max_bad_fraction" in stopped[0], stopped

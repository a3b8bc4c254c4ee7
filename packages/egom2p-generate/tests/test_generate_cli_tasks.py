"""The egom2p-generate and egom2p-eval command lines and run_eval_task on tiny shards."""

import json

import numpy as np
import pytest
import torch
from egom2p.core.shards import encode_tokens, write_tar
from egom2p.generate import GenerationSampler, build_generation_schedule
from egom2p.generate.cli import main as generate_main
from egom2p.generate.eval_cli import main as eval_main
from egom2p.generate.tasks import run_eval_task
from egom2p.model import EgoM2P


@pytest.fixture(scope="module")
def run_dir(tiny_model, tmp_path_factory):
    """A trainer's run directory: checkpoints/step-N/ with model.safetensors, config.json, train_state.pt."""
    run = tmp_path_factory.mktemp("run")
    tiny_model.save_pretrained(run / "checkpoints" / "step-3")
    (run / "checkpoints" / "step-3" / "train_state.pt").write_bytes(b"")
    return run


def _write_tar(path, samples):
    write_tar(path, [(f"{key}.npz", encode_tokens(array)) for key, array in samples])


def _released_settings_cam(model, rgb):
    """rgb2cam as the eval defaults run it, one sample at a time (seed 0 each)."""
    sched = build_generation_schedule(["tok_rgb"], ["tok_cam"], [8], ["roar"], [3], ["linear"], [0.01], ["constant"],
                                      [2.0], ["constant"], True)
    out = GenerationSampler(model).generate({"tok_rgb": {"tensor": torch.as_tensor(rgb)[None]}}, sched, seed=0, top_p=0.8)
    return out["tok_cam"]["tensor"][0].numpy()


def test_generate_cli_writes_tokens_in_the_input_layout(checkpoint, tmp_path, capsys):
    rgb = np.random.default_rng(0).integers(0, 256, (2, 4, 4))
    np.savez(tmp_path / "clip.npz", rgb)
    code = generate_main(["--checkpoint", str(checkpoint), "--cond", f"tok_rgb={tmp_path / 'clip.npz'}",
                          "--target", "tok_cam", "--target", "tok_depth", "--steps", "3", "2",
                          "--cfg", "2.0", "--seed", "0", "--out", str(tmp_path / "out.npz"), "--device", "cpu"])
    assert code == 0
    cam = np.load(tmp_path / "out_tok_cam.npz")["arr_0"]
    depth = np.load(tmp_path / "out_tok_depth.npz")["arr_0"]
    assert cam.shape == (8,) and depth.shape == (2, 4, 4)
    assert "5 steps" in capsys.readouterr().out
    # one target: exactly --out, and the tokens are what the Python API generates with the same settings
    generate_main(["--checkpoint", str(checkpoint), "--cond", f"tok_rgb={tmp_path / 'clip.npz'}", "--target", "tok_cam",
                   "--out", str(tmp_path / "cam.npz"), "--device", "cpu"])
    reloaded = EgoM2P.from_pretrained(checkpoint).eval()
    np.testing.assert_array_equal(np.load(tmp_path / "cam.npz")["arr_0"], _released_settings_cam(reloaded, rgb))


def test_generate_cli_reports_bad_input(checkpoint, tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", np.zeros(5, dtype=np.int64))
    code = generate_main(["--checkpoint", str(checkpoint), "--cond", f"tok_rgb={tmp_path / 'bad.npz'}",
                          "--target", "tok_cam", "--out", str(tmp_path / "o.npz"), "--device", "cpu"])
    assert code == 2 and "tok_rgb" in capsys.readouterr().err
    np.savez(tmp_path / "big.npz", np.full((2, 4, 4), 256))  # the tiny rgb vocabulary is 256
    code = generate_main(["--checkpoint", str(checkpoint), "--cond", f"tok_rgb={tmp_path / 'big.npz'}",
                          "--target", "tok_cam", "--out", str(tmp_path / "o.npz"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "big.npz" in err and "outside the vocabulary" in err
    np.save(tmp_path / "good.npy", np.zeros((2, 4, 4), dtype=np.int64))
    code = generate_main(["--checkpoint", str(checkpoint), "--cond", f"tok_rgb={tmp_path / 'good.npy'}",
                          "--target", "tok_audio", "--out", str(tmp_path / "o.npz"), "--device", "cpu"])
    assert code == 2 and "tok_audio" in capsys.readouterr().err


def test_generate_cli_rejects_float_token_files(checkpoint, tmp_path, capsys):
    np.savez(tmp_path / "float.npz", np.zeros((2, 4, 4), dtype=np.float32))
    code = generate_main(["--checkpoint", str(checkpoint), "--cond", f"tok_rgb={tmp_path / 'float.npz'}",
                          "--target", "tok_cam", "--out", str(tmp_path / "o.npz"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "float.npz" in err and "float32" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("which", ["step", "run"])
def test_generate_cli_opens_a_step_and_a_run_directory(checkpoint, run_dir, tmp_path, which):
    rgb = np.random.default_rng(2).integers(0, 256, (2, 4, 4))
    np.savez(tmp_path / "clip.npz", rgb)
    ckpt = run_dir / "checkpoints" / "step-3" if which == "step" else run_dir
    args = ["--cond", f"tok_rgb={tmp_path / 'clip.npz'}", "--target", "tok_cam", "--device", "cpu"]
    assert generate_main(["--checkpoint", str(ckpt), *args, "--out", str(tmp_path / "a.npz")]) == 0
    assert generate_main(["--checkpoint", str(checkpoint), *args, "--out", str(tmp_path / "b.npz")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npz")["arr_0"], np.load(tmp_path / "b.npz")["arr_0"])


def test_eval_task_accuracy_on_shards(tiny_model, checkpoint, run_dir, tmp_path, capsys):
    rng = np.random.default_rng(1)
    rgbs = [rng.integers(0, 256, (2, 4, 4)) for _ in range(4)]
    truth = [_released_settings_cam(tiny_model, r) for r in rgbs]
    truth[3] = (truth[3] + 1) % 64  # one sample entirely wrong
    for shard in range(2):
        keys = range(2 * shard, 2 * shard + 2)
        _write_tar(tmp_path / "rgb" / "val" / f"shard-{shard:06d}.tar", [(f"k{i}", rgbs[i]) for i in keys])
        _write_tar(tmp_path / "cam" / "val" / f"shard-{shard:06d}.tar", [(f"k{i}", truth[i]) for i in keys])
    pattern = str(tmp_path) + "/[rgb,cam]/val/shard-{000000..000001}.tar"

    result = run_eval_task(tiny_model, pattern, "rgb2cam")
    assert result["n_samples"] == 4 and result["n_tokens"] == 32 and result["accuracy"] == pytest.approx(0.75)
    assert run_eval_task(tiny_model, pattern, "rgb2cam", max_samples=2)["accuracy"] == 1.0
    # samples without gaze are skipped and counted
    assert run_eval_task(tiny_model, str(tmp_path), "rgb2gaze", dataset="val")["n_skipped"] == 4

    code = eval_main(["--checkpoint", str(checkpoint), "--data", str(tmp_path), "--dataset", "val", "--task", "rgb2cam",
                      "--batch-size", "2", "--json", str(tmp_path / "r.json"), "--device", "cpu"])
    assert code == 0 and "rgb2cam" in capsys.readouterr().out
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved[0]["n_samples"] == 4 and saved[0]["task"] == "rgb2cam"

    # a trainer's step directory and its run directory (newest step) evaluate like the saved model
    for ckpt in (run_dir / "checkpoints" / "step-3", run_dir):
        code = eval_main(["--checkpoint", str(ckpt), "--data", pattern, "--task", "rgb2cam",
                          "--json", str(tmp_path / "s.json"), "--device", "cpu"])
        assert code == 0 and json.loads((tmp_path / "s.json").read_text())[0]["accuracy"] == pytest.approx(0.75)


def test_eval_cli_reports_bad_data_in_one_line(checkpoint, tmp_path, capsys):
    _write_tar(tmp_path / "rgb" / "val" / "shard-0.tar", [("a", np.zeros((2, 4, 4), np.int64))])
    _write_tar(tmp_path / "cam" / "val" / "shard-0.tar", [("b", np.zeros(8, np.int64))])
    for data in (str(tmp_path) + "/[rgb,cam]/val/shard-0.tar", str(tmp_path) + "/[rgb,audio]/val/shard-0.tar"):
        code = eval_main(["--checkpoint", str(checkpoint), "--data", data, "--task", "rgb2cam", "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and ("shard-0.tar" in err or "audio" in err)


def test_eval_task_errors(tiny_model):
    with pytest.raises(ValueError, match="unknown task 'rgbaudio'"):
        run_eval_task(tiny_model, [], "rgbaudio")
    with pytest.raises(ValueError, match="task 'rgb2audio' needs modality 'tok_audio', which this checkpoint lacks"):
        run_eval_task(tiny_model, [], "rgb2audio")
    with pytest.raises(ValueError, match="unknown eval settings"):
        run_eval_task(tiny_model, [], "rgb2cam", temprature=0.1)
    with pytest.raises(ValueError, match="expects 32 / 8"):
        run_eval_task(tiny_model, [{"rgb": np.zeros(5, dtype=np.int64), "cam": np.zeros(8, dtype=np.int64)}], "rgb2cam")

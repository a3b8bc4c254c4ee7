"""Decoded signals with the camera and gaze tokenizers: egom2p-generate writes poses and gaze pixels beside the
tokens (file mode and batch inference), egom2p-eval reports the camera and gaze metrics against the decoded
held-out tokens, and draws the signals. A tiny EgoM2P with 256 x 30 camera / gaze tokens and the tiny tokenizer
presets (random weights) stand in for the released ones."""

from __future__ import annotations

import io
import json
import math
import shutil

import numpy as np
import pytest
import torch
from egom2p.core.modalities import load_modality_specs
from egom2p.core.shards import encode_tokens, read_tar_members, write_tar
from egom2p.generate.cli import main as generate_main
from egom2p.generate.eval_cli import main as eval_main
from egom2p.generate.signal_eval import SignalScorer, aggregate_metrics
from egom2p.generate.signals import SignalDecoder, SignalOptions
from egom2p.generate.tasks import TaskRunner
from generate_helpers import saved_checkpoint, tiny_egom2p

tokenizers = pytest.importorskip("egom2p.tokenizers")  # the [tokenizers] extra

from egom2p.tokenizers.camera import check_poses  # noqa: E402
from egom2p.tokenizers.gaze import GAZE_FRAMES, GazeFrame  # noqa: E402
from egom2p.tokenizers.metrics import CAMERA_METRICS, camera_metrics_per_window, gaze_metrics  # noqa: E402
from egom2p.tokenizers.vqvae import VQVAE  # noqa: E402

SIGNAL_MODALITIES = {
    "tok_rgb": {"vocab_size": 256, "grid": [2, 4, 4]},
    "tok_cam": {"vocab_size": 256, "length": 30},
    "tok_gaze": {"vocab_size": 256, "length": 30},
}
PNG = b"\x89PNG\r\n\x1a\n"
HOLOASSIST = GAZE_FRAMES["holoassist"]


@pytest.fixture(scope="module")
def signal_model():
    return tiny_egom2p(SIGNAL_MODALITIES, seed=1)


@pytest.fixture(scope="module")
def signal_checkpoint(signal_model, tmp_path_factory):
    return saved_checkpoint(signal_model, tmp_path_factory.mktemp("signal-ckpt"))


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """The tiny camera and gaze tokenizers (and a 64-code camera one), saved with save_pretrained."""
    root = tmp_path_factory.mktemp("tokenizers")
    torch.manual_seed(2)
    for name, model in (("cam", VQVAE.from_preset("cam-tiny")), ("gaze", VQVAE.from_preset("gaze-tiny")),
                        ("cam64", VQVAE.from_preset("cam-tiny", codebook_size=64))):
        model.save_pretrained(root / name)
    return root


@pytest.fixture(scope="module")
def decoders(tok):
    return VQVAE.from_pretrained(tok / "cam"), VQVAE.from_pretrained(tok / "gaze")


def _run(main, argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _read(path):
    return {key: np.load(io.BytesIO(data)) if ext == "npy" else np.load(io.BytesIO(data))["arr_0"]
            for key, ext, data in read_tar_members(str(path))}


def _shards(root, n=5, seed=0):
    """rgb, cam and gaze token tars of `n` samples; returns the rgb tokens in key order."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (n, 2, 4, 4))
    for folder, tokens in (("rgb", rgb), ("cam", rng.integers(0, 256, (n, 30))), ("gaze", rng.integers(0, 256, (n, 30)))):
        write_tar(root / folder / "val" / "shard-0.tar", [(f"k{i}.npz", encode_tokens(t)) for i, t in enumerate(tokens)])
    return rgb


def test_generate_writes_decoded_poses_and_gaze_beside_the_tokens(signal_checkpoint, tok, decoders, tmp_path, capsys):
    cam_tok, gaze_tok = decoders
    np.savez(tmp_path / "rgb.npz", np.random.default_rng(3).integers(0, 256, (3, 2, 4, 4)))
    argv = ["--checkpoint", str(signal_checkpoint), "--device", "cpu", "--cond", f"tok_rgb={tmp_path / 'rgb.npz'}",
            "--target", "tok_cam", "--target", "tok_gaze", "--steps", "3", "5", "--tokenizer", f"tok_cam={tok / 'cam'}",
            "--tokenizer", f"tok_gaze={tok / 'gaze'}", "--gaze-frame", "holoassist", "--out", str(tmp_path / "out.npz")]
    code, out, _ = _run(generate_main, argv, capsys)
    assert code == 0 and "tok_cam poses: (3, 60, 4, 4) -> " in out and "tok_gaze pixels: (3, 60, 2) -> " in out
    cam, gaze = np.load(tmp_path / "out_tok_cam.npz")["arr_0"], np.load(tmp_path / "out_tok_gaze.npz")["arr_0"]
    poses, pixels = np.load(tmp_path / "out_tok_cam_poses.npy"), np.load(tmp_path / "out_tok_gaze_pixels.npy")
    assert poses.shape == (3, 60, 4, 4) and poses.dtype == np.float64 and pixels.shape == (3, 60, 2)
    check_poses(poses, where="decoded poses", atol=1e-9)  # rigid camera-to-world matrices
    # exactly what the tokenizers decode from the written tokens
    np.testing.assert_array_equal(poses, cam_tok.decode_poses(torch.as_tensor(cam)))
    np.testing.assert_array_equal(pixels, gaze_tok.decode_gaze(torch.as_tensor(gaze), HOLOASSIST))
    # one sample: tokens unbatched as before, signals always with the batch dimension; explicit frame sizes
    np.savez(tmp_path / "one.npz", np.random.default_rng(4).integers(0, 256, (2, 4, 4)))
    argv = ["--checkpoint", str(signal_checkpoint), "--device", "cpu", "--cond", f"tok_rgb={tmp_path / 'one.npz'}",
            "--target", "tok_gaze", "--tokenizer", f"tok_gaze={tok / 'gaze'}", "--orig-res", "1920", "1080",
            "--resize-res", "896", "504", "--crop", "480", "480", "--out", str(tmp_path / "g.npz")]
    assert _run(generate_main, argv, capsys)[0] == 0
    tokens = np.load(tmp_path / "g.npz")["arr_0"]
    assert tokens.shape == (30,)
    frame = GazeFrame((1920, 1080), (896, 504), (480, 480))
    np.testing.assert_array_equal(np.load(tmp_path / "g_tok_gaze_pixels.npy"),
                                  gaze_tok.decode_gaze(torch.as_tensor(tokens)[None], frame))


def test_batch_inference_writes_signal_shards_and_eval_scores_them(signal_checkpoint, tok, decoders, tmp_path, capsys):
    cam_tok, _ = decoders
    _shards(tmp_path, n=5)
    ck = ["--checkpoint", str(signal_checkpoint), "--device", "cpu"]
    argv = [*ck, "--data", str(tmp_path) + "/[rgb]/val/shard-0.tar", "--task", "rgb2cam", "--out",
            str(tmp_path / "preds"), "--batch-size", "2", "--tokenizer", f"tok_cam={tok / 'cam'}"]
    assert _run(generate_main, argv, capsys)[0] == 0
    tokens = _read(tmp_path / "preds" / "cam" / "val" / "shard-0.tar")
    poses = _read(tmp_path / "preds" / "cam_poses" / "val" / "shard-0.tar")
    assert list(poses) == list(tokens) == [f"k{i}" for i in range(5)]  # the same keys in the same order
    stacked = np.stack(list(poses.values()))
    assert stacked.shape == (5, 60, 4, 4) and stacked.dtype == np.float64
    np.testing.assert_array_equal(stacked, cam_tok.decode_poses(torch.as_tensor(np.stack(list(tokens.values())))))
    # a shard whose signals are missing (e.g. generated without --tokenizer) is generated again; finished ones skip
    signal_tar = tmp_path / "preds" / "cam_poses" / "val" / "shard-0.tar"
    before = signal_tar.read_bytes()
    signal_tar.unlink()
    assert _run(generate_main, argv, capsys)[1].startswith("rgb2cam: 5 samples in 1 new shards")
    assert signal_tar.read_bytes() == before
    assert "0 samples in 0 new shards" in _run(generate_main, argv, capsys)[1]

    # the predictions as ground truth: a perfect prediction, so every metric is 0 (gt: the decoded tokens)
    (tmp_path / "preds" / "rgb" / "val").mkdir(parents=True)
    shutil.copy(tmp_path / "rgb" / "val" / "shard-0.tar", tmp_path / "preds" / "rgb" / "val" / "shard-0.tar")
    out = tmp_path / "r.json"
    code, stdout, _ = _run(eval_main, [*ck, "--task", "rgb2cam", "--batch-size", "2", "--tokenizer",
                                       f"tok_cam={tok / 'cam'}", "--data", str(tmp_path / "preds") + "/[rgb,cam]/val/shard-0.tar",
                                       "--out", str(out)], capsys)
    assert code == 0 and "signal metrics (gt: decoded tokens; tokenizer tok_cam=" in stdout
    result = json.loads(out.read_text())[0]
    assert result["accuracy"] == 1.0
    signals = result["signals"]
    assert signals["gt"] == "decoded tokens" and signals["n_samples"] == 5
    assert set(signals["mean"]) == set(signals["median"]) == set(CAMERA_METRICS)
    assert all(abs(v) < 1e-6 for stat in ("mean", "median") for v in signals[stat].values()), signals


def test_eval_metrics_are_the_tokenizer_metrics_of_each_sample(signal_model, signal_checkpoint, tok, decoders, tmp_path,
                                                               capsys):
    cam_tok, gaze_tok = decoders
    rgb = _shards(tmp_path, n=5, seed=5)
    truth = {folder: np.stack(list(_read(tmp_path / folder / "val" / "shard-0.tar").values())) for folder in ("cam", "gaze")}
    out = tmp_path / "r.json"
    argv = ["--checkpoint", str(signal_checkpoint), "--device", "cpu", "--task", "rgb2cam", "--task", "rgb2gaze",
            "--batch-size", "2", "--data", str(tmp_path) + "/[rgb,cam,gaze]/val/shard-0.tar", "--out", str(out),
            "--tokenizer", f"tok_cam={tok / 'cam'}", "--tokenizer", f"tok_gaze={tok / 'gaze'}",
            "--orig-res", "896", "504", "--resize-res", "896", "504", "--crop", "480", "480"]
    code, stdout, _ = _run(eval_main, argv, capsys)
    assert code == 0
    results = {r["task"]: r for r in json.loads(out.read_text())}
    for task, target, folder in (("rgb2cam", "tok_cam", "cam"), ("rgb2gaze", "tok_gaze", "gaze")):
        runner = TaskRunner(signal_model, task)  # the eval's generation: the same batches (2, 2, 1) and seed
        generated = np.concatenate([runner.predict(rgb[i:i + 2]) for i in range(0, 5, 2)])
        if target == "tok_cam":
            per_window = camera_metrics_per_window(cam_tok.decode_poses(torch.as_tensor(generated)),
                                                   cam_tok.decode_poses(torch.as_tensor(truth[folder])))
        else:
            pred = gaze_tok.decode_gaze(torch.as_tensor(generated), HOLOASSIST)
            true = gaze_tok.decode_gaze(torch.as_tensor(truth[folder]), HOLOASSIST)
            samples = [gaze_metrics(p, t, HOLOASSIST) for p, t in zip(pred, true)]
            per_window = {name: np.array([s[name] for s in samples]) for name in samples[0]}
        signals = results[task]["signals"]
        assert signals["n_samples"] == 5 and signals["tokenizer"] == f"{target}={tok / folder}"
        for name, values in per_window.items():
            finite = values[~np.isnan(values)]
            assert signals["mean"][name] == pytest.approx(finite.mean(), rel=1e-12), name
            assert signals["median"][name] == pytest.approx(np.median(finite), rel=1e-12), name
        assert signals["mean"][next(iter(per_window))] > 0  # random tokens: a real error
        assert f"{task:<10} {next(iter(per_window)):<20}" in stdout
    assert "ate_se3_m" in results["rgb2cam"]["signals"]["mean"] and "gaze_error_crop_px" in results["rgb2gaze"]["signals"]["mean"]


def test_aggregation_of_a_perfect_prediction_is_zero(tok):
    options = SignalOptions({"tok_cam": str(tok / "cam"), "tok_gaze": str(tok / "gaze")}, HOLOASSIST)
    decoder = SignalDecoder.load(options, load_modality_specs(SIGNAL_MODALITIES))
    truth = np.random.default_rng(6).integers(0, 256, (4, 30))
    for modality, names in (("tok_cam", set(CAMERA_METRICS)), ("tok_gaze", {"gaze_mse", "gaze_error_crop_px"})):
        scorer = SignalScorer(decoder, modality, "task")
        scorer(["a", "b"], truth[:2], truth[:2])
        scorer(["c", "d"], truth[2:], truth[2:])
        summary = scorer.summary()
        assert summary["n_samples"] == 4 and summary["gt"] == "decoded tokens"
        assert names <= set(summary["mean"])
        assert all(abs(summary[stat][name]) < 1e-6 for stat in ("mean", "median") for name in names), summary


def test_aggregate_metrics_mean_median_and_missing_values():
    per_sample = [{"a": 1.0, "b": math.nan}, {"a": 2.0, "b": math.nan}, {"a": 6.0, "b": math.nan}, {"a": 3.0}]
    assert aggregate_metrics(per_sample) == {"mean": {"a": 3.0, "b": None}, "median": {"a": 2.5, "b": None}}
    assert aggregate_metrics([{"x": 0.25}, {"x": math.nan}, {"x": 0.75}]) == {"mean": {"x": 0.5}, "median": {"x": 0.5}}
    assert aggregate_metrics([]) == {"mean": {}, "median": {}}


@pytest.mark.parametrize("source, expected", [
    ("cam64", "--tokenizer tok_cam={}: its codebook has 64 entries, the checkpoint's tok_cam vocabulary 256"),
    ("gaze", "--tokenizer tok_cam={}: a gaze tokenizer; tok_cam needs a cam tokenizer"),
    ("missing", "--tokenizer tok_cam: "),
])
def test_tokenizer_that_cannot_decode_the_checkpoint_is_one_line(signal_checkpoint, tok, tmp_path, capsys, source,
                                                                 expected):
    np.savez(tmp_path / "rgb.npz", np.zeros((2, 4, 4), np.int64))
    _shards(tmp_path, n=1)
    ck = ["--checkpoint", str(signal_checkpoint), "--device", "cpu", "--tokenizer", f"tok_cam={tok / source}"]
    for main, prog, argv in ((generate_main, "egom2p-generate", ["--cond", f"tok_rgb={tmp_path / 'rgb.npz'}",
                                                                 "--target", "tok_cam", "--out", str(tmp_path / "o.npz")]),
                             (eval_main, "egom2p-eval", ["--task", "rgb2cam", "--data",
                                                         str(tmp_path) + "/[rgb,cam]/val/shard-0.tar"])):
        code, out, err = _run(main, [*ck, *argv], capsys)
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"{prog}: error: "), err
        assert expected.format(tok / source) in err, err
        if source == "missing":
            assert str(tok / source) in err
        assert "task" not in out
    assert not (tmp_path / "o.npz").exists()


def test_token_count_mismatch_and_unknown_gaze_frame(checkpoint, tok, tmp_path, capsys):
    # the session's tiny model: tok_cam 64 x 8, so a 64-code tokenizer still makes 30 tokens, not 8
    np.savez(tmp_path / "rgb.npz", np.zeros((2, 4, 4), np.int64))
    base = ["--checkpoint", str(checkpoint), "--device", "cpu", "--cond", f"tok_rgb={tmp_path / 'rgb.npz'}",
            "--out", str(tmp_path / "o.npz")]
    code, _, err = _run(generate_main, [*base, "--target", "tok_cam", "--tokenizer", f"tok_cam={tok / 'cam64'}"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "it makes 30 tokens per window, the checkpoint's tok_cam has 8" in err
    code, _, err = _run(generate_main, [*base, "--target", "tok_gaze", "--tokenizer", f"tok_gaze={tok / 'gaze'}",
                                        "--gaze-frame", "kitchen"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--gaze-frame: unknown gaze frame 'kitchen'" in err
    code, _, err = _run(generate_main, [*base, "--target", "tok_gaze", "--tokenizer", f"tok_gaze={tok / 'gaze'}",
                                        "--orig-res", "100", "100", "--resize-res", "64", "64", "--crop", "80", "80"],
                        capsys)
    assert code == 2 and err.count("\n") == 1 and "--orig-res/--resize-res/--crop: GazeFrame.crop" in err


def test_unused_tokenizer_warns(signal_checkpoint, tok, tmp_path, capsys):
    np.savez(tmp_path / "rgb.npz", np.zeros((2, 4, 4), np.int64))
    code, _, err = _run(generate_main, ["--checkpoint", str(signal_checkpoint), "--device", "cpu", "--cond",
                                        f"tok_rgb={tmp_path / 'rgb.npz'}", "--target", "tok_gaze", "--out",
                                        str(tmp_path / "o.npz"), "--tokenizer", f"tok_cam={tok / 'cam'}"], capsys)
    assert code == 0
    assert err == "egom2p-generate: warning: --tokenizer tok_cam: nothing generates tok_cam here, so it decodes nothing\n"
    assert not list(tmp_path.glob("*_poses.npy"))


def test_eval_draws_signal_figures(signal_checkpoint, tok, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _shards(tmp_path, n=3)
    code, stdout, _ = _run(eval_main, ["--checkpoint", str(signal_checkpoint), "--device", "cpu", "--task", "rgb2cam",
                                       "--task", "rgb2gaze", "--data", str(tmp_path) + "/[rgb,cam,gaze]/val/shard-0.tar",
                                       "--tokenizer", f"tok_cam={tok / 'cam'}", "--tokenizer", f"tok_gaze={tok / 'gaze'}",
                                       "--gaze-frame", "egoexo", "--save-figures", str(tmp_path / "figs"),
                                       "--max-figures", "2"], capsys)
    assert code == 0 and "<sample key>_signals.png" in stdout
    for task in ("rgb2cam", "rgb2gaze"):
        files = sorted(p.name for p in (tmp_path / "figs" / task).iterdir())
        assert files == ["k0.png", "k0_signals.png", "k1.png", "k1_signals.png"]
        assert (tmp_path / "figs" / task / "k1_signals.png").read_bytes()[:8] == PNG

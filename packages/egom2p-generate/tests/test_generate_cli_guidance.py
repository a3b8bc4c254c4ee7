"""`egom2p-generate --guide` (multi-condition guidance) and TF32 in egom2p-generate / egom2p-eval."""

import re

import numpy as np
import pytest
import torch
from egom2p.generate import GenerationSampler, build_generation_schedule, eval_cli
from egom2p.generate.cli import main as generate_main
from egom2p.generate.cli import parse_guide
from egom2p.generate.precision import tf32_on_cuda, tf32_switches
from egom2p.model import EgoM2P


@pytest.fixture()
def token_files(tmp_path):
    rng = np.random.default_rng(0)
    files = {}
    for name, shape, vocab in (("rgb", (2, 4, 4), 256), ("depth", (2, 4, 4), 256), ("gaze", (8,), 64)):
        files[name] = tmp_path / f"{name}.npz"
        np.savez(files[name], rng.integers(0, vocab, shape))
    return files


def _tf32_flags():
    return [getattr(owner, name) for owner, name, _ in tf32_switches()]


TF32 = [value for _, _, value in tf32_switches()]


def _api_multi_guided(checkpoint, batch, conditions, targets, steps, weights):
    """The Python API with the command line's defaults (ROAR, temperature 0.01, top-p 0.8, seed 0)."""
    model = EgoM2P.from_pretrained(checkpoint).eval()
    n = len(targets)
    schedule = build_generation_schedule(
        cond_domains=list(batch), target_domains=targets, tokens_per_target=[model.modalities[t].num_tokens for t in targets],
        autoregression_schemes=["roar"] * n, decoding_steps=steps, token_decoding_schedules=["linear"] * n,
        temps=[0.01] * n, temp_schedules=["constant"] * n, cfg_scales=weights, cfg_schedules=["constant"] * n,
        cfg_grow_conditioning=True,
    )
    return GenerationSampler(model).generate_multi_guided(batch, conditions, schedule, seed=0, top_p=0.8)


def _tokens(path):
    return torch.as_tensor(np.load(path)["arr_0"])[None]


def test_guide_flags_run_the_multi_guided_sampler(checkpoint, token_files, tmp_path, capsys):
    out = tmp_path / "out.npz"
    code = generate_main(["--checkpoint", str(checkpoint), "--guide", f"tok_rgb={token_files['rgb']}:1.5",
                          "--guide", f"tok_depth={token_files['depth']}:0.5", "--target", "tok_cam",
                          "--target", "tok_gaze", "--steps", "3", "2", "--finished-weight", "0.75",
                          "--out", str(out), "--device", "cpu"])
    assert code == 0 and "5 steps" in capsys.readouterr().out
    conditions = [{"tok_rgb": {"tensor": _tokens(token_files["rgb"])}},
                  {"tok_depth": {"tensor": _tokens(token_files["depth"])}}]
    want = _api_multi_guided(checkpoint, {}, conditions, ["tok_cam", "tok_gaze"], [3, 2],
                             [[1.5, 0.5], [1.5, 0.5, 0.75]])
    for target in ("tok_cam", "tok_gaze"):
        got = np.load(tmp_path / f"out_{target}.npz")["arr_0"]
        np.testing.assert_array_equal(got, want[target]["tensor"][0].numpy())


def test_a_guide_group_of_two_modalities_with_shared_cond_inputs(checkpoint, token_files, tmp_path):
    out = tmp_path / "cam.npz"
    code = generate_main(["--checkpoint", str(checkpoint), "--cond", f"tok_gaze={token_files['gaze']}",
                          "--guide", f"tok_rgb={token_files['rgb']},tok_depth={token_files['depth']}:2",
                          "--target", "tok_cam", "--out", str(out), "--device", "cpu"])
    assert code == 0
    shared = {"tok_gaze": {"tensor": _tokens(token_files["gaze"])}}
    group = {"tok_rgb": {"tensor": _tokens(token_files["rgb"])}, "tok_depth": {"tensor": _tokens(token_files["depth"])}}
    want = _api_multi_guided(checkpoint, shared, [group], ["tok_cam"], [3], [[2.0]])
    np.testing.assert_array_equal(np.load(out)["arr_0"], want["tok_cam"]["tensor"][0].numpy())


def test_parse_guide():
    assert parse_guide("tok_rgb=a.npz:1.5") == (["tok_rgb=a.npz"], 1.5)
    assert parse_guide("tok_rgb=dir:x/a.npz,tok_depth=b.npz:-0.5") == (["tok_rgb=dir:x/a.npz", "tok_depth=b.npz"], -0.5)
    for bad in ("tok_rgb=a.npz", "tok_rgb=a.npz:", ":2", "tok_rgb=a.npz:high"):
        with pytest.raises(ValueError, match="expected MODALITY=FILE"):
            parse_guide(bad)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--guide", "tok_rgb={rgb}"], "expected MODALITY=FILE"),
        (["--guide", "tok_rgb={rgb}:2", "--cfg", "3"], "--cfg does not apply with --guide"),
        (["--guide", "tok_rgb={rgb}:2", "--no-grow-conditioning"], "--no-grow-conditioning does not apply"),
        (["--guide", "tok_rgb={rgb}:2", "--cond", "tok_rgb={rgb}"], r"condition 0 holds \['tok_rgb'\]"),
        (["--guide", "tok_rgb={rgb},tok_rgb={rgb}:2"], "tok_rgb is given twice"),
        (["--guide", "tok_audio={rgb}:2"], "--guide 'tok_audio': unknown modality"),
        (["--guide", "tok_rgb={rgb}:2", "--cond", "tok_gaze={batched}"], "mix of single-sample and batched"),
    ],
)
def test_guide_mistakes_exit_2_with_one_line(checkpoint, token_files, tmp_path, capsys, extra, message):
    np.savez(tmp_path / "batched.npz", np.zeros((3, 8), dtype=np.int64))
    extra = [e.format(rgb=token_files["rgb"], batched=tmp_path / "batched.npz") for e in extra]
    code = generate_main(["--checkpoint", str(checkpoint), *extra, "--target", "tok_cam",
                          "--out", str(tmp_path / "o.npz"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and re.search(message, err), err


def test_tf32_is_enabled_on_cuda_only_and_restored(monkeypatch):
    before = _tf32_flags()
    assert before != TF32  # torch's default keeps fp32 matmuls
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # CUDA "present"
    with tf32_on_cuda("cuda") as on:
        assert on and _tf32_flags() == TF32
    assert _tf32_flags() == before
    with tf32_on_cuda(torch.device("cuda:1")) as on:
        assert on and _tf32_flags() == TF32
    for device, enabled in (("cpu", True), ("cuda", False)):
        with tf32_on_cuda(device, enabled=enabled) as on:
            assert not on and _tf32_flags() == before
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with tf32_on_cuda("cuda") as on:
        assert not on and _tf32_flags() == before


@pytest.mark.parametrize(("device", "flags", "expected"), [("cuda", [], TF32), ("cpu", [], None),
                                                           ("cuda", ["--no-tf32"], None)])
def test_generate_cli_sets_tf32_while_generating_on_cuda(checkpoint, token_files, tmp_path, monkeypatch,
                                                         device, flags, expected):
    before = _tf32_flags()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(EgoM2P, "to", lambda self, *args, **kwargs: self)  # the CPU model stands in for CUDA
    during = []
    real = GenerationSampler.generate
    monkeypatch.setattr(GenerationSampler, "generate", lambda *a, **k: during.append(_tf32_flags()) or real(*a, **k))
    code = generate_main(["--checkpoint", str(checkpoint), "--cond", f"tok_rgb={token_files['rgb']}",
                          "--target", "tok_cam", "--out", str(tmp_path / "o.npz"), "--device", device, *flags])
    assert code == 0 and during == [expected or before] and _tf32_flags() == before


@pytest.mark.parametrize(("device", "expected"), [("cuda", TF32), ("cpu", None)])
def test_eval_cli_sets_tf32_while_evaluating_on_cuda(checkpoint, tmp_path, monkeypatch, device, expected):
    before = _tf32_flags()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(EgoM2P, "to", lambda self, *args, **kwargs: self)
    during = []

    def fake_task(model, data, task, **kwargs):
        during.append(_tf32_flags())
        return {"task": task, "accuracy": 1.0, "n_tokens": 8, "n_correct": 8, "n_samples": 1, "n_skipped": 0,
                "seconds": 0.0}

    monkeypatch.setattr(eval_cli, "run_eval_task", fake_task)
    code = eval_cli.main(["--checkpoint", str(checkpoint), "--data", str(tmp_path), "--dataset", "val",
                          "--task", "rgb2cam", "--device", device])
    assert code == 0 and during == [expected or before] and _tf32_flags() == before

"""The camera and gaze VQ-VAEs against the original's recorded outputs (tests/fixtures/tokenizers_tiny.pt).

Sizes come from the fixture's config, so the same code path runs as for the released tokenizers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from egom2p.tokenizers import camera, gaze
from egom2p.tokenizers.config import TokenizerConfig
from egom2p.tokenizers.vqvae import VQVAE

KINDS = ("cam", "gaze")


@pytest.mark.parametrize("kind", KINDS)
def test_eval_tokens_and_reconstructions_match_the_original(kind, tokenizers_tiny, fixture_model):
    entry, model = tokenizers_tiny[kind], fixture_model(kind)
    recorded = entry["eval"]
    tokens = model.tokenize(entry["input"])
    assert tokens.dtype == torch.int64
    assert torch.equal(tokens, recorded["tokens"])
    with torch.no_grad():
        recon_from_tokens = model.decode_tokens(recorded["tokens"])
        autoencoded, loss, forward_tokens = model(entry["input"], return_tokens=True)
    torch.testing.assert_close(recon_from_tokens, recorded["recon_from_tokens"], atol=1e-5, rtol=0)
    torch.testing.assert_close(autoencoded, recorded["autoencode"], atol=1e-5, rtol=0)
    assert torch.equal(forward_tokens, recorded["tokens"])
    assert loss.item() == 0.0  # the original returns no commitment loss in eval mode


@pytest.mark.parametrize("kind", KINDS)
def test_train_step_matches_the_original(kind, tokenizers_tiny, fixture_model):
    entry = tokenizers_tiny[kind]
    recorded = entry["train_step"]
    model = fixture_model(kind, threshold_ema_dead_code=0.0).train()  # the fixture's step: dead-code expiry off
    recon, code_loss = model(entry["input"])
    reconst_loss = model.reconstruction_loss(recon, entry["input"])
    loss = reconst_loss + model.config.commitment_weight * code_loss
    loss.backward()
    for name, value in (("loss", loss), ("reconst_loss", reconst_loss), ("code_loss", code_loss)):
        torch.testing.assert_close(value.detach(), recorded[name], atol=1e-5, rtol=1e-6, msg=name)
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert sorted(trainable) == sorted(recorded["grads"])
    for name, grad in recorded["grads"].items():
        torch.testing.assert_close(trainable[name].grad, grad, atol=1e-5, rtol=1e-5, msg=name)
    codebook = model.quantize._codebook
    for name, value in recorded["codebook_after"].items():
        torch.testing.assert_close(getattr(codebook, name), value, atol=1e-6, rtol=0, msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_a_fresh_model_has_the_original_position_embeddings(kind, tokenizers_tiny):
    entry = tokenizers_tiny[kind]
    model = VQVAE(TokenizerConfig.from_dict(entry["config"]))
    for part in ("encoder", "decoder"):
        table = getattr(model, part).position_embeddings
        assert not table.requires_grad
        assert torch.equal(table.detach(), entry["state_dict"][f"{part}.position_embeddings"])


def test_encode_poses_gives_the_original_tokens_from_raw_poses(tokenizers_tiny, fixture_model):
    entry, model = tokenizers_tiny["cam"], fixture_model("cam")
    for i, basis in enumerate(entry["basis"]):
        tokens = model.encode_poses(entry["raw_poses"][i : i + 1], basis=basis)
        assert torch.equal(tokens, entry["eval"]["tokens"][i : i + 1]), basis


def test_decode_poses_is_the_camera_convention_of_the_reconstruction(tokenizers_tiny, fixture_model):
    entry, model = tokenizers_tiny["cam"], fixture_model("cam")
    poses = model.decode_poses(entry["eval"]["tokens"])
    assert poses.shape == (4, 60, 4, 4) and poses.dtype == np.float64
    expected = camera.model_output_to_poses(entry["eval"]["recon_from_tokens"].double().numpy())
    np.testing.assert_allclose(poses, expected, atol=1e-4)


def test_encode_and_decode_gaze_use_the_gaze_convention(tokenizers_tiny, fixture_model):
    entry, model = tokenizers_tiny["gaze"], fixture_model("gaze")
    for i, args in enumerate(entry["convert_args"]):
        frame = gaze.GazeFrame(tuple(args["orig_res"]), tuple(args["resize_res"]), tuple(args["crop"]))
        tokens = model.encode_gaze(entry["raw_pixels"][i : i + 1], frame)
        assert torch.equal(tokens, entry["eval"]["tokens"][i : i + 1])
        pixels = model.decode_gaze(tokens, frame)
        expected = gaze.model_output_to_pixels(entry["eval"]["recon_from_tokens"][i : i + 1].double().numpy(), frame)
        assert pixels.shape == (1, 60, 2) and pixels.dtype == np.float64
        np.testing.assert_allclose(pixels, expected, atol=1e-2)  # pixels; the reconstruction agrees to 1e-5


@pytest.mark.parametrize(
    ("kind", "bad_shape", "expected"),
    [("cam", (4, 60, 3), "(B, 60, 9)"), ("cam", (60, 9), "(B, 60, 9)"), ("gaze", (2, 58, 3), "(B, 60, 3)"),
     ("gaze", (2, 60, 2), "(B, 60, 3)")],
)
def test_a_wrong_input_shape_is_a_one_line_error_naming_both_shapes(kind, bad_shape, expected, fixture_model):
    model = fixture_model(kind)
    with pytest.raises(ValueError) as err:
        model.tokenize(torch.zeros(bad_shape))
    message = str(err.value)
    assert "\n" not in message and expected in message and str(bad_shape) in message


@pytest.mark.parametrize("tokens", [torch.zeros(2, 29, dtype=torch.long), torch.full((1, 30), 256),
                                    torch.full((1, 30), -1), torch.zeros(1, 30)])
def test_bad_tokens_are_refused(tokens, fixture_model):
    with pytest.raises(ValueError, match="tokens must"):
        fixture_model("cam").decode_tokens(tokens)


def test_signal_methods_refuse_the_other_kind_and_wrong_window_shapes(fixture_model):
    with pytest.raises(ValueError, match="needs a cam tokenizer"):
        fixture_model("gaze").encode_poses(np.tile(np.eye(4), (1, 60, 1, 1)))
    with pytest.raises(ValueError, match=r"poses must have shape \(B, 60, 4, 4\), got \(60, 4, 4\)"):
        fixture_model("cam").encode_poses(np.tile(np.eye(4), (60, 1, 1)))


def test_tokenize_leaves_the_codebook_alone_even_in_train_mode(tokenizers_tiny, fixture_model):
    entry, model = tokenizers_tiny["cam"], fixture_model("cam").train()
    before = {k: v.clone() for k, v in model.quantize._codebook.state_dict().items()}
    model.tokenize(entry["input"])
    after = model.quantize._codebook.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)

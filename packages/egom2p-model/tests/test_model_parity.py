"""Parity with the original EgoM2P on the tiny fixture made by running the original code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from egom2p.model import EgoM2P, EgoM2PConfig

# Made by running the original code; fixtures/PARITY_README.md describes it. Missing = failure.
FIXTURE = Path(__file__).parent / "fixtures" / "tiny_parity.pt"


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=True)  # plain dicts, lists, strings, numbers and tensors


def _config(fx, backend: str) -> EgoM2PConfig:
    c = fx["config"]
    mods = {}
    for name in c["modalities"]:
        shape = c["token_shapes"][name]
        key = {"grid": shape} if len(shape) == 3 else {"length": shape[0]}
        mods[name] = {"vocab_size": c["vocab_sizes"][name], **key}
    return EgoM2PConfig(dim=c["dim"], encoder_depth=c["encoder_depth"], decoder_depth=c["decoder_depth"],
                        num_heads=c["num_heads"], mlp_ratio=c["mlp_ratio"], modalities=mods, attn_backend=backend)


@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_loss_mod_loss_and_logits_match_original(fixture, backend):
    model = EgoM2P.from_pretrained(fixture["state_dict"], config=_config(fixture, backend)).eval()
    expected = fixture["outputs"]
    with torch.no_grad():
        out = model(fixture["batch"], **fixture["forward_kwargs"], return_logits=True)
        token = model(fixture["batch"], **{**fixture["forward_kwargs"], "loss_type": "token"})
    tol = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.loss, expected["loss"], **tol)
    assert set(out.mod_loss) == set(expected["mod_loss"])
    for name, value in expected["mod_loss"].items():
        torch.testing.assert_close(out.mod_loss[name], value, **tol)
    torch.testing.assert_close(token.loss, expected["loss_token_type"], **tol)

    # Logits at each modality's valid decoder positions (sample-major, then position, in both layouts).
    decoder = expected["intermediates"]["decoder"]
    ids = fixture["config"]["modality_ids"]
    for name, selected in expected["per_modality_selected"].items():
        rows = expected["decoder_valid"] & (decoder["mod_mask"] == ids[name])
        assert out.num_targets[name] == selected["count"]
        torch.testing.assert_close(out.logits[name], expected["logits"][name][rows], rtol=1e-4, atol=1e-4)
        if selected["count"]:
            assert torch.equal(out.logits[name].argmax(-1), selected["argmax"])

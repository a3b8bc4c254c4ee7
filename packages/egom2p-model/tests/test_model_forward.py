"""Forward pass: token selection, masks, losses, padding and the sampler entry points."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from egom2p.core.enums import AttnBackend
from egom2p.model import EgoM2P
from egom2p.model import layers as layers_module
from egom2p.model import model as model_module
from model_helpers import random_batch, tiny_config


def _model(**overrides) -> EgoM2P:
    return EgoM2P(tiny_config(**overrides)).eval()


def _slice(batch, rows):
    return {m: {k: v[rows] for k, v in d.items()} for m, d in batch.items()}


def test_losses_with_zero_heads_are_log_vocab():
    model = _model()
    for name in model.modality_names:
        torch.nn.init.zeros_(model.decoder_embeddings[name].token_emb.weight)  # uniform logits: CE = ln V
    batch = random_batch(model.config, seed=1)
    batch["tok_gaze"]["target_mask"][:] = True  # no targets, still counts in the 'mod' denominator
    with torch.no_grad():
        mod = model(batch, loss_type="mod")
        token = model(batch, loss_type="token")
        present = model(batch, loss_type="mod_present")
    vocab = {m: s.vocab_size for m, s in model.modalities.items()}
    n = mod.num_targets
    assert n["tok_gaze"] == 0 and mod.mod_loss["tok_gaze"].item() == 0.0
    assert n == {m: int((~batch[m]["target_mask"]).sum()) for m in batch}
    with_targets = [m for m in batch if n[m]]
    assert math.isclose(mod.loss.item(), sum(math.log(vocab[m]) for m in with_targets) / 4, rel_tol=1e-5)
    assert math.isclose(present.loss.item(), sum(math.log(vocab[m]) for m in with_targets) / len(with_targets), rel_tol=1e-5)
    weights = {m: n[m] * vocab[m] for m in batch}
    expected_token = sum(math.log(vocab[m]) * weights[m] for m in batch) / sum(weights.values())
    assert math.isclose(token.loss.item(), expected_token, rel_tol=1e-5)


def test_target_sees_only_its_own_modality():
    model = _model()
    batch = random_batch(model.config, seed=2)
    changed = copy.deepcopy(batch)
    # Different rgb targets; cam targets and all inputs stay the same.
    changed["tok_rgb"]["target_mask"] = ~changed["tok_rgb"]["target_mask"] | ~changed["tok_rgb"]["input_mask"]
    with torch.no_grad():
        a = model(batch, return_logits=True).logits
        b = model(changed, return_logits=True).logits
    torch.testing.assert_close(a["tok_cam"], b["tok_cam"])
    # Within a modality targets do see each other: dropping one cam target changes the others.
    fewer = copy.deepcopy(batch)
    cam_targets = (~fewer["tok_cam"]["target_mask"][0]).nonzero().flatten()
    assert len(cam_targets) >= 2
    fewer["tok_cam"]["target_mask"][0, cam_targets[0]] = True
    with torch.no_grad():
        c = model(fewer, return_logits=True).logits["tok_cam"]
    n0 = len(cam_targets)
    assert not torch.allclose(a["tok_cam"][1:n0], c[: n0 - 1])


def test_padding_and_hidden_tokens_do_not_leak():
    model = _model()
    batch = random_batch(model.config, p_input=0.6, seed=3)
    batch["tok_rgb"]["input_mask"][0] = True  # sample 0 has fewer inputs -> padded
    with torch.no_grad():
        together = model(batch, num_encoder_tokens=30, num_decoder_tokens=30, return_logits=True)
        alone = model(_slice(batch, slice(0, 1)), return_logits=True)
        hidden = copy.deepcopy(batch)
        for d in hidden.values():  # change every token that is not an input (targets are hidden too)
            d["tensor"].view(2, -1)[d["input_mask"]] = 0
        same = model(hidden, num_encoder_tokens=30, num_decoder_tokens=30, return_logits=True)
    for name in model.modality_names:
        n0 = alone.num_targets[name]
        torch.testing.assert_close(together.logits[name][:n0], alone.logits[name], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(same.logits[name], together.logits[name])


def test_budgets_truncate_in_sorted_order_and_reject_too_large():
    model = _model()
    batch = random_batch(model.config, seed=4)
    with torch.no_grad():
        full = model(batch)
        padded = model(batch, num_encoder_tokens=36, num_decoder_tokens=36)
        cut = model(batch, num_decoder_tokens=3)
    torch.testing.assert_close(full.loss, padded.loss)
    assert sum(cut.num_targets.values()) == 6  # 3 per sample, taken from the first modality (tok_cam)
    assert cut.num_targets["tok_cam"] == 6
    total = sum(s.num_tokens for s in model.modalities.values())
    with pytest.raises(ValueError, match="num_encoder_tokens"):
        model(batch, num_encoder_tokens=total + 1)


def test_empty_context_gives_finite_loss_and_zero_cross_attention():
    model = _model()
    batch = random_batch(model.config, seed=5)
    for d in batch.values():
        d["input_mask"][0] = True  # sample 0 has no encoder input at all
    with torch.no_grad():
        mixed = model(batch, return_logits=True)
        alone = model(_slice(batch, slice(0, 1)), return_logits=True)
        ctx = model.encode(_slice(batch, slice(0, 1)))
    assert ctx.context.shape[1] == 0 and torch.isfinite(mixed.loss)
    for name in model.modality_names:
        n0 = alone.num_targets[name]
        torch.testing.assert_close(mixed.logits[name][:n0], alone.logits[name], rtol=1e-5, atol=1e-5)
    loss = model.train()(batch).loss
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_decode_positions_matches_forward_for_one_target_modality():
    model = _model()
    batch = random_batch(model.config, seed=6)
    for name in ("tok_depth", "tok_gaze", "tok_rgb"):
        batch[name]["target_mask"][:] = True
    batch["tok_cam"]["target_mask"][:] = True
    batch["tok_cam"]["target_mask"][:, [1, 4]] = False
    batch["tok_cam"]["input_mask"][:, [1, 4]] = True
    with torch.no_grad():
        out = model(batch, return_logits=True)
        ctx = model.encode(batch)
        logits = model.decode_positions(ctx, "tok_cam", torch.tensor([[1, 4], [1, 4]]))
    assert logits.shape == (2, 2, 16)
    torch.testing.assert_close(logits.reshape(4, 16), out.logits["tok_cam"], rtol=1e-5, atol=1e-5)
    assert ctx.key_lengths.dtype == torch.int32


def test_backends_agree_in_float64_forward_and_backward():
    batch = random_batch(tiny_config(), seed=7)
    results = []
    for backend in ("reference", "sdpa"):
        torch.manual_seed(0)
        model = EgoM2P(tiny_config(attn_backend=backend)).double()
        loss = model(batch).loss
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)


def test_fused_loss_flag_uses_the_kernel_entry_point(monkeypatch):
    model = _model(fused_loss=True)
    batch = random_batch(model.config, seed=8)
    from egom2p.model.kernels import fused_linear_ce

    calls = []
    kernel = fused_linear_ce.fused_linear_cross_entropy
    monkeypatch.setattr(fused_linear_ce, "fused_linear_cross_entropy", lambda *a, **kw: calls.append(1) or kernel(*a, **kw))
    with torch.no_grad():
        fused = model(batch).loss
        assert calls  # the flag took the fused path
        model.config.fused_loss = False
        plain = model(batch).loss
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)


def test_check_vocab_false_skips_the_token_id_check():
    model = _model()
    batch = random_batch(model.config, seed=10)
    unused = batch["tok_rgb"]["input_mask"][0] & batch["tok_rgb"]["target_mask"][0]
    slot = int(unused.nonzero()[0])  # a token that is neither an input nor a target
    with torch.no_grad():
        reference = model(batch).loss
        batch["tok_rgb"]["tensor"].view(2, -1)[0, slot] = 10**6  # outside the vocabulary, never looked up
        with pytest.raises(ValueError, match=r"tok_rgb.*outside the vocabulary"):
            model(batch)
        with pytest.raises(ValueError, match=r"tok_rgb.*outside the vocabulary"):
            model.encode(batch)
        assert torch.equal(model(batch, check_vocab=False).loss, reference)
        assert model.encode(batch, check_vocab=False).context.shape[0] == 2


def test_attention_backend_is_resolved_when_built_and_moved(monkeypatch):
    calls = []
    real = model_module.resolve_backend
    monkeypatch.setattr(model_module, "resolve_backend", lambda *a: calls.append(a) or real(*a))
    model = _model(attn_backend="auto")
    assert model.attn_backend is AttnBackend.SDPA and len(calls) == 1  # auto on CPU
    batch = random_batch(model.config, seed=11)
    with torch.no_grad():
        model(batch)
        model.decode_positions(model.encode(batch), "tok_cam", torch.tensor([[0], [1]]))
    assert len(calls) == 1  # not per forward
    model.to(torch.float64)  # every move re-resolves `auto` for the model's device
    assert len(calls) == 2 and calls[-1] == ("auto", torch.device("cpu"), False)
    assert _model(attn_backend="reference").attn_backend is AttnBackend.REFERENCE
    assert all(m.backend is AttnBackend.SDPA for m in model.modules() if isinstance(m, layers_module.AttentionLayer))
    with pytest.raises(ValueError, match=r"loss_type: 'mean' is not one of \['mod', 'token', 'mod_present', 'weighted_mod'\]"):
        model(batch, loss_type="mean")


def test_every_attention_call_runs_the_backend_resolved_at_the_last_move(monkeypatch):
    """The model resolves once per build or move and its attention layers hold the result: the forward runs it
    without passing or parsing a backend."""
    model = _model(attn_backend="auto")
    monkeypatch.setattr(model_module, "resolve_backend", lambda *a: AttnBackend.REFERENCE)  # as on another device
    model.to(torch.float64)
    assert model.attn_backend is AttnBackend.REFERENCE
    seen, real = [], layers_module.attention
    monkeypatch.setattr(layers_module, "attention", lambda *a, **kw: seen.append(kw["backend"]) or real(*a, **kw))
    with torch.no_grad():
        model(random_batch(model.config, seed=3))
    config = model.config
    assert len(seen) == config.encoder_depth + 2 * config.decoder_depth  # self-attention, and the decoder's cross
    assert all(backend is AttnBackend.REFERENCE for backend in seen)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b.update(tok_depthx=b["tok_cam"]), "unknown modality 'tok_depthx'"),
        (lambda b: b["tok_cam"].update(tensor=b["tok_cam"]["tensor"][:, :5]), r"tok_cam.*shape"),
        (lambda b: b["tok_rgb"]["tensor"].view(-1).__setitem__(0, 32), r"tok_rgb.*vocabulary"),
        (lambda b: b["tok_gaze"].update(input_mask=b["tok_gaze"]["input_mask"].int()), r"tok_gaze.*input_mask.*bool"),
        (lambda b: b["tok_cam"].pop("target_mask"), r"tok_cam.*target_mask"),
        (lambda b: b["tok_cam"].update(tensor=b["tok_cam"]["tensor"].float()), r"tok_cam.*integer"),
    ],
)
def test_bad_batches_raise_clear_errors(mutate, message):
    model = _model()
    batch = random_batch(model.config, seed=9)
    mutate(batch)
    with pytest.raises(ValueError, match=message):
        model(batch)


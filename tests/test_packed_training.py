"""egom2p-data's packed batches through egom2p-model: the losses, per-modality losses and gradients of
the unpacked batch (to 1e-5), on random batches with samples that have no inputs or no targets and on
the demo masking; and the packed training step compiles as one graph."""

from __future__ import annotations

import pytest
import torch
from egom2p.data.masking import UnifiedMasking
from egom2p.data.packing import pack_batch
from egom2p.model import EgoM2P, EgoM2PConfig

MODALITIES = "tiny"  # the shipped modalities preset, by name
TOL = dict(rtol=1e-5, atol=1e-5)


def _model(**overrides) -> EgoM2P:
    torch.manual_seed(0)
    config = dict(dim=24, encoder_depth=2, decoder_depth=2, num_heads=2, modalities=MODALITIES, attn_backend="sdpa")
    return EgoM2P(EgoM2PConfig(**{**config, **overrides}))


def _random_batch(model: EgoM2P, batch_size: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    batch = {}
    for name, spec in model.modalities.items():
        u = torch.rand(batch_size, spec.num_tokens, generator=gen)
        p_in, p_tg = torch.rand(2, generator=gen).tolist()
        batch[name] = {"tensor": torch.randint(0, spec.vocab_size, (batch_size, *spec.shape), generator=gen),
                       "input_mask": ~(u < p_in * 0.6), "target_mask": ~((u >= p_in * 0.6) & (u < p_in * 0.6 + p_tg * 0.4))}
    for d in batch.values():
        d["input_mask"][0] = True  # sample 0 has no inputs
        d["target_mask"][1] = True  # sample 1 has no targets
    return batch


def _run(model: EgoM2P, batch, **kwargs):
    model.zero_grad(set_to_none=True)
    out = model(batch, check_vocab=False, **kwargs)
    out.loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out, grads


def _assert_same(packed_run, plain_run):
    (out, grads), (want, want_grads) = packed_run, plain_run
    torch.testing.assert_close(out.loss, want.loss, **TOL)
    assert out.mod_loss.keys() == want.mod_loss.keys()
    for name in want.mod_loss:
        torch.testing.assert_close(out.mod_loss[name], want.mod_loss[name], **TOL)
        assert int(out.num_targets[name]) == int(want.num_targets[name])
    assert grads.keys() == want_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, want_grads[name], **TOL, msg=name)


@pytest.mark.parametrize("loss_type", ["mod", "weighted_mod", "token", "mod_present"])
@pytest.mark.parametrize("num_rows", [1, 2])
def test_packed_and_unpacked_batches_give_the_same_losses_and_gradients(loss_type, num_rows):
    model = _model()
    for seed in range(3):
        batch = _random_batch(model, batch_size=5, seed=seed)
        if seed == 2:
            del batch["tok_gaze"]  # a dataset without gaze
        budgets = (30, 20) if seed else (None, None)
        plain = _run(model, batch, num_encoder_tokens=budgets[0], num_decoder_tokens=budgets[1], loss_type=loss_type)
        packed = _run(model, pack_batch(batch, *budgets, num_rows=num_rows, multiple=16), loss_type=loss_type)
        _assert_same(packed, plain)


@pytest.mark.parametrize("overrides", [dict(decoder_sep_mask=False), dict(decoder_causal_mask=True), dict(qk_norm=True)])
def test_packing_keeps_the_decoder_mask_variants(overrides):
    model = _model(**overrides)
    batch = _random_batch(model, batch_size=4, seed=7)
    _assert_same(_run(model, pack_batch(batch, 30, 30, multiple=8)), _run(model, batch, num_encoder_tokens=30, num_decoder_tokens=30))


def test_demo_masking_packed_step_compiles_and_matches_the_unpacked_step():
    """The demo's masking (budgets 40 / 40), packed on the CPU; the packed step compiles with fullgraph=True."""
    model = _model()
    masking = UnifiedMasking.from_config(model.modalities, list(model.modalities), list(model.modalities), 40, 40,
                                         alphas_config="demo_rgb2all_all2all")
    gen = torch.Generator().manual_seed(0)
    tensors = {n: torch.randint(0, s.vocab_size, (6, s.num_tokens), generator=gen) for n, s in model.modalities.items()}
    batch = masking.mask_batch(tensors, gen)
    packed = pack_batch(batch, 40, 40, multiple=32)
    plain = _run(model, batch, num_encoder_tokens=40, num_decoder_tokens=40)
    eager = _run(model, packed)
    _assert_same(eager, plain)

    def step(packed_batch):
        out = model(packed_batch, check_vocab=False)
        out.loss.backward()
        return out.loss.detach()

    model.zero_grad(set_to_none=True)
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        loss = torch.compile(step, fullgraph=True, dynamic=False, backend="aot_eager")(packed)
    torch.testing.assert_close(loss, eager[0].loss.detach(), **TOL)
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, eager[1][name], **TOL, msg=name)

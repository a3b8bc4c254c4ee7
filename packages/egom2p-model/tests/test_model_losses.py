"""Loss reductions, above all the original's ``weighted_mod``, against float64 restatements.

The original's reductions: docs/original-behaviour.md#losses.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from egom2p.core.enums import LossType
from egom2p.model import EgoM2P
from egom2p.model.losses import LN_256, reduce_losses, scale_mod_losses
from model_helpers import random_batch, tiny_config

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_parity.pt"  # made by the original code; missing = failure


def original_weighted_mod(mean_ce: dict[str, float], vocab: dict[str, int]) -> float:
    """The original's ``forward_weighted_mod_loss`` reduction in float64: a modality without targets adds
    an unscaled 0 (its ``logits.sum()``), the others ``L_m / ln(V_m) * 5.545177444479562``; the sum is
    divided by the number of modalities in the decoder dict, empty ones included."""
    total = 0.0
    for name, ce in mean_ce.items():
        total += 0.0 if ce is None else ce / math.log(vocab[name]) * 5.545177444479562
    return total / len(mean_ce)


def test_the_constant_is_ln_256():
    assert LN_256 == 5.545177444479562 == math.log(256)


def test_weighted_mod_matches_the_original_on_its_own_parity_fixture():
    fx = torch.load(FIXTURE, weights_only=True)
    c = fx["config"]
    mods = {}
    for name in c["modalities"]:
        shape = c["token_shapes"][name]
        mods[name] = {"vocab_size": c["vocab_sizes"][name], **({"grid": shape} if len(shape) == 3 else {"length": shape[0]})}
    config = tiny_config(dim=c["dim"], encoder_depth=c["encoder_depth"], decoder_depth=c["decoder_depth"],
                         num_heads=c["num_heads"], mlp_ratio=c["mlp_ratio"], modalities=mods)
    model = EgoM2P.from_pretrained(fx["state_dict"], config=config).eval()
    with torch.no_grad():
        out = model(fx["batch"], **{**fx["forward_kwargs"], "loss_type": "weighted_mod"})

    # The restatement starts from the original's own logits and target ids, recomputed in float64.
    expected, decoder = fx["outputs"], fx["outputs"]["intermediates"]["decoder"]
    mean_ce = {}
    for name in c["modalities"]:
        selected = expected["per_modality_selected"][name]
        rows = expected["decoder_valid"] & (decoder["mod_mask"] == c["modality_ids"][name])
        logits = expected["logits"][name][rows].double()
        mean_ce[name] = (
            torch.nn.functional.cross_entropy(logits, selected["target_ids"]).item() if selected["count"] else None
        )
    assert None in mean_ce.values()  # the fixture has a modality without targets: it counts in the mean
    want = original_weighted_mod(mean_ce, c["vocab_sizes"])
    assert math.isclose(out.loss.item(), want, rel_tol=2e-6)
    assert not math.isclose(out.loss.item(), expected["loss"].item(), rel_tol=1e-3)  # differs from 'mod'


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_weighted_mod_on_random_batches_with_empty_modalities(seed):
    model = EgoM2P(tiny_config()).eval()
    vocab = {m: s.vocab_size for m, s in model.modalities.items()}
    batch = random_batch(model.config, batch_size=3, seed=seed)
    empty = sorted(batch)[seed % 4]
    batch[empty]["target_mask"][:] = True  # this modality has no targets in the batch
    if seed == 3:
        batch = {m: d for m, d in batch.items() if m != "tok_depth"}  # and a modality left out entirely
    with torch.no_grad():
        mod = model(batch, loss_type="mod")
        weighted = model(batch, loss_type=LossType.WEIGHTED_MOD)
    mean_ce = {m: (mod.mod_loss[m].double().item() if mod.num_targets[m] else None) for m in batch}
    assert mean_ce[empty] is None
    assert math.isclose(weighted.loss.item(), original_weighted_mod(mean_ce, vocab), rel_tol=2e-6)


def test_weighted_mod_with_uniform_heads_is_ln_256_per_modality_with_targets():
    model = EgoM2P(tiny_config()).eval()
    for name in model.modality_names:
        torch.nn.init.zeros_(model.decoder_embeddings[name].token_emb.weight)  # uniform logits: CE = ln V
    batch = random_batch(model.config, seed=4)
    batch["tok_gaze"]["target_mask"][:] = True
    with torch.no_grad():
        out = model(batch, loss_type="weighted_mod")
    assert math.isclose(out.loss.item(), 3 * math.log(256) / 4, rel_tol=1e-6)
    # the reported per-modality losses are the rescaled ones, as the original logs them
    for name in ("tok_cam", "tok_depth", "tok_rgb"):
        assert math.isclose(out.mod_loss[name].item(), math.log(256), rel_tol=1e-6)


def test_weighted_mod_backpropagates_to_every_head_including_empty_ones():
    model = EgoM2P(tiny_config())
    batch = random_batch(model.config, seed=5)
    batch["tok_cam"]["target_mask"][:] = True
    model(batch, loss_type="weighted_mod").loss.backward()
    grads = {m: model.decoder_embeddings[m].head_weight.grad for m in model.modality_names}
    assert all(g is not None for g in grads.values())  # graph-connected zero for the empty head (DDP)
    assert grads["tok_cam"].abs().sum() == 0 and grads["tok_rgb"].abs().sum() > 0


def test_reduce_losses_restated_in_float64():
    gen = torch.Generator().manual_seed(0)
    vocab = {"a": 2, "b": 256, "c": 64000, "d": 17}
    for _ in range(20):
        values = {m: torch.rand((), generator=gen, dtype=torch.float64) * 10 for m in vocab}
        counts = {m: int(torch.randint(0, 3, (), generator=gen)) for m in vocab}
        values = {m: v if counts[m] else torch.zeros((), dtype=torch.float64) for m, v in values.items()}
        got = reduce_losses(values, counts, vocab, "weighted_mod")
        want = original_weighted_mod({m: (values[m].item() if counts[m] else None) for m in vocab}, vocab)
        assert math.isclose(got.item(), want, rel_tol=1e-12)
        assert reduce_losses(values, counts, vocab, "mod").item() == pytest.approx(sum(v.item() for v in values.values()) / 4)


def test_scale_mod_losses_reports_what_the_original_reports():
    losses = {"tok_cam": torch.tensor(2.0), "tok_rgb": torch.tensor(3.0)}
    vocab = {"tok_cam": 256, "tok_rgb": 64000}
    scaled = scale_mod_losses(losses, vocab, "weighted_mod")
    assert scaled["tok_cam"].item() == pytest.approx(2.0)  # a 256-token codebook is the reference
    assert scaled["tok_rgb"].item() == pytest.approx(3.0 * math.log(256) / math.log(64000))
    for other in ("mod", "token", "mod_present"):
        assert scale_mod_losses(losses, vocab, other) == losses
    with pytest.raises(ValueError, match=r"\['tok_cam'\] have vocab_size 1"):
        scale_mod_losses(losses, {"tok_cam": 1, "tok_rgb": 64000}, "weighted_mod")
    with pytest.raises(ValueError, match=r"loss_type: 'weigthed_mod' is not one of .*'weighted_mod'"):
        reduce_losses(losses, {"tok_cam": 1, "tok_rgb": 1}, vocab, "weigthed_mod")

"""top-k / top-p filtering and temperature sampling (docs/original-behaviour.md#sampling)."""

import pytest
import torch
from egom2p.generate.sampling import sample_tokens, top_k_top_p_filtering


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    out = top_k_top_p_filtering(logits.clone(), top_k=2)
    assert torch.isinf(out[0, [0, 3]]).all() and out[0, 1] == 4.0 and out[0, 2] == 3.0
    frac = top_k_top_p_filtering(logits.clone(), top_k=0.5)  # a float is a fraction of V
    assert torch.equal(frac, out)
    with pytest.raises(ValueError, match="fraction"):
        top_k_top_p_filtering(logits.clone(), top_k=2.0)


def test_top_p_keeps_the_crossing_token_and_the_top1():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    out = top_k_top_p_filtering(logits.clone(), top_p=0.6)  # 0.5 < 0.6, 0.8 crosses -> keep 2
    assert torch.isfinite(out[0, :2]).all() and torch.isinf(out[0, 2:]).all()
    out = top_k_top_p_filtering(logits.clone(), top_p=0.1)  # top-1 always kept
    assert torch.isfinite(out[0, 0]) and torch.isinf(out[0, 1:]).all()
    shuffled = logits[:, [2, 0, 3, 1]]
    out = top_k_top_p_filtering(shuffled.clone(), top_p=0.6)  # works on unsorted vocab order
    assert torch.isfinite(out[0, [1, 3]]).all() and torch.isinf(out[0, [0, 2]]).all()


def test_zero_temperature_is_argmax_with_probability_one():
    logits = torch.randn(5, 11)
    tokens, probs = sample_tokens(logits, temperature=0.0, top_p=0.5)
    assert torch.equal(tokens, logits.argmax(-1)) and torch.equal(probs, torch.ones(5))


def test_sampling_is_seeded_and_respects_filters():
    logits = torch.randn(64, 50)
    a, pa = sample_tokens(logits, 1.0, top_k=3, generator=torch.Generator().manual_seed(3))
    b, pb = sample_tokens(logits, 1.0, top_k=3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(pa, pb)
    top3 = logits.topk(3, dim=-1).indices
    assert (top3 == a[:, None]).any(-1).all()
    assert logits.isfinite().all()  # the caller's logits are untouched


def test_filter_order_quirk_is_selectable():
    # Filtering before temperature (the original) keeps a different nucleus than after it
    # when the temperature is large: at T=100 the tempered distribution is nearly flat.
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    faithful = top_k_top_p_filtering(logits.clone(), top_p=0.5)
    standard = top_k_top_p_filtering(logits.clone() / 100.0, top_p=0.5)
    assert torch.isinf(faithful).sum() == 3 and torch.isinf(standard).sum() == 2
    g = torch.Generator().manual_seed(0)
    tokens, _ = sample_tokens(logits.expand(200, 4), 100.0, top_p=0.5, generator=g)
    assert set(tokens.tolist()) == {0}
    tokens, _ = sample_tokens(logits.expand(200, 4), 100.0, top_p=0.5, generator=g, filter_after_temperature=True)
    assert set(tokens.tolist()) == {0, 1}


def test_bad_inputs():
    with pytest.raises(ValueError, match="logits"):
        sample_tokens(torch.randn(2, 3, 4), 1.0)
    with pytest.raises(ValueError, match="temperature"):
        sample_tokens(torch.randn(2, 4), -1.0)

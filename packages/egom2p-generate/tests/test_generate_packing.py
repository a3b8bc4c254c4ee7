"""Guided passes run packed: each row computes only its own tokens, and generation is unchanged."""

import pytest
import torch
from egom2p.generate import GenerationSampler, build_generation_schedule


def _schedule(target, steps, cfg):
    return build_generation_schedule(
        cond_domains=["tok_rgb"], target_domains=[target], tokens_per_target=[8], autoregression_schemes=["roar"],
        decoding_steps=[steps], token_decoding_schedules=["linear"], temps=[1.0], temp_schedules=["constant"],
        cfg_scales=[cfg], cfg_schedules=["constant"], cfg_grow_conditioning=True,
    )


def _recording(model, monkeypatch):
    """Record every encoder context's computed slots and every step's logits."""
    slots, logits = [], []
    encode, decode = model.encode, model.decode_positions

    def recording_encode(batch, *args, **kwargs):
        ctx = encode(batch, *args, **kwargs)
        slots.append(ctx.context.shape[0] * ctx.context.shape[1])
        return ctx

    monkeypatch.setattr(model, "encode", recording_encode)
    monkeypatch.setattr(model, "decode_positions", lambda ctx, m, p: logits.append(decode(ctx, m, p)) or logits[-1])
    return slots, logits


@pytest.mark.parametrize("target", ["tok_cam", "tok_depth"])
def test_packed_guidance_matches_the_padded_layout_and_computes_fewer_slots(tiny_model, monkeypatch, target):
    rgb = torch.randint(0, 256, (3, 2, 4, 4), generator=torch.Generator().manual_seed(0))
    runs = {}
    for pack in (True, False):
        slots, logits = _recording(tiny_model, monkeypatch)
        out = GenerationSampler(tiny_model, pack_passes=pack).generate({"tok_rgb": {"tensor": rgb}},
                                                                      _schedule(target, 3, 2.0), seed=5, top_p=0.9)
        monkeypatch.undo()
        runs[pack] = (out[target]["tensor"], slots, logits)
    (tokens, packed_slots, packed_logits), (want, padded_slots, padded_logits) = runs[True], runs[False]
    assert torch.equal(tokens, want)
    for got, expected in zip(packed_logits, padded_logits, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # 3 conditional rows of 32 rgb tokens (+ decoded) and 3 unconditional rows of the decoded tokens:
    # padded, 6 rows as wide as a conditional one; packed, the unconditional rows share one more row
    # (none at the first step, where they are empty).
    assert all(p < q for p, q in zip(packed_slots, padded_slots, strict=True))
    assert packed_slots[0] == 3 * 32 and padded_slots[0] == 6 * 32
    decoded = _schedule(target, 3, 2.0)[0]["num_tokens"]  # after the first step
    assert packed_slots[1] == 4 * (32 + decoded)


def test_packed_multi_guidance_matches_the_padded_layout(tiny_model):
    gen = torch.Generator().manual_seed(1)
    conditions = [{"tok_rgb": {"tensor": torch.randint(0, 256, (2, 2, 4, 4), generator=gen)}},
                  {"tok_depth": {"tensor": torch.randint(0, 256, (2, 2, 4, 4), generator=gen)}}]
    schedule = [{**step, "cfg_scale": [1.5, 0.5], "cfg_cond_domains": []} for step in _schedule("tok_cam", 3, 1.0)]
    outs = [GenerationSampler(tiny_model, pack_passes=pack).generate_multi_guided({}, conditions, schedule, seed=3)
            for pack in (True, False)]
    assert torch.equal(outs[0]["tok_cam"]["tensor"], outs[1]["tok_cam"]["tensor"])

"""Multi-condition guidance (the original's generate_multi_guided) against float64 restatements."""

import pytest
import torch
from egom2p.generate import GenerationSampler, build_generation_schedule
from egom2p.generate import sampler as sampler_module
from egom2p.generate.guidance import mix_guided, mix_multi_guided


def schedule(targets=("tok_cam",), steps=(2,), scheme="roar", temp=0.0, weights=((1.5, 0.5),), cond=()):
    n = len(targets)
    return build_generation_schedule(
        cond_domains=list(cond), target_domains=list(targets), tokens_per_target=[8] * n,
        autoregression_schemes=[scheme] * n, decoding_steps=list(steps), token_decoding_schedules=["linear"] * n,
        temps=[temp] * n, temp_schedules=["constant"] * n, cfg_scales=[list(w) for w in weights],
        cfg_schedules=["constant"] * n, cfg_grow_conditioning=True,
    )


def given(tokens):
    """A fully given modality, masks spelled out (as the original's init_full_input_modality)."""
    b, n = tokens.shape[0], tokens[0].numel()
    return {"tensor": tokens, "input_mask": torch.zeros(b, n, dtype=torch.bool),
            "target_mask": torch.ones(b, n, dtype=torch.bool)}


def conditions(batch_size=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randint(0, 256, (batch_size, 2, 4, 4), generator=g)
    depth = torch.randint(0, 256, (batch_size, 2, 4, 4), generator=g)
    return [{"tok_rgb": {"tensor": rgb}}, {"tok_depth": {"tensor": depth}}]


def restated_mix(conds, uncond, weights):
    """The original's `logits_uncond + stack([w * (logits_cond - logits_uncond) ...]).sum(0)` in float64."""
    u = uncond.double()
    return u + sum(w * (c.double() - u) for w, c in zip(weights, conds))


def test_mix_matches_the_float64_formula():
    g = torch.Generator().manual_seed(0)
    uncond = torch.randn(3, 5, 11, generator=g)
    conds = [torch.randn(3, 5, 11, generator=g) * 4 for _ in range(3)]
    for weights in ([2.0], [1.5, 0.5, -0.25], [0.0, 0.0, 0.0]):
        got = mix_multi_guided(conds[: len(weights)], uncond, weights)
        torch.testing.assert_close(got.double(), restated_mix(conds, uncond, weights), rtol=1e-6, atol=1e-5)
    # one condition is bit-for-bit the single-condition mix that generate() uses
    assert torch.equal(mix_multi_guided(conds[:1], uncond, [2.5]), mix_guided(conds[0], uncond, 2.5))
    with pytest.raises(ValueError, match="2 guidance weights for 3 conditions"):
        mix_multi_guided(conds, uncond, [1.0, 2.0])


@pytest.mark.parametrize("scheme", ["roar", "maskgit"])
def test_guided_logits_are_the_original_combination_of_independent_passes(tiny_model, monkeypatch, scheme):
    """Each step's logits equal the float64 mix of the unconditional pass and one pass per condition,
    each run on its own (original layout: condition i + the target so far; uncond: the target so far)."""
    conds, weights, per_step = conditions(2), [1.5, 0.5], [3, 3, 2]
    seen, positions = [], []
    real_sample, decode = sampler_module.sample_tokens, tiny_model.decode_positions
    monkeypatch.setattr(sampler_module, "sample_tokens",
                        lambda logits, *a, **k: seen.append(logits) or real_sample(logits, *a, **k))
    monkeypatch.setattr(tiny_model, "decode_positions", lambda ctx, m, p: positions.append(p[:2]) or decode(ctx, m, p))
    sched = schedule(steps=(3,), scheme=scheme, weights=[weights])
    final = GenerationSampler(tiny_model).generate_multi_guided({}, conds, sched, seed=0)["tok_cam"]
    monkeypatch.undo()
    assert final["target_mask"].all() and not final["input_mask"].any() and len(seen) == 3

    cam = {"tensor": torch.zeros(2, 8, dtype=torch.long), "input_mask": torch.ones(2, 8, dtype=torch.bool),
           "target_mask": torch.zeros(2, 8, dtype=torch.bool)}
    for logits, pos, k in zip(seen, positions, per_step):
        batches = [{"tok_rgb": given(conds[0]["tok_rgb"]["tensor"]), "tok_cam": cam},
                   {"tok_depth": given(conds[1]["tok_depth"]["tensor"]), "tok_cam": cam}, {"tok_cam": cam}]
        with torch.no_grad():
            *c, u = [tiny_model.decode_positions(tiny_model.encode(b), "tok_cam", pos) for b in batches]
        want = restated_mix(c, u, weights)
        torch.testing.assert_close(logits.double(), want.reshape(logits.shape), rtol=1e-5, atol=1e-4)
        tokens = want.argmax(-1)
        if scheme == "maskgit":  # all remaining positions were queried; the k most confident are committed
            keep = torch.softmax(want, -1).amax(-1).topk(k, dim=1).indices
            pos, tokens = pos.gather(1, keep), tokens.gather(1, keep)
        assert pos.shape[1] == k
        assert torch.equal(final["tensor"].gather(1, pos), tokens)
        cam = {key: v.clone() for key, v in cam.items()}
        cam["tensor"].scatter_(1, pos, tokens)
        # decoded tokens are inputs in every pass (quirk 27 fixed, docs/original-behaviour.md#quirks)
        cam["input_mask"].scatter_(1, pos, False)
        cam["target_mask"].scatter_(1, pos, True)


@pytest.mark.parametrize("scheme", ["roar", "maskgit"])
def test_one_condition_equals_single_guidance(tiny_model, scheme):
    """With one condition, multi-guidance is generate()'s guidance: same tokens, sampled at temperature 1."""
    rgb = conditions(3, seed=1)[0]
    sched = dict(steps=(3,), scheme=scheme, temp=1.0)
    multi = GenerationSampler(tiny_model).generate_multi_guided({}, [rgb], schedule(**sched, weights=[[2.5]]), seed=7,
                                                                top_p=0.9)
    single_schedule = [{**step, "cfg_scale": 2.5} for step in schedule(**sched, weights=[[2.5]], cond=["tok_rgb"])]
    single = GenerationSampler(tiny_model).generate(rgb, single_schedule, seed=7, top_p=0.9)
    assert torch.equal(multi["tok_cam"]["tensor"], single["tok_cam"]["tensor"])
    assert "tok_rgb" not in multi  # the conditions are not part of the returned (unconditional) batch


def test_chained_targets_become_conditions(tiny_model):
    conds = conditions(2)
    sched = schedule(targets=("tok_cam", "tok_gaze"), steps=(2, 2), weights=[(1.5, 0.5), (1.5, 0.5, 1.0)])
    calls = []
    encode = tiny_model.encode
    tiny_model.encode = lambda b, *a, **k: calls.append({m: v["input_mask"].clone() for m, v in b.items()}) or encode(b, *a, **k)
    try:
        out = GenerationSampler(tiny_model).generate_multi_guided({}, conds, sched, seed=0)
    finally:
        del tiny_model.encode
    assert [c["tok_cam"].shape[0] for c in calls] == [6, 6, 8, 8]  # (conditions + 1) x B rows per step
    gaze_step = calls[2]["tok_cam"].reshape(4, 2, 8)
    # passes: rgb, depth, finished cam, uncond. The finished cam is an input only in its own pass.
    assert gaze_step[0].all() and gaze_step[1].all() and not gaze_step[2].any() and gaze_step[3].all()
    for name in ("tok_cam", "tok_gaze"):  # the returned batch shows every target as decoded (not blanked)
        assert out[name]["target_mask"].all() and not out[name]["input_mask"].any()
    with pytest.raises(ValueError, match=r"2 guidance weights for 3 conditions \(2 given \+ finished targets \['tok_cam'\]\)"):
        GenerationSampler(tiny_model).generate_multi_guided(
            {}, conds, schedule(targets=("tok_cam", "tok_gaze"), steps=(2, 2), weights=[(1.5, 0.5)] * 2), seed=0)


def test_shared_inputs_are_seen_by_every_pass(tiny_model):
    """A modality of the unconditional batch (here given gaze) is an input of every pass."""
    conds = conditions(2)
    gaze = {"tok_gaze": {"tensor": torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(3))}}
    calls = []
    encode = tiny_model.encode
    tiny_model.encode = lambda b, *a, **k: calls.append(b) or encode(b, *a, **k)
    try:
        out = GenerationSampler(tiny_model).generate_multi_guided(gaze, conds, schedule(steps=(1,)), seed=0)
    finally:
        del tiny_model.encode
    assert not calls[0]["tok_gaze"]["input_mask"].any()
    assert torch.equal(out["tok_gaze"]["tensor"], gaze["tok_gaze"]["tensor"])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s, c: s.generate_multi_guided({}, [], schedule()), "at least one condition"),
        (lambda s, c: s.generate_multi_guided({}, c, []), "schedule is empty"),
        (lambda s, c: s.generate_multi_guided({}, [c[0], {}], schedule(weights=[(1.0, 1.0)])), "condition 1 is empty"),
        (lambda s, c: s.generate_multi_guided({}, c, [{**schedule()[0], "cfg_scale": 2.0}]), "must be a list of weights"),
        (lambda s, c: s.generate(c[0], schedule()), "use generate_multi_guided"),
        (lambda s, c: s.generate_multi_guided({}, [{"tok_cam": {"tensor": torch.zeros(2, 8, dtype=torch.long)}}, c[0]],
                                              schedule()), r"condition 0 holds \['tok_cam'\]"),
        (lambda s, c: s.generate_multi_guided(c[0], c, schedule()), r"condition 0 holds \['tok_rgb'\]"),
        (lambda s, c: s.generate_multi_guided({}, [c[0], conditions(3)[1]], schedule()), "condition 1 has 3 rows"),
        (lambda s, c: s.generate_multi_guided({}, c, schedule(targets=("tok_cam", "tok_gaze"), steps=(1, 1),
                                                              weights=[(1, 1), (1, 1, 1)]) + schedule(steps=(1,))),
         "consecutive"),
    ],
)
def test_bad_multi_guidance_calls_raise(tiny_model, call, message):
    with pytest.raises(ValueError, match=message):
        call(GenerationSampler(tiny_model), conditions(2))

"""GenerationSampler behaviour on a tiny random model."""

import pytest
import torch
import torch.nn.functional as F
from egom2p.generate import GenerationSampler, build_generation_schedule


def schedule(targets=("tok_cam",), steps=(2,), scheme="roar", temp=0.0, cfg=1.0, cond=("tok_rgb",), tokens=None,
             grow=True):
    n = len(targets)
    return build_generation_schedule(
        cond_domains=list(cond), target_domains=list(targets), tokens_per_target=list(tokens or [8] * n),
        autoregression_schemes=[scheme] * n, decoding_steps=list(steps), token_decoding_schedules=["linear"] * n,
        temps=[temp] * n, temp_schedules=["constant"] * n, cfg_scales=[cfg] * n, cfg_schedules=["constant"] * n,
        cfg_grow_conditioning=grow,
    )


def rgb_batch(batch_size=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"tok_rgb": {"tensor": torch.randint(0, 256, (batch_size, 2, 4, 4), generator=g)}}


def each_step(model, batch, sched, **kwargs):
    """The (step_index, step_dict, batch_so_far) of every on_step call of one `generate`, and its result."""
    steps = []
    out = GenerationSampler(model).generate(batch, sched, on_step=lambda *step: steps.append(step), **kwargs)
    return steps, out


def reference_roar(model, rgb_tokens, target, steps, seed):
    """Argmax ROAR written straight from the original's steps, one sample at a time, no guidance.

    The steps: docs/original-behaviour.md#roar-and-maskgit-steps.
    """
    n = model.modalities[target].num_tokens
    tokens = torch.zeros(n, dtype=torch.long)
    todo = torch.ones(n, dtype=torch.bool)
    for s, k in enumerate(steps):
        g = torch.Generator().manual_seed(seed + s)
        key = (~todo).float() + 1e-6 * torch.rand(n, generator=g)
        positions = key.argsort()[:k]
        batch = {
            "tok_rgb": {"tensor": rgb_tokens[None], "input_mask": torch.zeros(1, rgb_tokens.numel(), dtype=torch.bool),
                        "target_mask": torch.ones(1, rgb_tokens.numel(), dtype=torch.bool)},
            target: {"tensor": tokens[None], "input_mask": todo[None].clone(), "target_mask": (~todo)[None].clone()},
        }
        with torch.no_grad():
            logits = model.decode_positions(model.encode(batch), target, positions[None])
        tokens = tokens.clone()
        tokens[positions] = logits[0].argmax(-1)
        todo = todo.clone()
        todo[positions] = False
    return tokens


def test_argmax_roar_matches_a_direct_reimplementation_row_by_row(tiny_model):
    batch = rgb_batch(3)
    out = GenerationSampler(tiny_model).generate(batch, schedule(steps=(3,)), seed=5)
    for row in range(3):
        expected = reference_roar(tiny_model, batch["tok_rgb"]["tensor"][row].reshape(-1), "tok_cam", [3, 3, 2], 5)
        assert torch.equal(out["tok_cam"]["tensor"][row], expected)
    assert out["tok_cam"]["target_mask"].all() and not out["tok_cam"]["input_mask"].any()
    # the conditioning matters: rows with different rgb do not all decode the same tokens
    assert len({tuple(r.tolist()) for r in out["tok_cam"]["tensor"]}) > 1


def test_cfg_scale_one_equals_the_cond_half_of_the_batched_guided_forward(tiny_model, monkeypatch):
    batch = rgb_batch(2)
    plain = GenerationSampler(tiny_model).generate(batch, schedule(cfg=1.0), seed=0)
    # a scale of exactly 1 short-circuits; 1 + 1e-7 takes the batched cond+uncond path
    nearly = GenerationSampler(tiny_model).generate(batch, schedule(cfg=1.0 + 1e-7), seed=0)
    assert torch.equal(plain["tok_cam"]["tensor"], nearly["tok_cam"]["tensor"])

    calls = []
    encode = tiny_model.encode
    monkeypatch.setattr(tiny_model, "encode", lambda b, *a, **k: calls.append(b) or encode(b, *a, **k))
    guided = GenerationSampler(tiny_model).generate(batch, schedule(cfg=3.0), seed=0)
    assert len(calls) == 2 and calls[0]["tok_rgb"]["tensor"].shape[0] == 4  # one 2B forward per step
    assert not calls[0]["tok_rgb"]["input_mask"][:2].any() and calls[0]["tok_rgb"]["input_mask"][2:].all()
    assert not torch.equal(guided["tok_cam"]["tensor"], plain["tok_cam"]["tensor"])


def test_guidance_mixes_logits_as_the_original(tiny_model):
    batch = rgb_batch(1)
    positions = []
    decode = tiny_model.decode_positions
    sampler = GenerationSampler(tiny_model)
    tiny_model.decode_positions = lambda ctx, m, p: positions.append(p) or decode(ctx, m, p)
    try:
        out = sampler.generate(batch, schedule(steps=(1,), cfg=2.5), seed=1)
    finally:
        del tiny_model.decode_positions
    cond_batch = {"tok_rgb": {"tensor": batch["tok_rgb"]["tensor"], "input_mask": torch.zeros(1, 32, dtype=torch.bool),
                              "target_mask": torch.ones(1, 32, dtype=torch.bool)},
                  "tok_cam": {"tensor": torch.zeros(1, 8, dtype=torch.long), "input_mask": torch.ones(1, 8, dtype=torch.bool),
                              "target_mask": torch.zeros(1, 8, dtype=torch.bool)}}
    uncond_batch = {**cond_batch, "tok_rgb": {**cond_batch["tok_rgb"], "input_mask": torch.ones(1, 32, dtype=torch.bool)}}
    pos = positions[0][:1]
    with torch.no_grad():
        cond = tiny_model.decode_positions(tiny_model.encode(cond_batch), "tok_cam", pos)
        uncond = tiny_model.decode_positions(tiny_model.encode(uncond_batch), "tok_cam", pos)
    mixed = uncond + (cond - uncond) * 2.5
    # same positions for both halves (quirk 26 fixed, docs/original-behaviour.md#quirks)
    assert torch.equal(positions[0][0], positions[0][1])
    assert torch.equal(out["tok_cam"]["tensor"][0, pos[0]], mixed[0].argmax(-1))


def test_seeded_sampling_is_deterministic(tiny_model):
    batch, sched = rgb_batch(2), schedule(steps=(4,), temp=1.0, cfg=2.0)
    sampler = GenerationSampler(tiny_model)
    a = sampler.generate(batch, sched, seed=3, top_p=0.95)["tok_cam"]["tensor"]
    b = sampler.generate(batch, sched, seed=3, top_p=0.95)["tok_cam"]["tensor"]
    others = [sampler.generate(batch, sched, seed=s, top_p=0.95)["tok_cam"]["tensor"] for s in (4, 5, 6)]
    assert torch.equal(a, b)
    assert any(not torch.equal(a, o) for o in others)
    torch.manual_seed(11)  # seed=None draws its base seed from torch's global RNG
    c = sampler.generate(batch, sched, seed=None)["tok_cam"]["tensor"]
    torch.manual_seed(11)
    assert torch.equal(c, sampler.generate(batch, sched, seed=None)["tok_cam"]["tensor"])


def test_chained_generation_rgb_to_cam_then_gaze(tiny_model):
    batch = rgb_batch(2)
    sched = schedule(targets=("tok_cam", "tok_gaze"), steps=(2, 4), cfg=2.0)
    seen = []
    encode = tiny_model.encode
    tiny_model.encode = lambda b, *a, **k: seen.append({m: v["input_mask"].clone() for m, v in b.items()}) or encode(b, *a, **k)
    try:
        steps, out = each_step(tiny_model, batch, sched, seed=0)
    finally:
        del tiny_model.encode
    assert [i for i, _, _ in steps] == list(range(6))
    decoded = [int(b["tok_cam"]["target_mask"].sum() + b["tok_gaze"]["target_mask"].sum()) for _, _, b in steps]
    assert decoded == [8, 16, 20, 24, 28, 32]  # 2 rows x (4, 4 cam; 2, 2, 2, 2 gaze)
    final = steps[-1][2]
    assert final["tok_cam"]["target_mask"].all() and final["tok_gaze"]["target_mask"].all()
    assert all(torch.equal(out[m][key], final[m][key]) for m in final for key in final[m])
    # gaze steps see the finished cam as input in the cond half and (grown conditioning) blank it in the uncond half
    gaze_step = seen[2]
    assert not gaze_step["tok_cam"][:2].any() and gaze_step["tok_cam"][2:].all()
    assert torch.equal(GenerationSampler(tiny_model).generate(batch, sched, seed=0)["tok_gaze"]["tensor"],
                       final["tok_gaze"]["tensor"])


def test_maskgit_commits_the_k_most_confident(tiny_model):
    batch = rgb_batch(2)
    out = GenerationSampler(tiny_model).generate(batch, schedule(scheme="maskgit", steps=(3,)), seed=0)
    first = each_step(tiny_model, batch, schedule(scheme="maskgit", steps=(3,)), seed=0)[0][0][2]
    full = {"tok_rgb": {"tensor": batch["tok_rgb"]["tensor"], "input_mask": torch.zeros(2, 32, dtype=torch.bool),
                        "target_mask": torch.ones(2, 32, dtype=torch.bool)},
            "tok_cam": {"tensor": torch.zeros(2, 8, dtype=torch.long), "input_mask": torch.ones(2, 8, dtype=torch.bool),
                        "target_mask": torch.zeros(2, 8, dtype=torch.bool)}}
    with torch.no_grad():
        logits = tiny_model.decode_positions(tiny_model.encode(full), "tok_cam", torch.arange(8).repeat(2, 1))
    confidence, best = F.softmax(logits, -1).max(-1)
    for row in range(2):
        expected = set(confidence[row].topk(3).indices.tolist())
        committed = set(first["tok_cam"]["target_mask"][row].nonzero().flatten().tolist())
        assert committed == expected
        for p in expected:
            assert first["tok_cam"]["tensor"][row, p] == best[row, p]
    assert out["tok_cam"]["target_mask"].all()


def test_order_argument_sets_the_decoding_order(tiny_model):
    batch = rgb_batch(2)
    order = torch.tensor([[7, 6, 5, 4, 3, 2, 1, 0], [0, 2, 4, 6, 1, 3, 5, 7]])
    steps, _ = each_step(tiny_model, batch, schedule(steps=(4,)), seed=0, order={"tok_cam": order})
    done = steps[0][2]["tok_cam"]["target_mask"]
    assert done[0].nonzero().flatten().tolist() == [6, 7]
    assert done[1].nonzero().flatten().tolist() == [0, 2]


def test_an_empty_schedule_is_refused_before_any_step(tiny_model):
    called = []
    with pytest.raises(ValueError, match="schedule is empty"):
        GenerationSampler(tiny_model).generate(rgb_batch(2), [], on_step=lambda *step: called.append(step))
    assert called == []


def test_caller_batch_is_not_mutated_and_layout_is_kept(tiny_model):
    batch = rgb_batch(2)
    batch["tok_cam"] = {"tensor": torch.zeros(2, 8, dtype=torch.int32), "input_mask": torch.ones(2, 8, dtype=torch.bool),
                        "target_mask": torch.zeros(2, 8, dtype=torch.bool)}
    before = {m: {k: v.clone() for k, v in d.items()} for m, d in batch.items()}
    out = GenerationSampler(tiny_model).generate(batch, schedule(), seed=0)
    for m, d in before.items():
        for k, v in d.items():
            assert torch.equal(batch[m][k], v)
    assert out["tok_rgb"]["tensor"].shape == (2, 2, 4, 4) and out["tok_cam"]["tensor"].dtype == torch.long


def test_partial_targets_keep_given_tokens(tiny_model):
    batch = rgb_batch(2)
    target_mask = torch.zeros(2, 8, dtype=torch.bool)
    target_mask[:, :3] = True  # the first three cam tokens are given, not targets
    batch["tok_cam"] = {"tensor": torch.full((2, 8), 9), "input_mask": ~target_mask, "target_mask": target_mask}
    out = GenerationSampler(tiny_model).generate(batch, schedule(steps=(2,)), seed=0)
    assert (out["tok_cam"]["tensor"][:, :3] == 9).all() and out["tok_cam"]["target_mask"].all()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda b: ({**b, "tok_audio": b["tok_rgb"]}, schedule()), "unknown modality 'tok_audio'"),
        (lambda b: ({"tok_rgb": {"tensor": torch.zeros(2, 31, dtype=torch.long)}}, schedule()), r"expected \[B, 32\]"),
        (lambda b: (b, schedule(cond=(), cfg=2.0)), "no conditioning domains"),
        (lambda b: (b, schedule(cond=("tok_depth",), cfg=2.0)), "'tok_depth', which is not in the batch"),
        (lambda b: (b, [{"target_domain": "tok_cam"}]), "lacks"),
        (lambda b: ({"tok_rgb": {"tensor": torch.zeros(2, 32)}}, schedule()), "integer token ids"),
        (lambda b: ({"tok_rgb": {**b["tok_rgb"], "input_mask": torch.zeros(3, 32, dtype=torch.bool)}}, schedule()),
         "has only"),
    ],
)
def test_bad_inputs_raise_value_errors(tiny_model, make, message):
    batch, sched = make(rgb_batch(3))
    with pytest.raises(ValueError, match=message):
        GenerationSampler(tiny_model).generate(batch, sched, seed=0)


def test_bad_order_and_unequal_rows_raise(tiny_model):
    sampler = GenerationSampler(tiny_model)
    with pytest.raises(ValueError, match=r"order\['tok_cam'\] must be"):
        sampler.generate(rgb_batch(2), schedule(), seed=0, order={"tok_cam": torch.zeros(8, dtype=torch.long)})
    with pytest.raises(ValueError, match="outside"):
        sampler.generate(rgb_batch(2), schedule(), seed=0, order={"tok_cam": torch.full((2, 8), 8)})
    batch = rgb_batch(2)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, 0] = True
    batch["tok_cam"] = {"tensor": torch.zeros(2, 8, dtype=torch.long), "input_mask": ~mask, "target_mask": mask}
    with pytest.raises(ValueError, match="same number of positions"):
        sampler.generate(batch, schedule(), seed=0)

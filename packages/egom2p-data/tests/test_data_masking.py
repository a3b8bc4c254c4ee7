"""Masking: budgets follow docs/original-behaviour.md#masking, masks are disjoint uniform subsets, seeds reproduce."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from egom2p.data.masking import UnifiedMasking
from egom2p.data.sampling import _sorted_key_masks, random_disjoint_masks, sample_log_gamma
from hypothesis import given, settings
from hypothesis import strategies as st

RELEASED = [0.01, 0.1, 1.0, 10.0]
NAMES = ["tok_cam", "tok_depth", "tok_gaze", "tok_rgb"]


def released_masking(video: int = 5120, seq: int = 30, budget: int = 2048) -> UnifiedMasking:
    counts = {"tok_cam": seq, "tok_depth": video, "tok_gaze": seq, "tok_rgb": video}
    alphas = {n: RELEASED for n in NAMES}
    return UnifiedMasking(counts, alphas, alphas, [1, 1, 1, 1], (budget, budget), (budget, budget))


def zeros_batch(masking: UnifiedMasking, batch: int) -> dict[str, torch.Tensor]:
    return {n: torch.zeros(batch, masking.num_tokens[n], dtype=torch.int32) for n in masking.names}


def test_gamma_moments():
    alpha = torch.tensor([0.3, 1.0, 4.0], dtype=torch.float64).repeat(40000, 1)
    x = torch.exp(sample_log_gamma(alpha, torch.Generator().manual_seed(0)))
    assert torch.allclose(x.mean(0), torch.tensor([0.3, 1.0, 4.0], dtype=torch.float64), rtol=0.03)
    assert torch.allclose(x.var(0), torch.tensor([0.3, 1.0, 4.0], dtype=torch.float64), rtol=0.06)
    tiny = sample_log_gamma(torch.full((1000,), 1e-9, dtype=torch.float64))
    assert torch.isfinite(tiny).all()


def test_budgets_are_exact_and_capped():
    m = released_masking()
    b_in, b_tg = m.sample_budgets(4000, 0)
    caps = torch.tensor([30, 5120, 30, 5120])
    assert (b_in <= caps).all() and (b_in + b_tg <= caps).all() and (b_in >= 0).all() and (b_tg >= 0).all()
    # No cap can bind when every modality holds the whole budget: the split is then exact.
    big = UnifiedMasking({n: 4096 for n in NAMES}, {n: RELEASED for n in NAMES}, {n: RELEASED for n in NAMES})
    b_in, b_tg = big.sample_budgets(2000, 1)
    assert (b_in.sum(1) == 2048).all() and (b_tg.sum(1) <= 2048).all()
    # Padding statistics of the released recipe: 1,078 input / 1,022 target on average
    # (docs/original-behaviour.md#how-full-the-budgets-are).
    b_in, b_tg = m.sample_budgets(8000, 2)
    assert abs(b_in.sum(1).float().mean().item() - 1078) < 40
    assert abs(b_tg.sum(1).float().mean().item() - 1022) < 40


def test_dirichlet_proportions_match_means():
    alphas_in = {"tok_a": [1.0], "tok_b": [3.0], "tok_c": [6.0]}
    m = UnifiedMasking({"tok_a": 10000, "tok_b": 10000, "tok_c": 10000}, alphas_in, alphas_in, None, (1000, 1000), (1000, 1000))
    b_in, b_tg = m.sample_budgets(20000, 3)
    share = b_in.double().mean(0) / 1000
    assert torch.allclose(share, torch.tensor([0.1, 0.3, 0.6], dtype=torch.float64), atol=0.006)
    # Var of a Dirichlet share: a_i (A - a_i) / (A^2 (A + 1)).
    expected_var = torch.tensor([1 * 9, 3 * 7, 6 * 4], dtype=torch.float64) / (100 * 11)
    assert torch.allclose((b_in.double() / 1000).var(0), expected_var, rtol=0.08)


def test_zero_alpha_modality_gets_nothing_and_leftovers_avoid_it():
    alphas = {"tok_a": [0.0], "tok_b": [1.0], "tok_c": [1.0]}
    m = UnifiedMasking({"tok_a": 100, "tok_b": 100, "tok_c": 100}, alphas, alphas, None, (7, 7), (7, 7))
    b_in, b_tg = m.sample_budgets(3000, 4)
    assert (b_in[:, 0] == 0).all() and (b_tg[:, 0] == 0).all()
    assert (b_in.sum(1) == 7).all() and (b_tg.sum(1) == 7).all()


def test_budget_range_is_inclusive():
    alphas = {"tok_a": [1.0]}
    m = UnifiedMasking({"tok_a": 100}, alphas, alphas, None, (2, 4), (0, 1))
    b_in, b_tg = m.sample_budgets(2000, 5)
    assert set(b_in[:, 0].tolist()) == {2, 3, 4} and set(b_tg[:, 0].tolist()) == {0, 1}


def test_component_choice_follows_sampling_weights():
    # Component 0 sends everything to tok_a, component 1 everything to tok_b (alpha 0 vs 1).
    inp = {"tok_a": [1.0, 0.0], "tok_b": [0.0, 1.0]}
    m = UnifiedMasking({"tok_a": 50, "tok_b": 50}, inp, inp, [3.0, 1.0], (10, 10), (10, 10))
    b_in, _ = m.sample_budgets(8000, 6)
    assert abs((b_in[:, 0] == 10).double().mean().item() - 0.75) < 0.02


def test_batch_contract_and_disjoint_masks():
    m = released_masking()
    tensors = zeros_batch(m, 64)
    tensors["tok_rgb"] = tensors["tok_rgb"].reshape(64, 5, 32, 32)
    tensors["tok_rgb"][:, 0, 0, 0] = 7
    out = m.mask_batch(tensors, 0)
    assert list(out) == NAMES
    b_in, b_tg = m.sample_budgets(64, 0)  # same seed: the budgets mask_batch drew first
    for i, name in enumerate(NAMES):
        d = out[name]
        n = m.num_tokens[name]
        assert d["tensor"].dtype == torch.int64 and d["tensor"].shape == (64, n)
        assert d["input_mask"].dtype == torch.bool and d["input_mask"].shape == (64, n)
        assert not (~d["input_mask"] & ~d["target_mask"]).any()
        assert torch.equal((~d["input_mask"]).sum(1), b_in[:, i])
        assert torch.equal((~d["target_mask"]).sum(1), b_tg[:, i])
    assert (out["tok_rgb"]["tensor"][:, 0] == 7).all()


def test_same_seed_same_masks_across_processes():
    code = (
        "import torch, hashlib\n"
        "from egom2p.data.masking import UnifiedMasking\n"
        "a = {n: [0.01, 0.1, 1.0, 10.0] for n in ['tok_a', 'tok_b']}\n"
        "m = UnifiedMasking({'tok_a': 300, 'tok_b': 30}, a, a, [1, 1, 1, 1], (64, 64), (64, 64))\n"
        "out = m.mask_batch({'tok_a': torch.zeros(8, 300), 'tok_b': torch.zeros(8, 30)}, 123)\n"
        "h = hashlib.sha256()\n"
        "[h.update(out[n][k].numpy().tobytes()) for n in out for k in ('input_mask', 'target_mask')]\n"
        "print(h.hexdigest())"
    )
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in range(2)}
    assert len(runs) == 1
    a = released_masking(300, 30, 64).mask_batch(zeros_batch(released_masking(300, 30, 64), 4), 9)
    b = released_masking(300, 30, 64).mask_batch(zeros_batch(released_masking(300, 30, 64), 4), 9)
    c = released_masking(300, 30, 64).mask_batch(zeros_batch(released_masking(300, 30, 64), 4), 10)
    assert all(torch.equal(a[n]["input_mask"], b[n]["input_mask"]) for n in a)
    assert any(not torch.equal(a[n]["input_mask"], c[n]["input_mask"]) for n in a)


def test_single_sample_call_is_unbatched():
    m = released_masking(300, 30, 64)
    out = m({n: torch.arange(m.num_tokens[n]) for n in m.names}, 0)
    assert out["tok_rgb"]["tensor"].shape == (300,) and out["tok_rgb"]["input_mask"].shape == (300,)
    assert torch.equal(out["tok_rgb"]["tensor"], torch.arange(300))


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(1, 700),
    data=st.data(),
)
def test_random_disjoint_masks_exact_counts(length, data):
    rows = data.draw(st.integers(1, 6))
    first = torch.tensor(data.draw(st.lists(st.integers(0, length), min_size=rows, max_size=rows)))
    second = torch.tensor([data.draw(st.integers(0, length - int(f))) for f in first])
    a, b = random_disjoint_masks(length, first, second, torch.Generator().manual_seed(data.draw(st.integers(0, 99))))
    assert a.shape == (rows, length) and b.shape == (rows, length)
    assert torch.equal(a.sum(1), first) and torch.equal(b.sum(1), second) and not (a & b).any()


@pytest.mark.parametrize("first, second", [(400, 600), (600, 800)])
def test_fill_matches_argsort_law(first, second):
    """The fast path and the original's argsort(rand) method agree in distribution."""
    length, rows = 2048, 1500
    gen = torch.Generator().manual_seed(11)
    f = torch.full((rows,), first)
    s = torch.full((rows,), second)
    fast = random_disjoint_masks(length, f, s, gen)
    ref = _sorted_key_masks(f, f + s, length, gen)
    for (a, b), (ra, rb) in zip([fast], [ref]):
        # Every position is equally likely in each subset ...
        for mask, p in ((a, first / length), (b, second / length)):
            freq = mask.double().mean(0)
            assert abs(freq.mean().item() - p) < 1e-9 and (freq - p).abs().max() < 6 * (p * (1 - p) / rows) ** 0.5
        # ... and a joint statistic (lowest first-subset position, adjacency of the two subsets) matches.
        def stats(x, y):
            low = x.double().argmax(1).double().mean()
            adjacent = (x[:, :-1] & y[:, 1:]).double().sum(1).mean()
            return low, adjacent
        (l1, a1), (l2, a2) = stats(a, b), stats(ra, rb)
        assert abs(l1 - l2) / l2 < 0.15 and abs(a1 - a2) / a2 < 0.05


def test_batched_masks_uniform_over_positions():
    m = released_masking(600, 30, 256)
    out = m.mask_batch(zeros_batch(m, 3000), 12)
    b_in, _ = m.sample_budgets(3000, 12)
    freq = (~out["tok_rgb"]["input_mask"]).double().mean(0)
    expected = b_in[:, 3].double().sum() / (3000 * 600)
    assert (freq - expected).abs().max() < 0.03


def test_from_config_quirk_11_and_enforce_domains(repo_root):
    mods = {"tok_cam": 30, "tok_depth": 300, "tok_rgb": 300}
    alphas = "mix_mod4_all2all_uni"
    kw = dict(in_domains=["tok_rgb", "tok_depth", "tok_cam"], out_domains=["tok_depth", "tok_cam"],
              num_input_tokens=64, num_target_tokens=64, alphas_config=alphas)
    faithful = UnifiedMasking.from_config(mods, **kw)
    _, b_tg = faithful.sample_budgets(2000, 0)
    # quirk 11 (docs/original-behaviour.md#quirks): rgb is still predicted
    assert (b_tg[:, faithful.names.index("tok_rgb")] > 0).any()
    strict = UnifiedMasking.from_config(mods, enforce_domains=True, **kw)
    _, b_tg = strict.sample_budgets(2000, 0)
    assert (b_tg[:, strict.names.index("tok_rgb")] == 0).all()
    legacy = UnifiedMasking.from_config(mods, in_domains=["tok_rgb"], out_domains=["tok_cam"], num_input_tokens=16,
                                        num_target_tokens=16, input_alphas="1.0", target_alphas="1.0")
    b_in, b_tg = legacy.sample_budgets(500, 0)
    assert legacy.names == ["tok_cam", "tok_rgb"] and (b_in[:, 0] == 0).all() and (b_tg[:, 1] == 0).all()
    with pytest.raises(ValueError, match="tok_gaze"):
        UnifiedMasking.from_config(mods, ["tok_gaze"], ["tok_gaze"], 8, 8, alphas_config=alphas)


def test_wrong_token_count_is_named():
    m = released_masking(300, 30, 64)
    bad = zeros_batch(m, 2)
    bad["tok_cam"] = torch.zeros(2, 31)
    with pytest.raises(ValueError, match="tok_cam.*31"):
        m.mask_batch(bad)


def test_masking_imports_without_optional_dependencies():
    code = (
        "import sys\n"
        "for name in ('boto3', 'yaml', 'braceexpand'): sys.modules[name] = None\n"
        "import egom2p.data, egom2p.data.masking\n"
        "assert 'egom2p.core' not in sys.modules, 'masking pulled in egom2p.core (and with it PyYAML)'\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_the_command_line_imports_no_torch_until_a_command_needs_it():
    """``egom2p-data --help`` answers without importing torch (the package's heavy pieces are imported on use)."""
    code = ("import sys\nimport egom2p.data.cli\nfrom egom2p.data import UnifiedMasking\n"
            "assert UnifiedMasking.__name__ == 'UnifiedMasking'\n")
    probe = "import sys\nimport egom2p.data.cli\nassert 'torch' not in sys.modules, 'the CLI imported torch'\n"
    for snippet in (probe, code):
        out = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr


def test_budget_law_matches_reference_implementation():
    """Our vectorised budgets and a literal restatement of the original agree in distribution."""
    from data_reference_masking import reference_budget, seed_reference

    seed_reference(0)
    m = released_masking(300, 30, 256)
    caps = torch.tensor([30, 300, 30, 300])
    alphas = torch.tensor(RELEASED, dtype=torch.float64)
    ref = torch.stack([reference_budget(torch.full((4,), float(alphas[i % 4])), 256, caps) for i in range(4000)])
    ours, _ = m.sample_budgets(4000, 1)
    # Mean tokens per modality and the share of samples where the 30-token modalities hit their cap.
    assert torch.allclose(ours.double().mean(0), ref.double().mean(0), rtol=0.08)
    for col in (0, 2):
        assert abs((ours[:, col] == 30).double().mean() - (ref[:, col] == 30).double().mean()) < 0.04


@pytest.mark.parametrize("length", [300, 304])  # 304: whole int64 words, so the popcount first round runs too
def test_fill_rounds_keep_earlier_positions_and_reach_exact_counts(monkeypatch, length):
    """Rows whose stream falls short get more rounds; positions set before are never lost or recounted."""
    from egom2p.data import sampling

    rows = 40
    bits = torch.zeros(rows * length + 1, dtype=torch.bool)
    preset = torch.rand(rows, length, generator=torch.Generator().manual_seed(0)) < 0.3
    bits[:-1] = preset.reshape(-1)
    have = preset.sum(1)
    goal = have + torch.randint(0, length // 2, (rows,), generator=torch.Generator().manual_seed(1))
    short = (torch.zeros(length + 1, dtype=torch.float64), torch.zeros(length + 1, dtype=torch.float64))
    monkeypatch.setattr(sampling, "_draw_count_tables", lambda n: short)  # 2 draws per row and round
    sampling._fill_to(bits, length, have, goal, torch.Generator().manual_seed(2))
    out = bits[:-1].view(rows, length)
    assert torch.equal(out.sum(1), goal) and (out | ~preset).all()

"""The attention interface: one visibility rule, identical across backends."""

from __future__ import annotations

import sys

import pytest
import torch
from egom2p.core.enums import AttnBackend
from egom2p.model import AttentionMask
from egom2p.model import attention as attention_module
from egom2p.model.attention import CAUSAL_BACKENDS, attention, check_backend, resolve_backend


def _qkv(b=2, h=2, nq=5, nk=7, d=4, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=gen, dtype=dtype, requires_grad=True) for n in (nq, nk, nk)]


def _naive(q, k, v, allowed):
    """Loop-free but obviously correct: softmax over the allowed keys only, zeros if none."""
    q, k, v = (t.detach() for t in (q, k, v))
    out = torch.zeros_like(q)
    for b in range(q.shape[0]):
        for i in range(q.shape[2]):
            keys = allowed[b, i].nonzero().flatten()
            if len(keys):
                scores = q[b, :, i, None] @ k[b, :, keys].transpose(-1, -2) * q.shape[-1] ** -0.5
                out[b, :, i] = (torch.softmax(scores, dim=-1) @ v[b, :, keys]).squeeze(1)
    return out


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_lengths_and_segments_follow_the_rule(backend):
    q, k, v = _qkv()
    key_lengths = torch.tensor([7, 3], dtype=torch.int32)
    q_seg = torch.tensor([[0, 0, 1, 1, 2], [1, 1, 0, 0, 0]], dtype=torch.int32)
    k_seg = torch.tensor([[0, 1, 1, 0, 1, 1, 0], [1, 0, 1, 1, 1, 1, 1]], dtype=torch.int32)
    allowed = (torch.arange(7)[None, None, :] < key_lengths[:, None, None]) & (q_seg[:, :, None] == k_seg[:, None, :])
    out = attention(q, k, v, AttentionMask(key_lengths, q_segments=q_seg, k_segments=k_seg), backend=backend)
    torch.testing.assert_close(out, _naive(q, k, v, allowed))
    # Query 4 of sample 0 is segment 2, which no key has: zeros, not NaN.
    assert torch.equal(out[0, :, 4], torch.zeros_like(out[0, :, 4]))


def test_backends_agree_in_float64_with_gradients():
    q, k, v = _qkv(nq=6, nk=6)
    key_lengths = torch.tensor([4, 0], dtype=torch.int32)
    seg = torch.tensor([[0, 0, 1, 1, 1, 2], [0, 0, 0, 1, 1, 1]], dtype=torch.int32)
    outs, grads = [], []
    for backend in ("reference", "sdpa"):
        out = attention(q, k, v, AttentionMask(key_lengths, q_segments=seg, k_segments=seg), backend=backend)
        (g,) = [torch.autograd.grad((out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum(), [q, k, v])]
        outs.append(out)
        grads.append(g)
    torch.testing.assert_close(outs[0], outs[1])
    for a, b in zip(grads[0], grads[1]):
        torch.testing.assert_close(a, b)
    # Sample 1 sees no key at all: zero output and zero gradient to its queries.
    assert torch.equal(outs[1][1], torch.zeros_like(outs[1][1]))
    assert torch.equal(grads[1][0][1], torch.zeros_like(grads[1][0][1]))
    assert torch.isfinite(grads[1][0]).all()


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_empty_key_set_returns_zeros(backend):
    q, k, v = _qkv(nk=0)
    out = attention(q, k, v, AttentionMask(key_lengths=torch.zeros(2, dtype=torch.int32)), backend=backend)
    assert out.shape == q.shape and torch.equal(out, torch.zeros_like(q))


def test_causal_rule():
    q, k, v = _qkv(nq=5, nk=5)
    allowed = torch.tril(torch.ones(5, 5, dtype=torch.bool)).expand(2, 5, 5)
    torch.testing.assert_close(attention(q, k, v, AttentionMask(causal=True), backend="sdpa"), _naive(q, k, v, allowed))


def test_bad_arguments_raise():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"attn_backend: 'flash' is not one of \['auto', 'reference', 'sdpa', 'triton'\]"):
        attention(q, k, v, backend="flash")
    with pytest.raises(ValueError, match="key_lengths"):
        attention(q, k, v, AttentionMask(key_lengths=torch.zeros(3, dtype=torch.int32)))
    with pytest.raises(ValueError, match="q_segments must have shape"):
        attention(q, k, v, AttentionMask.self_attention(segments=torch.zeros(2, 7, dtype=torch.int32)), backend="reference")
    with pytest.raises(ValueError, match="together"):
        AttentionMask(q_segments=torch.zeros(2, 5, dtype=torch.int32))
    with pytest.raises(ValueError, match="dtypes"):
        attention(q, k.float(), v, backend="reference")


def test_triton_backend_without_kernel_gives_clear_error(monkeypatch):
    # Simulate an install without triton: importing the kernel module fails.
    monkeypatch.setitem(sys.modules, "egom2p.model.kernels.flash_attention", None)
    q, k, v = _qkv()
    lengths = torch.full((q.shape[0],), k.shape[2] - 1, dtype=torch.int32)  # masked: unmasked calls take SDPA
    with pytest.raises(RuntimeError, match="backend 'triton' needs triton.*Use attn_backend='sdpa'"):
        attention(q, k, v, AttentionMask(key_lengths=lengths), backend="triton")
    assert resolve_backend("auto", torch.device("cuda")) is AttnBackend.SDPA  # auto falls back quietly


def test_one_rule_for_causal_and_auto(monkeypatch):
    assert AttnBackend.TRITON not in CAUSAL_BACKENDS
    for backend in ("reference", "sdpa", "auto"):
        assert check_backend(backend, causal=True) == backend
    with pytest.raises(ValueError, match="'triton' has no causal mode"):
        check_backend("triton", causal=True)
    q, k, v = _qkv(nq=5, nk=5)
    with pytest.raises(ValueError, match="'triton' has no causal mode"):
        attention(q, k, v, AttentionMask(causal=True), backend="triton")
    monkeypatch.setattr(attention_module, "_triton_available", lambda: True)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_backend("auto", cuda) is AttnBackend.TRITON
    assert resolve_backend("auto", cuda, causal=True) is AttnBackend.SDPA
    assert resolve_backend("auto", cpu) is AttnBackend.SDPA
    assert resolve_backend("reference", cuda) is AttnBackend.REFERENCE


def _sorted_runs(gen: torch.Generator, batch: int, num: int, num_segments: int) -> torch.Tensor:
    """Sorted segment ids per row (packed rows, decoder modality runs), -1 padding at the end, some ids absent."""
    rows = []
    for _ in range(batch):
        ids = torch.randint(0, num_segments, (num,), generator=gen).sort().values
        ids[torch.randint(num // 2, num + 1, (1,), generator=gen).item():] = -1
        rows.append(ids)
    return torch.stack(rows).to(torch.int32)


@pytest.mark.parametrize(("num_q", "num_k", "num_segments"), [(40, 40, 4), (33, 57, 3), (64, 20, 8), (9, 9, 1), (0, 12, 3)])
def test_sdpa_by_runs_matches_float64_reference_with_gradients(num_q, num_k, num_segments, monkeypatch):
    """Sorted segments on the CPU take the per-run path (each run's own pairs only): out and grads as the rule."""
    from egom2p.model.attention import _run_plan

    gen = torch.Generator().manual_seed(num_q * 100 + num_k)
    q, k, v = (torch.randn(2, 3, n, 8, generator=gen, dtype=torch.float64).requires_grad_() for n in (num_q, num_k, num_k))
    q_seg, k_seg = _sorted_runs(gen, 2, num_q, num_segments), _sorted_runs(gen, 2, num_k, num_segments)
    key_lengths = torch.tensor([num_k, num_k * 3 // 4], dtype=torch.int32)
    query_lengths = torch.tensor([num_q * 2 // 3, num_q], dtype=torch.int32)
    mask = AttentionMask(key_lengths, query_lengths, q_seg, k_seg)
    if num_segments > 1:  # several samples per row skip most pairs: the per-run path is taken (when calls are free)
        assert _run_plan(mask, macs_per_pair=10**9) is not None
    monkeypatch.setattr("egom2p.model.attention._MACS_PER_CALL", 0)  # take it here despite the tiny shapes
    weights = torch.randn(2, 3, num_q, 8, generator=gen, dtype=torch.float64)
    results = []
    for backend in ("reference", "sdpa"):
        out = attention(q, k, v, mask, backend=backend)
        grads = torch.autograd.grad((out * weights).sum(), [q, k, v], allow_unused=True) if num_q else ()
        results.append((out, [torch.zeros(()) if g is None else g for g in grads]))
    (ref, ref_grads), (got, got_grads) = results
    torch.testing.assert_close(got, ref)
    for a, b in zip(got_grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_unsorted_segments_fall_back_to_the_masked_rows():
    from egom2p.model.attention import _run_plan

    seg = torch.tensor([[0, 1, 0, 1]], dtype=torch.int32)  # segment 0's keys are two runs
    mask = AttentionMask.self_attention(segments=seg)
    assert _run_plan(mask, macs_per_pair=10**9) is None
    q, k, v = _qkv(nq=4, nk=4)
    out = attention(q[:1], k[:1], v[:1], mask, backend="sdpa")
    allowed = seg[:, :, None] == seg[:, None, :]
    torch.testing.assert_close(out, _naive(q[:1], k[:1], v[:1], allowed))

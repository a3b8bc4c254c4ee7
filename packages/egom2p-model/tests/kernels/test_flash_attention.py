"""The Triton masked attention (run by Triton's CPU interpreter) against a float64 PyTorch reference.

The interpreter is slow: shapes are tiny, but the CPU tiles are 16 x 16, so every case below still
crosses several query and key blocks, odd tails and skipped blocks. fp32 and fp16 only: the
interpreter corrupts bf16 (tests/gpu covers bf16 with compiled kernels).
"""

import pytest
import torch
from einops import rearrange

pytest.importorskip("triton")

from egom2p.model.kernels.flash_attention import block_loop_bounds, flash_attention  # noqa: E402
from egom2p.model.kernels.reference import AttentionMask, masked_attention_reference  # noqa: E402

# Per-dtype tolerances (output, gradients), against float64 math on the same rounded inputs.
TOLERANCES = {
    torch.float32: ({"atol": 2e-5, "rtol": 1e-4}, {"atol": 1e-4, "rtol": 1e-4}),
    torch.float16: ({"atol": 2e-3, "rtol": 2e-3}, {"atol": 2e-2, "rtol": 2e-2}),
}


def _qkv(batch, heads, num_q, num_k, head_dim, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, heads, n, head_dim, generator=gen).to(dtype).requires_grad_() for n in (num_q, num_k, num_k)
    ]


def _check_against_reference(q, k, v, mask=None, grad_out=None):
    """Compare output and dq/dk/dv with the float64 reference; return the kernel's (out, grads)."""
    out = flash_attention(q, k, v, mask)
    if grad_out is None:
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(out.dtype)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    ref_inputs = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref = masked_attention_reference(*ref_inputs, mask)
    ref_grads = torch.autograd.grad(ref, ref_inputs, grad_out.double())
    out_tol, grad_tol = TOLERANCES[q.dtype]
    assert out.dtype == q.dtype and out.shape == q.shape
    torch.testing.assert_close(out.double(), ref, **out_tol)
    for name, got, want in zip("qkv", grads, ref_grads):
        assert got.dtype == q.dtype, name
        torch.testing.assert_close(got.double(), want, **grad_tol, msg=lambda m, n=name: f"d{n}: {m}")
    return out, grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_unmasked_cross_attention_odd_lengths(dtype):
    q, k, v = _qkv(2, 2, 37, 21, 32, dtype, seed=0)  # Nq != Nk, neither a multiple of the tile
    _check_against_reference(q, k, v)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_key_lengths_including_zero_one_and_beyond(dtype):
    q, k, v = _qkv(4, 1, 19, 40, 64, dtype, seed=1)
    lengths = torch.tensor([40, 0, 1, 17], dtype=torch.int32)
    out, (dq, dk, dv) = _check_against_reference(q, k, v, AttentionMask(key_lengths=lengths))
    # Length 0: no key visible -> zero output and zero gradients, never NaN.
    assert out[1].abs().max() == 0 and dq[1].abs().max() == 0 and dk[1].abs().max() == 0
    # Keys beyond the length get no gradient.
    assert dk[3, :, 17:].abs().max() == 0 and dv[3, :, 17:].abs().max() == 0
    _check_against_reference(q, k, v, AttentionMask(key_lengths=torch.tensor([45, 40, 41, 1000])))  # lengths > N: capped


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_query_lengths_zero_padded_rows_and_their_gradients(dtype):
    q, k, v = _qkv(3, 2, 40, 45, 32, dtype, seed=2)
    query_lengths = torch.tensor([40, 7, 0], dtype=torch.int32)
    key_lengths = torch.tensor([45, 30, 12], dtype=torch.int32)
    out, (dq, dk, dv) = _check_against_reference(q, k, v, AttentionMask(key_lengths, query_lengths))
    assert out[1, :, 7:].abs().max() == 0 and dq[1, :, 7:].abs().max() == 0
    assert out[2].abs().max() == 0 and dk[2].abs().max() == 0 and dv[2].abs().max() == 0  # no query: no key gradient


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_modality_runs_with_minus_one_padding_self_attention(dtype):
    """Decoder layout: sorted segment runs, then -1 padding beyond the length."""
    num = 53
    q, k, v = _qkv(2, 2, num, num, 32, dtype, seed=3)
    runs = [torch.tensor([0] * 20 + [1] * 18 + [2] * 3 + [-1] * 12), torch.tensor([0] * 35 + [1] * 18)]
    segments = torch.stack(runs).to(torch.int32)
    lengths = torch.tensor([41, 53], dtype=torch.int32)
    out, (dq, _, _) = _check_against_reference(q, k, v, AttentionMask.self_attention(lengths, segments))
    assert out[0, :, 41:].abs().max() == 0 and dq[0, :, 41:].abs().max() == 0  # padded queries see no key


def test_negative_segment_ids_are_padding_even_within_the_lengths():
    q, k, v = _qkv(1, 1, 30, 30, 32, torch.float32, seed=4)
    segments = torch.tensor([[0] * 10 + [-1] * 5 + [1] * 10 + [-2] * 5], dtype=torch.int32)
    out, (dq, dk, dv) = _check_against_reference(q, k, v, AttentionMask.self_attention(segments=segments))
    for pad in (slice(10, 15), slice(25, 30)):
        assert out[0, :, pad].abs().max() == 0 and dq[0, :, pad].abs().max() == 0
        assert dk[0, :, pad].abs().max() == 0 and dv[0, :, pad].abs().max() == 0


def test_many_unsorted_segments_and_single_segment():
    q, k, v = _qkv(2, 1, 33, 45, 32, torch.float32, seed=5)
    gen = torch.Generator().manual_seed(3)
    q_seg = torch.randint(-1, 6, (2, 33), generator=gen, dtype=torch.int32)
    k_seg = torch.randint(-1, 6, (2, 45), generator=gen, dtype=torch.int32)
    q_seg[0, :4] = 9  # a segment with no key: those rows are zero
    _check_against_reference(q, k, v, AttentionMask(torch.tensor([45, 30]), torch.tensor([33, 20]), q_seg, k_seg))
    ones_q, ones_k = torch.zeros(2, 33, dtype=torch.int32), torch.zeros(2, 45, dtype=torch.int32)
    _check_against_reference(q, k, v, AttentionMask(q_segments=ones_q, k_segments=ones_k))


@pytest.mark.parametrize(
    ("batch", "heads", "num_q", "num_k", "head_dim", "dtype", "seed"),
    [
        (1, 1, 1, 1, 32, torch.float32, 10),
        (2, 3, 17, 50, 64, torch.float16, 11),
        (3, 1, 48, 16, 16, torch.float32, 12),
        (2, 2, 33, 33, 40, torch.float16, 13),
        (1, 2, 24, 70, 96, torch.float32, 14),
    ],
)
def test_random_masks_against_float64(batch, heads, num_q, num_k, head_dim, dtype, seed):
    """Random lengths (0, 1, N, > N) and random sorted runs with -1 padding, several shapes and head dims."""
    q, k, v = _qkv(batch, heads, num_q, num_k, head_dim, dtype, seed)
    gen = torch.Generator().manual_seed(seed)
    key_lengths = torch.randint(0, num_k + 3, (batch,), generator=gen)
    query_lengths = torch.randint(0, num_q + 3, (batch,), generator=gen)
    key_lengths[0], query_lengths[0] = num_k, num_q
    _check_against_reference(q, k, v, AttentionMask(key_lengths, query_lengths))

    def runs(num):
        seg = torch.sort(torch.randint(0, 4, (batch, num), generator=gen), dim=1).values
        return torch.where(torch.rand(batch, num, generator=gen) < 0.15, -1, seg).sort(dim=1).values.to(torch.int32)

    _check_against_reference(q, k, v, AttentionMask(key_lengths, query_lengths, runs(num_q), runs(num_k)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_strided_views_in_and_out(dtype):
    """q/k/v as views of one qkv projection and of a q + kv pair, a non-contiguous grad_out: no copies needed."""
    gen = torch.Generator().manual_seed(6)
    heads, head_dim = 2, 32
    qkv = torch.randn(2, 29, 3 * heads * head_dim, generator=gen).to(dtype).requires_grad_()
    q, k, v = rearrange(qkv, "b n (three h d) -> three b h n d", three=3, h=heads)
    segments = torch.tensor([[0] * 12 + [1] * 17, [0] * 29], dtype=torch.int32)
    grad_merged = torch.randn(2, 29, heads * head_dim, generator=gen).to(dtype)
    grad_out = rearrange(grad_merged, "b n (h d) -> b h n d", h=heads)  # the gradient a head merge hands back
    mask = AttentionMask(key_lengths=torch.tensor([29, 20]), q_segments=segments, k_segments=segments)
    out, _ = _check_against_reference(q, k, v, mask, grad_out=grad_out)
    assert out.transpose(1, 2).is_contiguous()  # [B, N, H, D] memory: merging the heads is a view

    context = torch.randn(2, 41, 2 * heads * head_dim, generator=gen).to(dtype).requires_grad_()
    k, v = rearrange(context, "b n (two h d) -> two b h n d", two=2, h=heads)
    _check_against_reference(q, k, v, AttentionMask(key_lengths=torch.tensor([41, 3])))


def test_softmax_scale_is_a_scale_of_the_queries():
    q, k, v = _qkv(2, 2, 21, 30, 32, torch.float32, seed=15)
    mask = AttentionMask(key_lengths=torch.tensor([30, 11]))
    out = flash_attention(q, k, v, mask, softmax_scale=0.05)
    ref = masked_attention_reference(q.double() * 0.05 * 32**0.5, k.double(), v.double(), mask)
    torch.testing.assert_close(out.double(), ref, **TOLERANCES[torch.float32][0])


def test_autocast_casts_mixed_dtypes_like_sdpa():
    """qk-norm under autocast hands fp32 q/k next to a half-precision v: cast to the autocast dtype."""
    q, k, _ = _qkv(1, 2, 20, 20, 32, torch.float32, seed=7)
    v = torch.randn(1, 2, 20, 32).half().requires_grad_()
    with torch.autocast("cpu", dtype=torch.float16):
        out = flash_attention(q, k, v, AttentionMask(key_lengths=torch.tensor([15])))
    assert out.dtype == torch.float16
    ref = masked_attention_reference(q.double(), k.double(), v.double(), AttentionMask(key_lengths=torch.tensor([15])))
    torch.testing.assert_close(out.double(), ref, atol=3e-3, rtol=3e-3)
    out.float().sum().backward()
    assert q.grad.dtype == torch.float32 and v.grad.dtype == torch.float16


def test_empty_key_set_gives_zeros_and_zero_gradients():
    q, k, v = _qkv(1, 2, 5, 0, 32, torch.float32, seed=8)
    out = flash_attention(q, k, v)
    (out * 3).sum().backward()
    assert out.shape == q.shape and out.abs().max() == 0 and q.grad.abs().max() == 0


def test_rejects_large_head_dim_and_mismatched_inputs():
    q = torch.randn(1, 1, 4, 256)
    with pytest.raises(ValueError, match="head dim 256"):
        flash_attention(q, q, q)
    q = torch.randn(1, 1, 4, 32)
    with pytest.raises(ValueError, match="q_segments must have shape"):
        flash_attention(q, q, q, AttentionMask.self_attention(segments=torch.zeros(1, 5, dtype=torch.int32)))
    with pytest.raises(ValueError, match="query_lengths must have shape"):
        flash_attention(q, q, q, AttentionMask(query_lengths=torch.tensor([1, 2])))
    with pytest.raises(ValueError, match="no causal mode"):
        flash_attention(q, q, q, AttentionMask(causal=True))
    with pytest.raises(ValueError, match="dtypes differ"):
        flash_attention(q, q.half(), q)


def test_backward_is_deterministic():
    q, k, v = _qkv(1, 1, 40, 40, 32, torch.float32, seed=9)
    segments = torch.tensor([[0] * 18 + [1] * 22], dtype=torch.int32)
    mask = AttentionMask(key_lengths=torch.tensor([35]), q_segments=segments, k_segments=segments)
    first = torch.autograd.grad(flash_attention(q, k, v, mask).sum(), (q, k, v))
    second = torch.autograd.grad(flash_attention(q, k, v, mask).sum(), (q, k, v))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_custom_op_registration_and_compile():
    """Fake shapes and strides, schema and autograd registration of the custom op; traces under torch.compile."""
    q, k, v = _qkv(1, 1, 17, 17, 32, torch.float32, seed=10)
    lengths = torch.tensor([9], dtype=torch.int32)
    segments = torch.tensor([[0] * 10 + [1] * 7], dtype=torch.int32)
    bounds = block_loop_bounds(segments, lengths, 16, segments, lengths, 16)
    args = (q, k, v, [lengths, lengths, segments, segments], [bounds, bounds, bounds], 32**-0.5)
    torch.library.opcheck(
        torch.ops.egom2p.flash_attention_fwd.default,
        args,
        test_utils=("test_schema", "test_faketensor", "test_autograd_registration"),
    )
    mask = AttentionMask(key_lengths=lengths, q_segments=segments, k_segments=segments)
    compiled = torch.compile(flash_attention, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v, mask), flash_attention(q, k, v, mask))


def _brute_force_meets(row_seg, row_len, row_block, col_seg, col_len, col_block):
    """[B, R, C] True where some valid row token and valid column token of the two blocks share a segment."""
    rows, cols = row_seg.shape[1], col_seg.shape[1]
    mask = AttentionMask(key_lengths=col_len, query_lengths=row_len, q_segments=row_seg, k_segments=col_seg)
    vis = mask.visibility(row_seg.shape[0], rows, cols, row_seg.device)[:, 0]
    pad_r, pad_c = -rows % row_block, -cols % col_block
    vis = torch.nn.functional.pad(vis, (0, pad_c, 0, pad_r))
    b = vis.shape[0]
    return vis.view(b, vis.shape[1] // row_block, row_block, vis.shape[2] // col_block, col_block).any(4).any(2)


def test_block_loop_bounds_are_exact_for_sorted_runs_and_cover_unsorted():
    gen = torch.Generator().manual_seed(11)
    sorted_runs = torch.tensor([[0] * 20 + [1] * 18 + [2] * 3 + [-1] * 12, [0] * 35 + [1] * 18], dtype=torch.int32)
    lengths = torch.tensor([41, 53])
    cases = [
        (sorted_runs, lengths, sorted_runs, lengths, True),
        (torch.randint(-1, 5, (3, 37), generator=gen), None, torch.randint(-1, 5, (3, 50), generator=gen),
         torch.tensor([50, 10, 0]), False),
    ]  # fmt: skip
    for row_seg, row_len, col_seg, col_len, exact in cases:
        for row_block, col_block in ((16, 16), (8, 32), (32, 8)):
            bounds = block_loop_bounds(row_seg, row_len, row_block, col_seg, col_len, col_block)
            meets = _brute_force_meets(row_seg, row_len, row_block, col_seg, col_len, col_block)
            cols = torch.arange(meets.shape[2])
            inside = (cols >= bounds[..., :1]) & (cols < bounds[..., 1:])
            assert bounds.dtype == torch.int32
            assert not (meets & ~inside).any()  # every block pair with a visible token is visited
            if exact:  # sorted runs: exactly those pairs
                assert torch.equal(meets, inside)
    # A block of padding only (-1 or beyond its length) visits nothing.
    bounds = block_loop_bounds(sorted_runs, lengths, 8, sorted_runs, lengths, 8)
    assert bounds[0, -1].tolist() == [0, 0] and bounds[0, 5].tolist() == [4, 6]

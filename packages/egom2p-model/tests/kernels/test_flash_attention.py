"""The Triton masked attention (run by Triton's CPU interpreter) against a float64 PyTorch reference.

The interpreter is slow: shapes are tiny, but the CPU tiles are 16 x 16, so every case below still
crosses several query and key blocks, odd tails and skipped blocks.
"""

import pytest
import torch

pytest.importorskip("triton")

from egom2p.model.kernels.flash_attention import flash_attention, segment_block_ranges  # noqa: E402
from egom2p.model.kernels.reference import masked_attention_reference  # noqa: E402

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


def _check_against_reference(q, k, v, key_lengths=None, q_segments=None, k_segments=None):
    """Compare output and dq/dk/dv with the float64 reference; return the kernel's (out, grads)."""
    out = flash_attention(q, k, v, key_lengths, q_segments, k_segments)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(out.dtype)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    ref_inputs = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref = masked_attention_reference(*ref_inputs, key_lengths, q_segments, k_segments)
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
def test_key_lengths_including_zero_and_one(dtype):
    q, k, v = _qkv(4, 1, 19, 40, 64, dtype, seed=1)
    lengths = torch.tensor([40, 0, 1, 17], dtype=torch.int32)
    out, (dq, dk, dv) = _check_against_reference(q, k, v, key_lengths=lengths)
    # Length 0: no key visible -> zero output and zero gradients, never NaN.
    assert out[1].abs().max() == 0 and dq[1].abs().max() == 0 and dk[1].abs().max() == 0
    # Keys beyond the length get no gradient.
    assert dk[3, :, 17:].abs().max() == 0 and dv[3, :, 17:].abs().max() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_modality_runs_with_padding_self_attention(dtype):
    """Decoder layout: sorted segment runs, padding at the end (its own segment, beyond the length)."""
    num = 53
    q, k, v = _qkv(2, 2, num, num, 32, dtype, seed=2)
    runs = [torch.tensor([0] * 20 + [1] * 18 + [2] * 3 + [3] * 12), torch.tensor([0] * 35 + [1] * 18)]
    segments = torch.stack(runs).to(torch.int32)
    lengths = torch.tensor([41, 53], dtype=torch.int32)  # sample 0: its segment-3 tokens are padding
    out, (dq, _, _) = _check_against_reference(q, k, v, lengths, segments, segments)
    assert out[0, :, 41:].abs().max() == 0 and dq[0, :, 41:].abs().max() == 0  # padded queries see no key


def test_many_unsorted_segments_and_single_segment():
    q, k, v = _qkv(2, 1, 33, 45, 32, torch.float32, seed=3)
    gen = torch.Generator().manual_seed(3)
    q_seg = torch.randint(0, 6, (2, 33), generator=gen, dtype=torch.int32)
    k_seg = torch.randint(0, 6, (2, 45), generator=gen, dtype=torch.int32)
    q_seg[0, :4] = 9  # a segment with no key: those rows are zero
    _check_against_reference(q, k, v, torch.tensor([45, 30]), q_seg, k_seg)
    ones_q, ones_k = torch.zeros(2, 33, dtype=torch.int32), torch.zeros(2, 45, dtype=torch.int32)
    _check_against_reference(q, k, v, None, ones_q, ones_k)


def test_empty_key_set_gives_zeros_and_zero_gradients():
    q, k, v = _qkv(1, 2, 5, 0, 32, torch.float32, seed=4)
    out = flash_attention(q, k, v)
    (out * 3).sum().backward()
    assert out.shape == q.shape and out.abs().max() == 0 and q.grad.abs().max() == 0


@pytest.mark.parametrize("head_dim", [16, 40])
def test_unsupported_small_head_dims_are_padded(head_dim):
    q, k, v = _qkv(1, 2, 18, 18, head_dim, torch.float32, seed=5)
    _check_against_reference(q, k, v, key_lengths=torch.tensor([11]))


def test_rejects_large_head_dim_and_mismatched_segments():
    q = torch.randn(1, 1, 4, 256)
    with pytest.raises(ValueError, match="head dim 256"):
        flash_attention(q, q, q)
    q = torch.randn(1, 1, 4, 32)
    with pytest.raises(ValueError, match="together"):
        flash_attention(q, q, q, q_segments=torch.zeros(1, 4, dtype=torch.int32))


def test_backward_is_deterministic():
    q, k, v = _qkv(1, 1, 40, 40, 32, torch.float32, seed=6)
    lengths = torch.tensor([35])
    first = torch.autograd.grad(flash_attention(q, k, v, lengths).sum(), (q, k, v))
    second = torch.autograd.grad(flash_attention(q, k, v, lengths).sum(), (q, k, v))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_custom_op_registration_and_compile():
    """Fake shapes, schema and autograd registration of the custom op; traces under torch.compile."""
    q, k, v = _qkv(1, 1, 17, 17, 32, torch.float32, seed=8)
    lengths = torch.tensor([9], dtype=torch.int32)
    segments = torch.tensor([[0] * 10 + [1] * 7], dtype=torch.int32)
    args = (q, k, v, lengths, segments, segments, 32**-0.5)
    torch.library.opcheck(
        torch.ops.egom2p.flash_attention_fwd.default,
        args,
        test_utils=("test_schema", "test_faketensor", "test_autograd_registration"),
    )
    compiled = torch.compile(flash_attention, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(
        compiled(q, k, v, lengths, segments, segments), flash_attention(q, k, v, lengths, segments, segments)
    )


def test_segment_block_ranges_skip_padding_and_empty_blocks():
    segments = torch.tensor([[0, 0, 1, 1, 2, 2, 3]], dtype=torch.int32)
    ranges = segment_block_ranges(segments, torch.tensor([5]), block=2)
    lo, hi = ranges[0, :, 0].tolist(), ranges[0, :, 1].tolist()
    assert lo[:3] == [0, 1, 2] and hi[:3] == [0, 1, 2]  # block 2 holds only the valid token 4
    assert lo[3] > hi[3]  # block 3: all beyond the length -> empty range, overlaps nothing

"""fused_linear_cross_entropy equals the unfused head + F.cross_entropy(reduction='sum').

The PyTorch path runs as is on CPU; the Triton row kernel (the CUDA path) runs in the interpreter
here (fp32/fp16) and compiled in bf16 in tests/gpu.
"""

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from egom2p.model.kernels import fused_linear_ce
from egom2p.model.kernels.fused_linear_ce import (
    chunk_cross_entropy,
    default_chunk_size,
    fused_linear_cross_entropy,
    peak_bytes_per_logit,
)

# The row kernel's two paths; the Triton one needs triton (an optional extra of egom2p-model).
ROW_PATHS = [
    pytest.param(False, id="torch"),
    pytest.param(True, id="triton-interpreter", marks=pytest.mark.skipif(
        importlib.util.find_spec("triton") is None, reason="triton not installed (egom2p-model[triton])")),
]  # fmt: skip


def _inputs(tokens, dim, vocab, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(tokens, dim, generator=gen, dtype=dtype).requires_grad_()
    weight = (torch.randn(vocab, dim, generator=gen, dtype=dtype) * 0.5).requires_grad_()
    targets = torch.randint(0, vocab, (tokens,), generator=gen)
    return hidden, weight, targets


def _unfused(hidden, weight, targets, ignore_index=-100):
    return F.cross_entropy(hidden @ weight.T, targets, reduction="sum", ignore_index=ignore_index)


@pytest.mark.parametrize(
    ("tokens", "dim", "vocab", "chunk_size"),
    [(37, 16, 53, 8), (64, 32, 100, 64), (50, 8, 7, 1000), (31, 24, 257, 5)],  # chunks that do not divide T
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_loss_and_grads_match_unfused(tokens, dim, vocab, chunk_size, dtype):
    hidden, weight, targets = _inputs(tokens, dim, vocab, dtype)
    upstream = 1.7  # the backward must scale the stored gradients by the incoming gradient
    loss = fused_linear_cross_entropy(hidden, weight, targets, chunk_size=chunk_size)
    grads = torch.autograd.grad(loss * upstream, (hidden, weight))
    ref = _unfused(hidden, weight, targets)
    ref_grads = torch.autograd.grad(ref * upstream, (hidden, weight))
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-4}
    assert loss.dtype == dtype
    torch.testing.assert_close(loss, ref, **tol)
    for got, want in zip(grads, ref_grads):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, **tol)


def test_ignore_index_tokens_add_no_loss_and_no_gradient():
    hidden, weight, targets = _inputs(20, 8, 11, torch.float64)
    targets[[0, 7, 19]] = -100
    loss = fused_linear_cross_entropy(hidden, weight, targets, chunk_size=6)
    loss.backward()
    torch.testing.assert_close(loss, _unfused(hidden.detach(), weight.detach(), targets))
    assert hidden.grad[[0, 7, 19]].abs().max() == 0


def test_empty_input_returns_graph_connected_zero():
    hidden, weight, _ = _inputs(0, 8, 11, torch.float32)
    loss = fused_linear_cross_entropy(hidden, weight, torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert weight.grad is not None and weight.grad.abs().max() == 0
    assert hidden.grad.shape == (0, 8)


def test_only_requested_gradients_and_no_grad_mode(monkeypatch):
    hidden, weight, targets = _inputs(9, 8, 11, torch.float64)
    frozen = weight.detach()
    loss = fused_linear_cross_entropy(hidden, frozen, targets, chunk_size=4)
    (grad_hidden,) = torch.autograd.grad(loss, (hidden,))
    torch.testing.assert_close(grad_hidden, torch.autograd.grad(_unfused(hidden, frozen, targets), (hidden,))[0])
    asked = []
    real = fused_linear_ce.chunk_cross_entropy
    monkeypatch.setattr(fused_linear_ce, "chunk_cross_entropy", lambda *a: asked.append(a[3]) or real(*a))
    with torch.no_grad():  # validation: the loss only, no gradient work at all
        value = fused_linear_cross_entropy(hidden, weight, targets, chunk_size=4)
    assert not value.requires_grad and asked == [False] * 3
    torch.testing.assert_close(value, _unfused(hidden.detach(), frozen, targets))
    fused_linear_cross_entropy(hidden.detach(), frozen, targets, chunk_size=4)  # nothing requires grad
    assert asked == [False] * 6


def test_default_chunk_chunks_a_released_modality():
    """At V = 64,000 a ~4,000-token modality takes more than one chunk, and a chunk's logits stay ~256 MiB."""
    for dtype, triton_path in ((torch.bfloat16, True), (torch.bfloat16, False), (torch.float32, False)):
        chunk = default_chunk_size(64000, dtype, triton_path)
        assert 256 <= chunk < 4000
        assert chunk * 64000 * peak_bytes_per_logit(dtype, triton_path) <= fused_linear_ce.LOGIT_CHUNK_BYTES
    assert peak_bytes_per_logit(torch.bfloat16, True) == 2 and peak_bytes_per_logit(torch.bfloat16, False) == 6
    hidden, weight, targets = _inputs(40, 8, 11, torch.float64)
    torch.testing.assert_close(fused_linear_cross_entropy(hidden, weight, targets), _unfused(hidden, weight, targets))


@pytest.mark.parametrize("use_triton", ROW_PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_chunk_cross_entropy_rows_against_float64(use_triton, dtype):
    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(9, 37, generator=gen) * 3).to(dtype)
    targets = torch.randint(0, 37, (9,), generator=gen)
    targets[[2, 5]] = -100
    ref_logits = logits.double().requires_grad_()
    ref = F.cross_entropy(ref_logits, targets, reduction="none")
    ref.sum().backward()
    losses, grad = chunk_cross_entropy(logits.clone(), targets, -100, True, use_triton)
    assert losses.dtype == torch.float32
    torch.testing.assert_close(losses.double(), ref, rtol=1e-5, atol=1e-5)
    grad_tol = 1e-6 if dtype == torch.float32 else 1e-3
    torch.testing.assert_close(grad.double(), ref_logits.grad, rtol=grad_tol, atol=grad_tol)
    assert grad[[2, 5]].abs().max() == 0
    loss_only, none = chunk_cross_entropy(logits.clone(), targets, -100, False, use_triton)
    assert none is None and torch.equal(loss_only, losses)


@pytest.mark.parametrize("use_triton", ROW_PATHS)
def test_out_of_range_target_is_nan_not_a_device_assert(use_triton):
    """The sync-free signal the CUDA path gives instead of a host-side check."""
    logits = torch.randn(3, 11)
    losses, grad = chunk_cross_entropy(logits, torch.tensor([1, 11, -100]), -100, True, use_triton)
    assert torch.isfinite(losses[0]) and losses[1].isnan() and losses[2] == 0
    assert grad[1].isnan().all() and torch.isfinite(grad[0]).all()


def test_weight_gradient_sums_half_precision_products_in_fp32():
    """Each chunk's bf16 weight-gradient product is added in fp32, never rounded to bf16 first."""
    gen = torch.Generator().manual_seed(4)
    a, b = (torch.randn(64, 200, generator=gen).bfloat16(), torch.randn(200, 32, generator=gen).bfloat16())
    acc = torch.zeros(64, 32)
    fused_linear_ce._add_product(acc, a, b)
    exact = a.double() @ b.double()
    assert (acc.double() - exact).abs().max() < 1e-4  # bf16 rounding of the result would be ~1e-1 here


def test_bf16_inputs_accumulate_in_fp32():
    hidden, weight, targets = _inputs(48, 32, 97, torch.bfloat16)
    loss = fused_linear_cross_entropy(hidden, weight, targets, chunk_size=10)
    loss.backward()
    ref_h, ref_w = hidden.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    ref = _unfused(ref_h, ref_w, targets)
    ref.backward()
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), ref, rtol=2e-2, atol=0.5)
    assert hidden.grad.dtype == torch.bfloat16 and weight.grad.dtype == torch.bfloat16
    torch.testing.assert_close(hidden.grad.double(), ref_h.grad, rtol=5e-2, atol=5e-2)
    torch.testing.assert_close(weight.grad.double(), ref_w.grad, rtol=5e-2, atol=5e-2)


def test_autocast_runs_matmuls_in_autocast_dtype_like_linear():
    hidden, weight, targets = _inputs(30, 16, 41, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fused_linear_cross_entropy(hidden, weight, targets, chunk_size=7)
        ref = F.cross_entropy(F.linear(hidden, weight), targets, reduction="sum")
    loss.backward()
    assert hidden.grad.dtype == torch.float32 and weight.grad.dtype == torch.float32  # params keep their dtype
    torch.testing.assert_close(loss, ref.float(), rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize(
    ("hidden_shape", "target", "match"),
    [((5, 8), 11, "outside"), ((5, 8), -3, "outside"), ((5, 7), 0, "hidden"), ((5,), 0, "hidden")],
)
def test_bad_inputs_raise_clear_errors(hidden_shape, target, match):
    hidden = torch.randn(*hidden_shape)
    targets = torch.full(hidden_shape[:1], target)
    with pytest.raises(ValueError, match=match):
        fused_linear_cross_entropy(hidden, torch.randn(11, 8), targets)

"""The fused head + CE on CUDA (Triton row kernel, gradient in place) at the released head shape.

bf16 fused vs unfused fp32 at V 64,000, D 768, T 4,000; peak memory per chunk size; the no_grad path
does no gradient work (time and memory); an out-of-range target gives NaN without a host sync.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from egom2p.model.kernels.fused_linear_ce import chunk_cross_entropy, default_chunk_size, fused_linear_cross_entropy

pytestmark = pytest.mark.gpu

DEVICE = torch.device("cuda")
TOKENS, DIM, VOCAB = 4000, 768, 64000


def _inputs(dtype=torch.bfloat16, seed=0):
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    hidden = torch.randn(TOKENS, DIM, generator=gen, device=DEVICE, dtype=dtype).requires_grad_()
    weight = (torch.randn(VOCAB, DIM, generator=gen, device=DEVICE, dtype=dtype) * DIM**-0.5).requires_grad_()
    targets = torch.randint(0, VOCAB, (TOKENS,), generator=gen, device=DEVICE)
    targets[::97] = -100
    return hidden, weight, targets


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def test_bf16_fused_matches_unfused_fp32():
    hidden, weight, targets = _inputs()
    loss = fused_linear_cross_entropy(hidden, weight, targets)
    grads = torch.autograd.grad(loss, (hidden, weight))
    h32, w32 = (t.detach().float().requires_grad_() for t in (hidden, weight))
    ref = F.cross_entropy(F.linear(h32, w32), targets, reduction="sum")
    ref_grads = torch.autograd.grad(ref, (h32, w32))
    assert loss.dtype == torch.float32
    assert abs(loss.item() - ref.item()) / ref.item() < 1e-3
    for name, got, want in zip(("hidden", "weight"), grads, ref_grads):
        assert got.dtype == torch.bfloat16, name
        assert _rel(got, want) < 2e-2, f"d{name}: relative error {_rel(got, want):.2e}"


def _peak_gib(fn) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**30


def test_peak_memory_per_chunk_size_and_no_grad_path():
    from triton.testing import do_bench

    hidden, weight, targets = _inputs()
    auto = default_chunk_size(VOCAB, torch.bfloat16, triton_path=True)
    peaks = {}
    for chunk in (None, 1024, 4096):
        peaks[chunk] = _peak_gib(lambda c=chunk: torch.autograd.grad(fused_linear_cross_entropy(hidden, weight, targets, c),
                                                                     (hidden, weight)))  # fmt: skip
    with torch.no_grad():
        peak_no_grad = _peak_gib(lambda: fused_linear_cross_entropy(hidden, weight, targets))
        ms_no_grad = do_bench(lambda: fused_linear_cross_entropy(hidden, weight, targets), return_mode="median")
    ms_grad = do_bench(lambda: torch.autograd.grad(fused_linear_cross_entropy(hidden, weight, targets), (hidden, weight)),
                       return_mode="median")  # fmt: skip
    print(f"auto chunk {auto} tokens; peak GiB by chunk {peaks}; no_grad peak {peak_no_grad:.3f} GiB, "
          f"{ms_no_grad:.2f} ms vs {ms_grad:.2f} ms with gradients")
    logits = auto * VOCAB * 2  # bf16 logits, gradient written in place
    weight_grad = VOCAB * DIM * (4 + 2)  # fp32 accumulator + the bf16 copy handed to autograd
    assert peaks[None] * 2**30 < logits + weight_grad + 256 * 2**20
    assert peaks[None] < peaks[4096]
    assert peak_no_grad * 2**30 < logits + 256 * 2**20  # no V x D gradient, no gradient pass
    assert ms_no_grad < 0.7 * ms_grad


def test_out_of_range_target_is_nan_without_a_host_sync():
    hidden, weight, targets = _inputs(seed=1)
    targets[5] = VOCAB + 3
    fused_linear_cross_entropy(hidden, weight, targets).backward()  # compile outside the sync check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = fused_linear_cross_entropy(hidden, weight, targets)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert loss.isnan()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
def test_row_kernel_against_float64(dtype):
    gen = torch.Generator(device=DEVICE).manual_seed(2)
    logits = (torch.randn(257, 5003, generator=gen, device=DEVICE) * 4).to(dtype)
    targets = torch.randint(0, 5003, (257,), generator=gen, device=DEVICE)
    targets[[0, 100]] = -100
    ref_logits = logits.double().requires_grad_()
    ref = F.cross_entropy(ref_logits, targets, reduction="none")
    ref.sum().backward()
    losses, grad = chunk_cross_entropy(logits.clone(), targets, -100, True, use_triton=True)
    torch.testing.assert_close(losses.double(), ref, rtol=1e-5, atol=1e-4)
    tol = max(torch.finfo(dtype).eps, 1e-5)  # one rounding to dtype; fp32: the exp of an fp32 difference
    assert grad.dtype == dtype and (grad.double() - ref_logits.grad).abs().max() <= tol
    assert not grad[[0, 100]].any()

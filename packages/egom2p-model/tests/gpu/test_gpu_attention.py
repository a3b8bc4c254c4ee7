"""The compiled Triton attention on CUDA in bf16 and fp16 against float64, with SDPA as the yardstick.

Tolerance: the kernel's max error (output, dQ, dK, dV) against float64 may be at most twice SDPA's
error on the same inputs in the same dtype (plus one ulp of the result's scale). Shapes: head dims
32/64/128, N in {1, 17, 127, 128, 129, 1085, 2048}, Nq != Nk, key lengths {0, 1, N, > N}, query
lengths, sorted runs with -1 padding, unsorted segments, fully masked samples. Also: strided views,
bit-identical backward passes, no spills and async copies in the kernels as compiled, first-call
compile time, CUDA-graph capture, torch.compile with inductor, TF32 for fp32, autocast, no host sync.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from egom2p.model.kernels.reference import AttentionMask, masked_attention_reference
from einops import rearrange

pytestmark = pytest.mark.gpu

DEVICE = torch.device("cuda")
DTYPES = (torch.bfloat16, torch.float16)
HEAD_DIMS = (32, 64, 128)
# One xdist group per (dtype, head dim): under `--dist loadgroup` one worker compiles each kernel variant.
KERNEL_VARIANTS = [
    pytest.param(dtype, head_dim, id=f"{str(dtype)[6:]}-d{head_dim}",
                 marks=pytest.mark.xdist_group(f"attention-{str(dtype)[6:]}-d{head_dim}"))
    for dtype in DTYPES for head_dim in HEAD_DIMS
]  # fmt: skip
CROSS_SIZES = ((1, 17), (17, 1), (127, 128), (128, 129), (129, 127), (1085, 2048), (2048, 1085))
SELF_SIZES = (17, 128, 129, 1085, 2048)
DECODER_RUNS = (1400, 600, 24, 24)  # the released 4-modality decoder layout at 2048 targets


def _flash():
    from egom2p.model.kernels.flash_attention import flash_attention

    return flash_attention


def _runs(num_valid: int, num: int) -> torch.Tensor:
    """Sorted modality runs (the decoder layout) over ``num_valid`` tokens, then -1 padding up to ``num``."""
    sizes = [max(1, round(r * num_valid / sum(DECODER_RUNS))) for r in DECODER_RUNS]
    ids = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))[:num_valid]
    ids = torch.cat([ids, torch.full((num_valid - len(ids),), 3)]) if len(ids) < num_valid else ids
    return torch.cat([ids, torch.full((num - num_valid,), -1)]).to(torch.int32)


def make_case(kind: str, num_q: int, num_k: int, head_dim: int, dtype: torch.dtype, device, seed: int = 0) -> dict:
    """q/k/v (leaf tensors) and the mask of one test case."""
    gen = torch.Generator().manual_seed(seed)
    batch, heads = (1, 2) if kind == "unmasked" else (4, 2)
    q, k, v = (torch.randn(batch, heads, n, head_dim, generator=gen) for n in (num_q, num_k, num_k))
    mask = AttentionMask()
    if kind == "lengths":  # full, no key (length 0), one key, lengths beyond N; query lengths likewise
        mask = AttentionMask(torch.tensor([num_k, 0, 1, num_k + 5]), torch.tensor([num_q + 3, num_q, 1, 0]))
    elif kind == "decoder":  # self-attention: runs with -1 padding, one sample all padding
        valid = [num_q, max(1, (4 * num_q) // 5), max(1, num_q // 3), 0]
        mask = AttentionMask.self_attention(torch.tensor(valid), torch.stack([_runs(n, num_q) for n in valid]))
    elif kind == "unsorted":  # cross-attention with random segment ids, -1 included
        q_segments = torch.randint(-1, 5, (batch, num_q), generator=gen, dtype=torch.int32)
        k_segments = torch.randint(-1, 5, (batch, num_k), generator=gen, dtype=torch.int32)
        mask = AttentionMask(torch.tensor([num_k, num_k // 2, 1, 0]), q_segments=q_segments, k_segments=k_segments)
    case = {name: t.to(device, dtype).requires_grad_() for name, t in zip("qkv", (q, k, v))}
    return {**case, "mask": mask.map(lambda t: t.to(device))}


def _without_query_lengths(case: dict) -> AttentionMask:
    return replace(case["mask"], query_lengths=None)


def _visibility(case: dict) -> torch.Tensor:
    q, k = case["q"], case["k"]
    return case["mask"].visibility(q.shape[0], q.shape[2], k.shape[2], q.device)


def _sdpa(case: dict, q, k, v) -> torch.Tensor:
    """SDPA with the boolean mask; a row that sees no key is opened, then zeroed (as the sdpa backend does)."""
    mask = _visibility(case)
    sees_any = mask.any(-1, keepdim=True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~sees_any).masked_fill(~sees_any, 0.0)


def _out_and_grads(fn, inputs, grad_out):
    out = fn(*inputs)
    return (out, *torch.autograd.grad(out, inputs, grad_out))


def check_case(case: dict, grad_out: torch.Tensor | None = None) -> None:
    """Kernel vs float64 within twice SDPA's error; exact zeros where nothing is visible; no NaN."""
    q, k, v = case["q"], case["k"], case["v"]
    if grad_out is None:
        grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(7)).to(q.device, q.dtype)
    flash = _flash()
    got = _out_and_grads(lambda *t: flash(*t, case["mask"]), (q, k, v), grad_out)
    ref_in = tuple(t.detach().double().requires_grad_() for t in (q, k, v))
    want = _out_and_grads(lambda *t: masked_attention_reference(*t, case["mask"]), ref_in, grad_out.double())
    sdpa = _out_and_grads(lambda *t: _sdpa(case, *t), (q, k, v), grad_out)
    eps = torch.finfo(q.dtype).eps
    for name, g, w, s in zip(("out", "dq", "dk", "dv"), got, want, sdpa):
        assert g.dtype == q.dtype and g.shape == w.shape, name
        assert torch.isfinite(g).all(), f"{name}: NaN or inf"
        err = (g.double() - w).abs().max().item()
        sdpa_err = (s.double() - w).abs().max().item()
        tol = 2 * sdpa_err + eps * max(1.0, w.abs().max().item())
        assert err <= tol, f"{name}: max error {err:.3e} > {tol:.3e} (SDPA's error {sdpa_err:.3e})"
    mask = _visibility(case)[:, 0]
    blind_rows = ~mask.any(-1)  # [B, Nq]: queries that see nothing
    unseen_keys = ~mask.any(-2)  # [B, Nk]: keys nobody sees
    out, dq, dk, dv = got
    assert not out.transpose(1, 2)[blind_rows].any() and not dq.transpose(1, 2)[blind_rows].any()
    assert not dk.transpose(1, 2)[unseen_keys].any() and not dv.transpose(1, 2)[unseen_keys].any()


@pytest.mark.parametrize(("dtype", "head_dim"), KERNEL_VARIANTS)
@pytest.mark.parametrize(("num_q", "num_k"), CROSS_SIZES)
def test_lengths_against_float64(num_q, num_k, head_dim, dtype):
    check_case(make_case("lengths", num_q, num_k, head_dim, dtype, DEVICE))


@pytest.mark.parametrize(("dtype", "head_dim"), KERNEL_VARIANTS)
@pytest.mark.parametrize("num", SELF_SIZES)
def test_decoder_runs_with_padding_against_float64(num, head_dim, dtype):
    check_case(make_case("decoder", num, num, head_dim, dtype, DEVICE, seed=1))


@pytest.mark.parametrize(("dtype", "head_dim"), KERNEL_VARIANTS)
@pytest.mark.parametrize(("num_q", "num_k"), CROSS_SIZES[2:6])
def test_unsorted_segments_against_float64(num_q, num_k, head_dim, dtype):
    check_case(make_case("unsorted", num_q, num_k, head_dim, dtype, DEVICE, seed=2))


@pytest.mark.parametrize(("dtype", "head_dim"), KERNEL_VARIANTS)
def test_unmasked_against_float64(head_dim, dtype):
    check_case(make_case("unmasked", 1085, 2048, head_dim, dtype, DEVICE, seed=3))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_strided_qkv_and_q_kv_views(dtype):
    """q/k/v as views of one projection and of a q + kv pair (how the model calls it), a strided grad_out."""
    gen = torch.Generator().manual_seed(4)
    heads, head_dim, num = 12, 64, 1085
    qkv = torch.randn(3, num, 3 * heads * head_dim, generator=gen).to(DEVICE, dtype).requires_grad_()
    q, k, v = rearrange(qkv, "b n (three h d) -> three b h n d", three=3, h=heads)
    segments = torch.stack([_runs(n, num) for n in (num, 700, 3)]).to(DEVICE)
    lengths = torch.tensor([num, 700, 3], device=DEVICE)
    grad_merged = torch.randn(3, num, heads * head_dim, generator=gen).to(DEVICE, dtype)
    grad_out = rearrange(grad_merged, "b n (h d) -> b h n d", h=heads)  # what a head merge hands back
    check_case({"q": q, "k": k, "v": v, "mask": AttentionMask.self_attention(lengths, segments)}, grad_out)
    assert _flash()(q, k, v, AttentionMask(key_lengths=lengths)).transpose(1, 2).is_contiguous()  # heads merge as a view

    context = torch.randn(3, 2048, 2 * heads * head_dim, generator=gen).to(DEVICE, dtype).requires_grad_()
    ck, cv = rearrange(context, "b n (two h d) -> two b h n d", two=2, h=heads)
    cross = {"q": q, "k": ck, "v": cv, "mask": AttentionMask(key_lengths=torch.tensor([2048, 900, 0], device=DEVICE))}
    check_case(cross, grad_out)


def test_two_backward_passes_are_bit_identical():
    case = make_case("decoder", 2048, 2048, 64, torch.bfloat16, DEVICE, seed=5)
    flash = _flash()
    grad_out = torch.randn_like(case["q"])
    mask = _without_query_lengths(case)
    runs = [torch.autograd.grad(flash(case["q"], case["k"], case["v"], mask), (case["q"], case["k"], case["v"]), grad_out)
            for _ in range(2)]  # fmt: skip
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_compiled_kernels_have_no_spills_and_pipelined_loads():
    """The kernels as Triton compiled them for this GPU (not the offline check's build)."""
    from egom2p.model.kernels._attention_kernels import jit_kernels

    for dtype in DTYPES:
        for head_dim in (64, 128):
            for kind in ("lengths", "decoder"):
                check_case(make_case(kind, 129, 129, head_dim, dtype, DEVICE))
    seen = 0
    for name, fn in jit_kernels(False).items():
        # Triton's per-device cache of compiled kernels (triton.runtime.jit.JITFunction, Triton 3.x).
        for compiled in fn.device_caches[torch.cuda.current_device()][0].values():
            compiled._init_handles()  # loads the binary, sets n_regs / n_spills (a no-op once launched)
            assert compiled.n_spills == 0, f"{name}: {compiled.n_spills} spilled registers"
            if name != "delta":
                assert "async_copy" in compiled.asm["ttgir"], f"{name}: no async copies (loads not pipelined)"
            seen += 1
    assert seen >= 16


def test_first_call_compile_time_is_reported():
    """A fresh process and an empty Triton cache: the first forward + backward compiles every kernel."""
    script = textwrap.dedent("""
        import time, torch
        from egom2p.model.kernels.flash_attention import flash_attention
        q, k, v = (torch.randn(2, 12, 2048, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        from egom2p.model import AttentionMask
        seg = torch.zeros(2, 2048, dtype=torch.int32, device="cuda")
        lengths = torch.tensor([2048, 1000], device="cuda")
        masks = (("lengths", AttentionMask(lengths)), ("segments", AttentionMask(lengths, q_segments=seg, k_segments=seg)))
        for label, mask in masks:
            for attempt in ("first", "second"):
                torch.cuda.synchronize(); start = time.perf_counter()
                flash_attention(q, k, v, mask).sum().backward()
                torch.cuda.synchronize()
                print(f"{label} {attempt} call: {time.perf_counter() - start:.2f} s")
    """)
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TRITON_CACHE_DIR": cache}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    print(done.stdout)
    assert done.returncode == 0, done.stderr[-2000:]
    first = [float(line.split()[-2]) for line in done.stdout.splitlines() if "first" in line]
    assert len(first) == 2 and max(first) < 120


def test_cuda_graph_capture_and_replay_of_forward_and_backward():
    case = make_case("decoder", 1085, 1085, 64, torch.bfloat16, DEVICE, seed=6)
    flash = _flash()
    q, k, v = case["q"], case["k"], case["v"]
    grad_out = torch.randn_like(q)

    def step():
        out = flash(q, k, v, case["mask"])
        return (out, *torch.autograd.grad(out, (q, k, v), grad_out))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static = step()
    with torch.no_grad():
        for t in (q, k, v, grad_out):
            t.copy_(torch.randn_like(t))
    graph.replay()
    for got, want in zip(static, step()):
        assert torch.equal(got, want)


def test_torch_compile_fullgraph_with_inductor():
    case = make_case("decoder", 1085, 1085, 64, torch.bfloat16, DEVICE, seed=7)
    flash = _flash()

    def loss_fn(q, k, v, lengths, segments):
        out = flash(q, k, v, AttentionMask.self_attention(lengths, segments))
        return (out.float() ** 2).sum()

    inputs = (case["q"], case["k"], case["v"])
    meta = (case["mask"].key_lengths, case["mask"].q_segments)
    eager = torch.autograd.grad(loss_fn(*inputs, *meta), inputs)
    compiled = torch.compile(loss_fn, fullgraph=True, dynamic=False)
    got = torch.autograd.grad(compiled(*inputs, *meta), inputs)
    for a, b in zip(got, eager):
        torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-2)


def test_fp32_inputs_run_tf32_dots():
    """fp32 on CUDA: TF32 dots with fp32 accumulation (the module's documented choice), errors of a 10-bit mantissa."""
    case = make_case("decoder", 1085, 1085, 64, torch.float32, DEVICE, seed=8)
    out = _flash()(case["q"], case["k"], case["v"], case["mask"])
    ref = masked_attention_reference(*(t.detach().double() for t in (case["q"], case["k"], case["v"])), case["mask"])
    assert out.dtype == torch.float32
    assert (out.double() - ref).abs().max() < 2e-2


def test_autocast_mixed_dtypes_like_qk_norm():
    """qk-norm under autocast: fp32 q/k from LayerNorm next to a bf16 v; cast to bf16 as SDPA does."""
    case = make_case("lengths", 1085, 2048, 64, torch.float32, DEVICE, seed=9)
    v = case["v"].detach().bfloat16().requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = _flash()(case["q"], case["k"], v, case["mask"])
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert case["q"].grad.dtype == torch.float32 and v.grad.dtype == torch.bfloat16


def test_forward_and_backward_read_nothing_back_from_the_device():
    case = make_case("decoder", 2048, 2048, 64, torch.bfloat16, DEVICE, seed=10)
    flash = _flash()
    flash(case["q"], case["k"], case["v"], _without_query_lengths(case)).sum().backward()  # compile first
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = flash(case["q"], case["k"], case["v"], case["mask"])
        torch.autograd.grad(out, (case["q"], case["k"], case["v"]), torch.ones_like(out))
    finally:
        torch.cuda.set_sync_debug_mode("default")

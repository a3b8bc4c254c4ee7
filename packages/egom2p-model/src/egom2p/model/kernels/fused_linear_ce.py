"""Output head + cross-entropy fused over token chunks (Liger-Kernel's FusedLinearCrossEntropy idea).

``fused_linear_cross_entropy(hidden [T, D], weight [V, D], targets [T])`` returns the SUM over tokens
of ``cross_entropy(hidden @ weight.T, targets)``. The forward walks the tokens in chunks: per chunk it
computes the ``[chunk, V]`` logits, the loss and, when gradients are wanted, the gradient of the
logits (``softmax - onehot``), which it turns into that chunk's ``grad_hidden`` rows and adds into
an fp32 ``grad_weight`` (fp32 products: ``torch.mm(out_dtype=float32)`` on CUDA, so no chunk's
partial sum is rounded to bf16). The full ``[T, V]`` logits never exist, and the backward only
scales the stored gradients by the incoming gradient. Without gradients (``torch.no_grad``,
validation, or inputs that need none) only the loss is computed.

Peak memory of one chunk, per logit (``chunk x V`` of them; the default chunk holds
:data:`LOGIT_CHUNK_BYTES` of them):
- CUDA with Triton (``_ce_kernel.py``): the matmul output only, gradient written in place:
  2 bytes in bf16/fp16, 4 in fp32;
- the PyTorch path (CPU, or no Triton): an fp32 copy worked in place, plus the matmul output while
  it is converted: 6 bytes in bf16/fp16, 4 in fp32, 8 in fp64.
Plus the fp32 ``grad_weight`` (``V x D``) when the weight needs a gradient.

Target ids are checked against ``[0, V)`` on CPU (a ValueError); on CUDA that check would be a host
synchronisation per call, so there an out-of-range id gives a NaN loss (and NaN gradient row) instead.
"""

from __future__ import annotations

import torch

LOGIT_CHUNK_BYTES = 256 * 2**20  # the default chunk's logits buffer: ~2,100 tokens at V = 64,000 in bf16


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The matmul dtype: the autocast dtype when autocast is on (as ``F.linear`` would), else the inputs'."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.promote_types(hidden.dtype, weight.dtype)


def _use_triton(device: torch.device, dtype: torch.dtype) -> bool:
    """The Triton row kernel runs on CUDA for fp16/bf16/fp32 when triton imports; PyTorch elsewhere."""
    if device.type != "cuda" or dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return False
    try:
        import egom2p.model.kernels._ce_kernel  # noqa: F401
    except ImportError:
        return False
    return True


def peak_bytes_per_logit(dtype: torch.dtype, triton_path: bool) -> int:
    """Bytes held per ``[chunk, V]`` logit at the chunk's peak (see the module docstring)."""
    size = torch.empty((), dtype=dtype).element_size()
    if triton_path:
        return size
    acc = max(size, 4)
    return acc + (size if size < 4 else 0)


def default_chunk_size(vocab: int, dtype: torch.dtype, triton_path: bool) -> int:
    """Tokens per chunk so that one chunk's logits take about :data:`LOGIT_CHUNK_BYTES` at their peak."""
    return max(1, LOGIT_CHUNK_BYTES // (vocab * peak_bytes_per_logit(dtype, triton_path)))


def chunk_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int, need_grad: bool, use_triton: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-row CE of a ``[C, V]`` logits chunk: losses ``[C]`` (fp32, or fp64 for fp64 logits) and, when
    ``need_grad``, ``softmax - onehot`` (else None).

    The gradient is the logits' own buffer in their dtype on the Triton path, an fp32 (fp64) work
    buffer on the PyTorch path; the caller casts. Ignored rows have loss 0 and a zero gradient row;
    a target outside ``[0, V)`` gives a NaN loss and a NaN gradient row. ``logits`` is consumed.
    """
    if use_triton:
        from egom2p.model.kernels._ce_kernel import ce_rows_triton
        from egom2p.model.kernels.flash_attention import interpreting

        logits = logits if logits.stride(1) == 1 else logits.contiguous()  # rows of the kernel are dense
        losses = ce_rows_triton(logits, targets, ignore_index, need_grad, interpreting())
        return losses, (logits if need_grad else None)
    vocab = logits.shape[1]
    keep = targets != ignore_index
    in_range = (targets >= 0) & (targets < vocab)
    safe = torch.where(keep & in_range, targets, 0)
    x = logits.to(torch.promote_types(logits.dtype, torch.float32))  # fp32 (fp64) work buffer
    del logits  # a bf16 matmul output is freed here
    row_max = x.amax(dim=1)
    target_logit = x.gather(1, safe[:, None]).squeeze(1)
    x.sub_(row_max[:, None]).exp_()  # in place: exp(x - max), no second [C, V] buffer
    total = x.sum(dim=1)
    losses = torch.where(in_range, row_max + total.log() - target_logit, float("nan"))
    losses = torch.where(keep, losses, 0.0)
    if not need_grad:
        return losses, None
    x.div_(total[:, None])
    x[torch.arange(x.shape[0], device=x.device), safe] -= 1.0
    x.mul_(torch.where(keep & ~in_range, float("nan"), keep.to(x.dtype))[:, None])
    return losses, x


def _add_product(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``acc += a @ b`` with ``acc``'s precision for the products' sum (fp16/bf16 inputs, fp32 acc)."""
    if a.dtype == acc.dtype:
        acc.addmm_(a, b)
        return
    if acc.is_cuda:
        try:
            acc += torch.mm(a, b, out_dtype=acc.dtype)  # tensor cores, fp32 output
            return
        except TypeError:  # a torch without mm(out_dtype=...): upcast below
            pass
    acc.addmm_(a.to(acc.dtype), b.to(acc.dtype))


def _chunked_loss_and_grads(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    dtype: torch.dtype,
    chunk_size: int | None,
    ignore_index: int,
    need_grad_hidden: bool,
    need_grad_weight: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Loss sum (scalar), grad_hidden ``[T, D]`` (hidden's dtype) and grad_weight ``[V, D]`` (fp32, or
    fp64), the latter two only when asked for. Matmuls run in ``dtype``."""
    num_tokens = hidden.shape[0]
    use_triton = _use_triton(hidden.device, dtype)
    chunk = chunk_size or default_chunk_size(weight.shape[0], dtype, use_triton)
    acc = torch.promote_types(dtype, torch.float32)
    need_grad = need_grad_hidden or need_grad_weight
    w = weight.to(dtype)
    loss = torch.zeros((), dtype=acc, device=hidden.device)
    grad_hidden = torch.empty_like(hidden) if need_grad_hidden else None
    grad_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_grad_weight else None
    for start in range(0, num_tokens, chunk):
        h = hidden[start : start + chunk].to(dtype)
        losses, grad_logits = chunk_cross_entropy(h @ w.T, targets[start : start + chunk], ignore_index, need_grad,
                                                  use_triton)  # fmt: skip
        loss += losses.sum()
        if not need_grad:
            continue
        grad_logits = grad_logits.to(dtype)  # no copy on the Triton path (already in place, in dtype)
        if need_grad_hidden:
            grad_hidden[start : start + chunk] = grad_logits @ w
        if need_grad_weight:
            _add_product(grad_weight, grad_logits.T, h)
    return loss, grad_hidden, grad_weight


class _FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, dtype: torch.dtype, chunk_size: int | None, ignore_index: int):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        loss, grad_hidden, grad_weight = _chunked_loss_and_grads(
            hidden, weight, targets, dtype, chunk_size, ignore_index, need_h, need_w
        )
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype) if need_w else None)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_loss.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = grad_weight * grad_loss.to(grad_weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None


def _check_targets(targets: torch.Tensor, vocab: int, ignore_index: int) -> None:
    # CPU only: on CUDA reading the answer back would stall the stream (the kernels give NaN instead).
    if targets.device.type != "cpu" or torch.compiler.is_compiling():
        return
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= vocab))
    if bad.any():
        raise ValueError(f"fused_linear_cross_entropy: target id {targets[bad][0].item()} outside [0, {vocab})")


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Sum over tokens of ``cross_entropy(hidden @ weight.T, targets)`` without ``[T, V]`` logits.

    Args:
        hidden: ``[T, D]`` float (fp32/bf16/fp16/fp64); T may be 0 (returns a graph-connected 0).
        weight: ``[V, D]`` output-head weight (no bias).
        targets: int ``[T]`` class ids in ``[0, V)``; tokens equal to ``ignore_index`` add nothing.
        chunk_size: tokens per chunk; None sizes it from V so one chunk's logits take about
            :data:`LOGIT_CHUNK_BYTES` (see the module docstring for bytes per logit).

    Returns an fp32 scalar (fp64 for fp64 inputs). Logits and softmax are fp32; under autocast the
    matmuls run in the autocast dtype, like ``F.linear``. When gradients are wanted they are
    computed in the forward; under ``torch.no_grad`` only the loss is.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"fused_linear_cross_entropy: hidden [T, D] and weight [V, D] expected, got "
                         f"{tuple(hidden.shape)} and {tuple(weight.shape)}")  # fmt: skip
    if targets.shape != hidden.shape[:1] or targets.dtype.is_floating_point:
        raise ValueError(f"fused_linear_cross_entropy: targets must be int [{hidden.shape[0]}], got "
                         f"{targets.dtype} {tuple(targets.shape)}")  # fmt: skip
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"fused_linear_cross_entropy: chunk_size must be >= 1, got {chunk_size}")
    _check_targets(targets, weight.shape[0], ignore_index)
    dtype = _compute_dtype(hidden, weight)
    targets = targets.contiguous()
    with torch.autocast(hidden.device.type, enabled=False):
        if not (torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)):
            return _chunked_loss_and_grads(hidden, weight, targets, dtype, chunk_size, ignore_index, False, False)[0]
        return _FusedLinearCrossEntropy.apply(hidden, weight, targets, dtype, chunk_size, ignore_index)

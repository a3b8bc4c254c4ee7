"""The tokenizer's compute dtype: float32 is exact and leaves a caller's autocast alone; bfloat16 runs the trunks
in bf16 (the codebook search stays float32) and stays close to float32."""

from __future__ import annotations

import pytest
import torch
from egom2p.tokenizers.vqvae import VQVAE


@pytest.fixture(params=["cam-tiny", "gaze-tiny"])
def model(request):
    torch.manual_seed(0)
    return VQVAE.from_preset(request.param).eval()


def _inputs(model: VQVAE, batch: int = 16) -> torch.Tensor:
    x = torch.randn(batch, model.config.num_frames, model.config.input_channels, generator=torch.Generator().manual_seed(1))
    if model.kind == "gaze":
        x[..., 2] = (x[..., 2] > -1).float()  # the validity channel is 0 / 1
    return x


def _linear_output_dtypes(model: VQVAE, run) -> set[torch.dtype]:
    seen: set[torch.dtype] = set()
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
             for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_bfloat16_trunks_stay_close_to_float32(model):
    x = _inputs(model)
    tokens32, recon32 = model.tokenize(x), model.decode_tokens(model.tokenize(x))
    model.set_compute_dtype("bf16")
    assert _linear_output_dtypes(model, lambda: model.tokenize(x)) == {torch.bfloat16}
    tokens16 = model.tokenize(x)
    recon16 = model.decode_tokens(tokens32)
    assert tokens16.dtype == torch.int64 and recon16.dtype == torch.float32
    assert (tokens16 == tokens32).float().mean() > 0.9  # only near-ties flip
    scale = recon32.abs().max()
    assert (recon16 - recon32).abs().max() < 0.05 * scale
    assert not torch.equal(recon16, recon32)  # bf16 really ran
    model.set_compute_dtype(None)
    assert torch.equal(model.tokenize(x), tokens32) and torch.equal(model.decode_tokens(tokens32), recon32)


def test_float32_leaves_a_callers_autocast_on(model):
    x = _inputs(model, 4)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dtypes = _linear_output_dtypes(model, lambda: model(x))
    assert dtypes == {torch.bfloat16}  # the trainer's bf16 autocast reaches the trunks


@pytest.mark.parametrize("bad", ["int8", "float64", "fast"])
def test_unsupported_compute_dtype_is_named(bad):
    with pytest.raises(ValueError, match=bad if bad != "int8" else "int8"):
        VQVAE.from_preset("cam-tiny").set_compute_dtype(bad)

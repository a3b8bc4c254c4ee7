"""Whole egom2p training steps on CUDA: the triton backend (compiled kernels) against sdpa.

egom2p-base under bf16 autocast (loss and per-parameter gradient norms), the qk-norm preset under
autocast (fp32 q/k next to bf16 v), fp32 without autocast (TF32 dots), and the fused loss.
"""

from __future__ import annotations

import pytest
import torch
from egom2p.model import EgoM2P, preset_config
from model_helpers import random_batch

pytestmark = pytest.mark.gpu

DEVICE = torch.device("cuda")
BUDGETS = {"num_encoder_tokens": 2048, "num_decoder_tokens": 2048}


def _step(preset: str, backend: str, autocast: bool, **overrides) -> tuple[float, dict[str, float]]:
    """Loss and per-parameter gradient norms of one forward + backward from a fixed init and batch."""
    config = preset_config(preset, attn_backend=backend, **overrides)
    torch.manual_seed(0)
    model = EgoM2P(config).to(DEVICE)
    batch = random_batch(config, batch_size=4, p_input=0.15, p_target=0.12, seed=1)
    batch = {name: {key: t.to(DEVICE) for key, t in d.items()} for name, d in batch.items()}
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        out = model(batch, **BUDGETS)
    out.loss.backward()
    norms = {name: p.grad.norm().item() for name, p in model.named_parameters() if p.grad is not None}
    return out.loss.item(), norms


def _assert_close_steps(got, want, loss_rtol: float, grad_rtol: float) -> None:
    (loss, norms), (ref_loss, ref_norms) = got, want
    assert abs(loss - ref_loss) <= loss_rtol * abs(ref_loss), (loss, ref_loss)
    assert norms.keys() == ref_norms.keys()
    floor = 1e-3 * max(ref_norms.values())  # parameters whose gradient is ~0 in both
    bad = {n: (norms[n], ref_norms[n]) for n in norms if abs(norms[n] - ref_norms[n]) > grad_rtol * ref_norms[n] + floor}
    assert not bad, f"gradient norms differ: {dict(list(bad.items())[:8])}"


def test_base_training_step_triton_matches_sdpa_under_bf16_autocast():
    _assert_close_steps(_step("egom2p-base", "triton", True), _step("egom2p-base", "sdpa", True), 1e-2, 5e-2)


def test_qk_norm_preset_under_autocast():
    preset, depth = "egom2p_base_12e_12d_swiglu_qknorm_nobias", {"encoder_depth": 2, "decoder_depth": 2}
    _assert_close_steps(_step(preset, "triton", True, **depth), _step(preset, "sdpa", True, **depth), 1e-2, 5e-2)


def test_fp32_step_without_autocast_uses_tf32_attention():
    depth = {"encoder_depth": 2, "decoder_depth": 2}
    _assert_close_steps(_step("egom2p-base", "triton", False, **depth), _step("egom2p-base", "sdpa", False, **depth),
                        2e-3, 2e-2)  # fmt: skip


def test_fused_loss_in_the_model_matches_the_unfused_head():
    depth = {"encoder_depth": 2, "decoder_depth": 2}
    fused = _step("egom2p-base", "triton", True, fused_loss=True, **depth)
    _assert_close_steps(fused, _step("egom2p-base", "triton", True, **depth), 1e-2, 5e-2)

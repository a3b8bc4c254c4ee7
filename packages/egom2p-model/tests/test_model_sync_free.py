"""The training step reads nothing back from the device: it compiles as one graph, and on CUDA it runs
under ``torch.cuda.set_sync_debug_mode("error")``. The packed batch and inference packing (no data
package here: packed batches are built by hand from the documented layout)."""

from __future__ import annotations

import pytest
import torch
from egom2p.core.packing import PackedBatch
from egom2p.model import EgoM2P
from model_helpers import random_batch, tiny_config

BUDGETS = dict(num_encoder_tokens=20, num_decoder_tokens=20)


def _train_step(model: EgoM2P, batch, **kwargs):
    """Forward + loss + backward, as the trainer runs it (the loader has validated the token ids)."""
    out = model(batch, check_vocab=False, **kwargs)
    out.loss.backward()
    return out.loss.detach(), {name: loss.detach() for name, loss in out.mod_loss.items()}


def _grads(model: EgoM2P) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _hand_packed(batch, budgets=(None, None)):
    """The packed layout (egom2p.core.packing docstring) of ``batch``: all samples in one row, no rounding."""
    names = sorted(batch)
    sides, targets = {}, {name: [] for name in names}
    for side, mask_key, budget in (("encoder", "input_mask", budgets[0]), ("decoder", "target_mask", budgets[1])):
        cols = {key: [] for key in ("ids", "modality", "positions", "samples")}
        for s in range(next(iter(batch.values()))["tensor"].shape[0]):
            kept = 0
            for i, name in enumerate(names):
                ids = batch[name]["tensor"][s].reshape(-1)
                for pos in (~batch[name][mask_key][s]).nonzero().flatten().tolist():
                    if budget is not None and kept == budget:
                        break
                    kept += 1
                    if side == "decoder":
                        targets[name].append(len(cols["ids"]))
                    for key, value in zip(cols, (int(ids[pos]), i, pos, s)):
                        cols[key].append(value)
        n = len(cols["ids"])
        sides[side] = {key: torch.tensor(values, dtype=torch.int64).view(1, n) for key, values in cols.items()}
        sides[side]["lengths"] = torch.tensor([n], dtype=torch.int32)
    sides["targets"] = {name: torch.tensor(slots + [-1], dtype=torch.int64) for name, slots in targets.items()}
    return PackedBatch.from_dict(sides)


@pytest.mark.long(seconds=20)
def test_compiled_training_step_has_no_graph_break_and_matches_eager():
    torch.manual_seed(0)
    model = EgoM2P(tiny_config())
    batch = random_batch(model.config, batch_size=3, seed=21)
    for d in batch.values():
        d["input_mask"][1] = True  # a sample without inputs
        d["target_mask"][2] = True  # and one without targets
    eager_loss, eager_mod = _train_step(model, batch, **BUDGETS)
    eager_grads = _grads(model)
    model.zero_grad(set_to_none=True)
    # fullgraph=True: any host read (.item(), nonzero, a data-dependent shape) would raise here.
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        step = torch.compile(_train_step, fullgraph=True, dynamic=False, backend="aot_eager")
        loss, mod = step(model, batch, **BUDGETS)
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
    for name in eager_mod:
        torch.testing.assert_close(mod[name], eager_mod[name], rtol=1e-5, atol=1e-6)
    grads = _grads(model)
    assert grads.keys() == eager_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, eager_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def test_packed_batch_gives_the_unpacked_losses_and_gradients():
    torch.manual_seed(0)
    model = EgoM2P(tiny_config())
    batch = random_batch(model.config, batch_size=3, seed=22)
    for d in batch.values():
        d["input_mask"][0] = True
        d["target_mask"][1] = True
    del batch["tok_gaze"]  # a modality the model has but the batch lacks: indices are remapped
    loss, mod = _train_step(model, batch, num_encoder_tokens=9, num_decoder_tokens=7)
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    packed = _hand_packed(batch, budgets=(9, 7))
    packed_loss, packed_mod = _train_step(model, packed)
    torch.testing.assert_close(packed_loss, loss, rtol=1e-5, atol=1e-6)
    assert packed_mod.keys() == mod.keys()
    for name, value in _grads(model).items():
        torch.testing.assert_close(value, want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_packed_batch_value_check_names_the_problem():
    model = EgoM2P(tiny_config()).eval()
    packed = _hand_packed(random_batch(model.config, seed=23))
    packed.decoder.ids[0, 0] = 10**6
    with pytest.raises(ValueError, match=r"packed batch: decoder.ids has tok_\w+ values \[1000000\]"):
        model(packed)
    packed = _hand_packed(random_batch(model.config, seed=23))
    packed.targets["tok_cam"][0] = packed.targets["tok_rgb"][0]
    with pytest.raises(ValueError, match=r"targets\['tok_cam'\] must list decoder slots of tok_cam"):
        model(packed)


@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_packed_inference_gives_the_unpacked_logits(backend):
    """Guidance packs a long conditional row with a short unconditional one; logits are unchanged."""
    model = EgoM2P(tiny_config(attn_backend=backend)).eval()
    batch = random_batch(model.config, batch_size=4, p_input=0.9, seed=24)
    for name in ("tok_depth", "tok_rgb", "tok_gaze"):
        batch[name]["input_mask"][2:] = True  # rows 2, 3: only a few cam inputs (unconditional passes)
    positions = torch.tensor([[0, 3], [1, 2], [5, 4], [0, 1]])
    with torch.no_grad():
        plain = model.encode(batch)
        packed = model.encode(batch, pack=True)
        want = model.decode_positions(plain, "tok_depth", positions)
        got = model.decode_positions(packed, "tok_depth", positions)
    assert packed.samples is not None and packed.num_samples == 4
    assert packed.context.shape[0] * packed.context.shape[1] < plain.context.shape[0] * plain.context.shape[1]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("packed", [False, True])
def test_training_step_runs_without_host_sync_on_cuda(packed):
    from egom2p.model.attention import _triton_available

    backends = ["sdpa"] + (["triton"] if _triton_available() else [])
    for backend in backends:
        torch.manual_seed(0)
        model = EgoM2P(tiny_config(attn_backend=backend)).cuda()
        batch = random_batch(model.config, batch_size=3, seed=25)
        kwargs = {} if packed else BUDGETS
        if packed:
            batch = _hand_packed(batch).to("cuda")
        else:
            batch = {k: {n: t.cuda() for n, t in v.items()} for k, v in batch.items()}
        _train_step(model, batch, **kwargs)  # warm-up: lazy CUDA initialisation may synchronise
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            loss, _ = _train_step(model, batch, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert torch.isfinite(loss).item()

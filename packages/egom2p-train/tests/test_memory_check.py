"""The training memory estimate against the activations a real forward saves, and the refusal it leads to."""

from __future__ import annotations

import pytest
import torch
from egom2p.train.config import load_config
from egom2p.train.distributed import DistInfo
from egom2p.train.memory_check import (
    GIB,
    MemoryEstimate,
    available_memory,
    check_training_memory,
    estimate_training_memory,
    memory_problem,
)
from egom2p.train.recipe import build_recipe
from fakes import ROOT, TINY_MODALITIES

CPU = DistInfo(0, 1, 0, torch.device("cpu"))


def saved_activation_bytes(fn) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``fn`` runs (what training holds)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(storages.values())


def estimate_for(cfg, micro_batch: int) -> MemoryEstimate:
    recipe = build_recipe(cfg)
    with torch.device("meta"):
        model = recipe.build_model()
    return estimate_training_memory(model, recipe.activation_shape(), micro_batch, cfg.dtype)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("width", [96, 192])
def test_tokenizer_estimate_matches_the_saved_activations(dtype, width):
    cfg = load_config("cam-demo-cpu",
                      [f"dtype={dtype}", f"tokenizer.dim_tokens={width}", "tokenizer.num_heads=4"])
    recipe = build_recipe(cfg)
    model = recipe.build_model().train()
    tok = cfg.tokenizer_config()
    windows = torch.randn(32, tok.num_frames, tok.input_channels)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype != "float32"):
        measured = saved_activation_bytes(lambda: recipe.forward(model, windows, True))
    estimate = estimate_for(cfg, 32)
    assert 0.8 * measured < estimate.activations < 1.25 * measured, (estimate.activations, measured)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)  # the EMA codebook
    assert frozen > 0 and estimate.states == 16 * trained + 4 * frozen


@pytest.mark.parametrize("dim,budget", [(48, 24), (96, 48)])
def test_egom2p_estimate_matches_activations_and_logits(tmp_path, dim, budget):
    from egom2p.train.recipes.egom2p import EgoM2PRecipe

    cfg = load_config("demo-cpu",
                      ["model.preset=egom2p-tiny", f"model.modalities={TINY_MODALITIES}", f"model.dim={dim}",
                       "model.encoder_depth=2", "model.decoder_depth=2", "model.num_heads=4",
                       "model.attn_backend=sdpa", "dtype=float32"])
    recipe = EgoM2PRecipe(cfg, (budget, budget))
    torch.manual_seed(0)
    model = recipe.build_model().train()
    batch_size, gen = 8, torch.Generator().manual_seed(0)
    batch = {}
    for name, spec in model.modalities.items():  # every token is an input or a target: the budgets are full
        is_input = torch.rand(batch_size, spec.num_tokens, generator=gen) < 0.5
        batch[name] = {"tensor": torch.randint(0, spec.vocab_size, (batch_size, *spec.shape), generator=gen),
                       "input_mask": ~is_input, "target_mask": is_input}
    measured = saved_activation_bytes(lambda: recipe.forward(model, batch, True))
    with torch.device("meta"):
        meta = recipe.build_model()
    estimate = estimate_training_memory(meta, recipe.activation_shape(), batch_size, cfg.dtype)
    assert 0.7 * measured < estimate.activations + estimate.logits < 1.5 * measured, (estimate, measured)


def test_checkpointing_and_fsdp_shrink_the_estimate():
    cfg = load_config(ROOT / "configs/train/egom2p-b-released.yaml", [])
    recipe = build_recipe(cfg)
    with torch.device("meta"):
        model = recipe.build_model()
    shape = recipe.activation_shape()
    plain = estimate_training_memory(model, shape, 4, "bfloat16")
    checkpointed = estimate_training_memory(model, shape, 4, "bfloat16", activation_checkpointing=True)
    sharded = estimate_training_memory(model, shape, 4, "bfloat16", world_size=8, fsdp=True)
    assert checkpointed.activations < plain.activations / 4
    assert sharded.states == plain.states // 8 and sharded.activations == plain.activations
    # The released recipe (batch 4 per GPU, 2,048 + 2,048 tokens) fits an 80 GB card with room to spare.
    assert plain.total < 40 * GIB


def test_a_run_too_large_for_the_machine_is_one_line():
    have = available_memory(torch.device("cpu"))
    assert have is not None and have[0] > 0
    too_big = MemoryEstimate(states=have[0] + GIB, activations=0, logits=0)
    problem = memory_problem(too_big, torch.device("cpu"))
    assert problem is not None and "\n" not in problem
    assert "available host memory" in problem and "check_memory: false" in problem
    assert memory_problem(MemoryEstimate(GIB // 1024, 0, 0), torch.device("cpu")) is None
    # Two CPU ranks of one host share its memory.
    half = MemoryEstimate(states=have[0] // 2 + GIB, activations=0, logits=0)
    assert memory_problem(half, torch.device("cpu")) is None
    assert "2 ranks x" in memory_problem(half, torch.device("cpu"), ranks_here=2)


def test_check_memory_false_skips_the_refusal():
    huge = ["loader.batch_size=100000000"]
    cfg = load_config("cam-demo-cpu", huge)
    estimate, problem = check_training_memory(build_recipe(cfg), cfg, CPU)
    assert problem is not None and estimate.total > 1024 * GIB
    cfg = load_config("cam-demo-cpu", [*huge, "check_memory=false"])
    assert check_training_memory(build_recipe(cfg), cfg, CPU)[1] is None


def test_lora_counts_only_the_adapters_as_trained():
    """Under LoRA the base keeps its weights only (no gradient, no AdamW state); the activations stay the same."""
    overrides = ["device=cpu", "check_memory=false"]
    full, _ = check_training_memory(*_recipe_and_cfg(overrides), CPU)
    lora, _ = check_training_memory(*_recipe_and_cfg([*overrides, "finetune.lora.rank=4", "checkpoint.init_from=x"]), CPU)
    cfg = load_config("demo-cpu", overrides)
    params = sum(p.numel() for p in build_recipe(cfg).build_model().parameters())
    assert full.states == params * 16  # fp32 weights + gradients + two AdamW moments
    assert params * 4 < lora.states < params * 4 + 0.1 * params * 12  # the base's weights + a few adapter states
    assert lora.activations == full.activations and lora.logits == full.logits


def _recipe_and_cfg(overrides):
    cfg = load_config("demo-cpu", overrides)
    return build_recipe(cfg), cfg

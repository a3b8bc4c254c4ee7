"""Fine-tuning in one process: init_from with a modality added and one dropped, the frozen warm-up (what moves in
each phase, its LR, exact resume inside it and after it), and LoRA (base bit-identical, adapter saved apart, merged
checkpoint equal to base + adapter, exact resume)."""

import dataclasses
import json
import math

import pytest
import torch
from egom2p.core.adapters import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME
from egom2p.model import EgoM2P, is_block_parameter, parameter_modality, write_pretrained
from egom2p.train.config import ConfigError, FinetuneConfig, LoraSection
from egom2p.train.finetune import match_pretrained
from egom2p.train.trainer import Trainer
from fakes import BUDGETS, FakeLoader, PoisonableEgoM2P, tiny_config
from test_trainer_loop import CPU, make_cfg

HAND = {"vocab_size": 32, "length": 8, "folder": "hand"}


def finetune_model_config():
    """tiny_config with tok_hand added and tok_gaze dropped."""
    base = tiny_config()
    mods = {name: spec.to_dict() for name, spec in base.modalities.items() if name != "tok_gaze"}
    return dataclasses.replace(base, modalities={**mods, "tok_hand": HAND})


@pytest.fixture
def pretrained(tmp_path):
    """A 'pretrained' tiny model's checkpoint directory, with non-trivial weights."""
    torch.manual_seed(1)
    model = EgoM2P(tiny_config())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = tmp_path / "pretrained"
    write_pretrained(path, model.state_dict(), model.config)
    return path, {k: v.clone() for k, v in model.state_dict().items()}


def make(tmp_path, name, finetune, max_steps=None, init_from=None):
    cfg = make_cfg(tmp_path / name, max_steps=max_steps, every_steps=5)
    cfg.finetune = finetune
    cfg.checkpoint.init_from = str(init_from) if init_from else None
    torch.manual_seed(0)
    logs = []
    trainer = Trainer(cfg, PoisonableEgoM2P(finetune_model_config()), FakeLoader(), CPU, BUDGETS, log=logs.append)
    return trainer, logs


def start(trainer, source):
    """What run_training does: resume when the run has a checkpoint, else start from ``source``."""
    if trainer.try_resume() is None:
        trainer.log(trainer.init_weights(source))


def test_match_pretrained_loads_shared_keeps_new_fresh_and_names_misfits(pretrained):
    _, theirs = pretrained
    ours = EgoM2P(finetune_model_config()).state_dict()
    match = match_pretrained({k: v.shape for k, v in ours.items()}, theirs)
    assert match.new_modalities == ["tok_hand"] and match.dropped_modalities == ["tok_gaze"]
    assert all(parameter_modality(k) != "tok_gaze" for k in match.weights)
    assert set(match.weights) == {k for k in ours if parameter_modality(k) != "tok_hand"}
    assert "new modalities (fresh embeddings): tok_hand; dropped modalities: tok_gaze" in match.summary("SRC")
    shapes = {k: v.shape for k, v in ours.items()}
    shapes["encoder_embeddings.tok_rgb.token_emb.weight"] = torch.Size([65, 12])
    with pytest.raises(ValueError, match=r"'encoder_embeddings.tok_rgb.token_emb.weight' has shape \[64, 12\] in the "
                                         r"source and \[65, 12\] in this model"):
        match_pretrained(shapes, theirs)
    missing = dict(theirs)
    del missing["encoder.0.attn.qkv.weight"]
    with pytest.raises(ValueError, match="'encoder.0.attn.qkv.weight' is missing from the source"):
        match_pretrained({k: v.shape for k, v in ours.items()}, missing)


def test_frozen_warmup_moves_only_embeddings_then_everything_and_resumes_exactly(tmp_path, pretrained):
    source, theirs = pretrained
    ft = FinetuneConfig(frozen_model_epochs=1, frozen_model_blr=0.5)  # 10 of 30 steps, constant lr 0.5 x 2/256
    full, logs = make(tmp_path, "full", ft, max_steps=10, init_from=source)
    start(full, source)
    assert any("new modalities (fresh embeddings): tok_hand; dropped modalities: tok_gaze" in m for m in logs)
    assert full.schedule.frozen_steps == 10 and full.schedule.lr_at(3) == pytest.approx(0.5 * 2 / 256)
    assert full.schedule.lr_at(10) == 0.0  # then the main schedule begins with its own warmup
    full.fit()
    after_warmup = {k: v.clone() for k, v in full.bare_model.state_dict().items()}
    for key, value in after_warmup.items():
        if is_block_parameter(key):
            assert torch.equal(value, theirs[key]), key  # frozen
    assert not torch.equal(after_warmup["encoder_embeddings.tok_rgb.token_emb.weight"],
                           theirs["encoder_embeddings.tok_rgb.token_emb.weight"])
    assert any("step 0: frozen warm-up (embeddings only)" in m for m in logs)

    # Resumed at step 10 it unfreezes and the blocks move.
    cont, logs = make(tmp_path, "full", ft, init_from=source)
    start(cont, source)
    assert cont.step == 10
    cont.fit()
    assert any("step 10: all parameters" in m for m in logs)
    rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 31))
    assert all(math.isfinite(r["loss"]) and r["skipped_steps"] == 0 for r in rows if "loss" in r)
    assert not torch.equal(cont.bare_model.state_dict()["encoder.0.attn.qkv.weight"], theirs["encoder.0.attn.qkv.weight"])

    # Interrupted inside the warm-up (step 5) and after it (step 15): the same weights at the end.
    for stop in (5, 15):
        part, _ = make(tmp_path, f"part{stop}", ft, max_steps=stop, init_from=source)
        start(part, source)
        part.fit()
        rest, _ = make(tmp_path, f"part{stop}", ft, init_from=source)
        start(rest, source)
        assert rest.step == stop
        rest.fit()
        for k, v in cont.bare_model.state_dict().items():
            assert torch.equal(v, rest.bare_model.state_dict()[k]), (stop, k)


def test_frozen_embedding_domain_keeps_those_embeddings_frozen_in_the_warmup(tmp_path, pretrained):
    source, theirs = pretrained
    ft = FinetuneConfig(frozen_model_epochs=1, frozen_embedding_domain=["tok_rgb", "tok_depth", "tok_cam"])
    trainer, _ = make(tmp_path, "run", ft, max_steps=10, init_from=source)
    start(trainer, source)
    fresh = trainer.bare_model.state_dict()["decoder_embeddings.tok_hand.token_emb.weight"].clone()
    trainer.fit()
    state = trainer.bare_model.state_dict()
    for key in theirs:
        if parameter_modality(key) in ("tok_rgb", "tok_depth", "tok_cam") or is_block_parameter(key):
            assert torch.equal(state[key], theirs[key]), key
    # tok_hand is only a model modality here (the fake batches hold tok_rgb), so nothing reaches it: unchanged too.
    assert torch.equal(state["decoder_embeddings.tok_hand.token_emb.weight"], fresh)
    assert not torch.equal(state["mask_token"], theirs["mask_token"])  # the original's freeze leaves it trainable


def lora(rank=4):
    return FinetuneConfig(lora=LoraSection(rank=rank, alpha=8.0, target_modules=["qkv", "proj", "fc1", "fc2", "fc3",
                                                                                  "q", "kv"]))


def test_lora_trains_adapters_alone_saves_them_apart_merges_and_resumes_exactly(tmp_path, pretrained):
    source, theirs = pretrained
    full, logs = make(tmp_path, "full", lora(), max_steps=12, init_from=source)
    start(full, source)
    full.fit()
    assert any("LoRA rank 4 on 13 layers" in m for m in logs)
    step_dir = full.checkpoints.dir / "step-12"
    assert (step_dir / ADAPTER_WEIGHTS_NAME).is_file() and (step_dir / ADAPTER_CONFIG_NAME).is_file()
    from safetensors.torch import load_file

    base = load_file(step_dir / "model.safetensors")
    for key, value in theirs.items():  # every pretrained weight is bit-identical (the new tok_hand aside)
        if parameter_modality(key) != "tok_gaze":
            assert torch.equal(base[key], value), key

    # The merged checkpoint (what from_pretrained and egom2p-convert read) equals base + adapter.
    merged = EgoM2P.from_pretrained(step_dir)
    batch = next(iter(FakeLoader()))
    full.bare_model.eval()
    with torch.no_grad():
        expected = full.bare_model(batch, num_encoder_tokens=16, num_decoder_tokens=16, return_logits=True)
        got = merged(batch, num_encoder_tokens=16, num_decoder_tokens=16, return_logits=True)
    assert torch.allclose(expected.logits["tok_rgb"], got.logits["tok_rgb"], atol=1e-5)
    assert not torch.allclose(EgoM2P.from_pretrained(source).state_dict()["encoder.0.attn.qkv.weight"],
                              merged.state_dict()["encoder.0.attn.qkv.weight"])

    # Interrupted at step 6 and resumed: the same adapter and weights at step 12.
    part, _ = make(tmp_path, "part", lora(), max_steps=6, init_from=source)
    start(part, source)
    part.fit()
    rest, _ = make(tmp_path, "part", lora(), max_steps=12, init_from=source)
    start(rest, source)
    assert rest.step == 6
    rest.fit()
    for k, v in full.bare_model.state_dict().items():
        assert torch.equal(v, rest.bare_model.state_dict()[k]), k


@pytest.mark.parametrize(("overrides", "message"), [
    (["finetune.lora.rank=4"], "config key 'finetune.lora.rank': LoRA adapts pretrained weights: set checkpoint.init_from"),
    (["finetune.frozen_model_epochs=1", "finetune.frozen_model_tokens=0.1"],
     "config key 'finetune.frozen_model_tokens': set the warm-up in epochs or in tokens, not both"),
    (["finetune.frozen_embedding_domain=[tok_hand]"], "config key 'finetune.frozen_embedding_domain': 'tok_hand' is not"),
    (["finetune.lora.rank=4", "checkpoint.init_from=x", "finetune.lora.target_modules=[qkv,out]"],
     "config key 'finetune.lora.target_modules': must be a non-empty list of"),
    (["finetune.frozen_model_epochs=24"], "config key 'finetune.frozen_model_epochs': the frozen warm-up (2400 steps) "
                                          "must be shorter than the run (2400 steps)"),
])
def test_finetune_mistakes_are_one_line_naming_the_key(overrides, message):
    from egom2p.train.config import load_config
    from egom2p.train.schedule import dry_run_report

    demo = "demo-cpu"
    with pytest.raises(ConfigError) as err:
        dry_run_report(load_config(demo, overrides), 1)
    assert message in str(err.value)


def test_a_lora_warmup_without_new_modalities_stops_naming_the_key(tmp_path, pretrained):
    source, _ = pretrained
    cfg = make_cfg(tmp_path / "run")
    cfg.finetune = dataclasses.replace(lora(), frozen_model_epochs=1)
    cfg.checkpoint.init_from = str(source)
    torch.manual_seed(0)
    trainer = Trainer(cfg, PoisonableEgoM2P(tiny_config()), FakeLoader(), CPU, BUDGETS, log=lambda _m: None)
    trainer.init_weights(source)
    with pytest.raises(ConfigError, match="config key 'finetune.frozen_model_epochs': the frozen warm-up would train "
                                          "nothing"):
        trainer.fit()

"""The frozen warm-up under torchrun with 2 gloo processes: DDP and FSDP2 both follow the change of what trains."""

import pytest
import torch
from egom2p.model import EgoM2P, is_block_parameter, preset_config, write_pretrained
from launch import command, final_weights, run, step_dirs

# Two-process runs take a while on a shared CPU: the whole suite runs them (first), the per-package isolation check not.
pytestmark = pytest.mark.long(seconds=30)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """Weights to fine-tune, of launch.py's TINY architecture, perturbed away from their initialisation."""
    torch.manual_seed(1)
    model = EgoM2P(preset_config("egom2p-tiny", modalities="tiny", dim=48,
                                 encoder_depth=1, decoder_depth=1, num_heads=4, attn_backend="sdpa"))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    out = tmp_path_factory.mktemp("pretrained") / "weights"
    write_pretrained(out, model.state_dict(), model.config)
    return out


@pytest.mark.xdist_group("torchrun")
@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_warmup_freezes_blocks_then_thaws_them_on_two_ranks(tmp_path, demo_data_config, pretrained, fsdp):
    base = EgoM2P.from_pretrained(pretrained).state_dict()
    out = tmp_path / "run"
    # 4 steps per epoch (32 samples / (4 x 2 ranks)): the warm-up is steps 0-3, then everything trains.
    proc = run(command(out, demo_data_config, f"checkpoint.init_from={pretrained}", "finetune.frozen_model_epochs=1",
                       "schedule.max_steps=6", f"fsdp={str(fsdp).lower()}", nproc=2))
    text = proc.stdout + proc.stderr
    assert "step 0: frozen warm-up (embeddings only)" in text and "step 4: all parameters" in text
    if not fsdp:
        assert "replicas identical on 2 ranks at step 6" in text
    assert step_dirs(out) == ["step-3", "step-6"]
    warm, late = final_weights(out, 3), final_weights(out, 6)
    blocks = [k for k in base if is_block_parameter(k)]
    assert all(torch.equal(warm[k], base[k]) for k in blocks)
    assert not torch.equal(warm["encoder_embeddings.tok_rgb.token_emb.weight"],
                           base["encoder_embeddings.tok_rgb.token_emb.weight"])
    assert sum(not torch.equal(late[k], base[k]) for k in blocks) > len(blocks) // 2


@pytest.mark.xdist_group("torchrun")
def test_lora_on_two_ranks_keeps_the_base_and_replicas_equal(tmp_path, demo_data_config, pretrained):
    from egom2p.core.adapters import ADAPTER_WEIGHTS_NAME

    base = EgoM2P.from_pretrained(pretrained).state_dict()
    out = tmp_path / "run"
    proc = run(command(out, demo_data_config, f"checkpoint.init_from={pretrained}", "finetune.lora.rank=4",
                       "schedule.max_steps=6", nproc=2))
    text = proc.stdout + proc.stderr
    assert "step 0: LoRA rank 4 on 13 layers" in text and "replicas identical on 2 ranks at step 6" in text
    stored = final_weights(out, 6)
    assert all(torch.equal(stored[k], v) for k, v in base.items())  # the base weights, bit-identical
    assert (out / "checkpoints" / "step-6" / ADAPTER_WEIGHTS_NAME).is_file()
    merged = EgoM2P.from_pretrained(out).state_dict()
    assert not torch.equal(merged["encoder.0.attn.qkv.weight"], base["encoder.0.attn.qkv.weight"])

"""Activation checkpointing changes neither the parameter names nor the gradients."""

from pathlib import Path

import torch
from egom2p.train.config import TrainConfig
from egom2p.train.distributed import DistInfo
from egom2p.train.parallel import parallelize
from egom2p.train.trainer import build_model

ROOT = Path(__file__).resolve().parents[3]


def tiny_model():
    torch.manual_seed(0)
    cfg = TrainConfig(model="egom2p-tiny", modalities=str(ROOT / "configs/modalities/tiny.yaml"),
                      model_overrides=dict(dim=48, encoder_depth=1, decoder_depth=1, num_heads=4),
                      attn_backend="sdpa", output_dir="x", data_config="y", epoch_size=10)
    return build_model(cfg)


def random_batch(model, batch_size=3):
    g = torch.Generator().manual_seed(1)
    batch = {}
    for name, spec in model.modalities.items():
        n = spec.num_tokens
        inp = torch.rand(batch_size, n, generator=g) > 0.4
        batch[name] = {"tensor": torch.randint(0, spec.vocab_size, (batch_size, n), generator=g),
                       "input_mask": inp, "target_mask": ~inp}
    return batch


def test_activation_checkpointing_keeps_names_and_gradients():
    cpu = DistInfo(0, 1, 0, torch.device("cpu"))
    plain = tiny_model()
    checkpointed = parallelize(tiny_model(), cpu, fsdp=False, compile=False, activation_checkpointing=True)
    assert list(plain.state_dict()) == list(checkpointed.state_dict())
    assert any("CheckpointWrapper" in type(m).__name__ for m in checkpointed.modules())
    batch = random_batch(plain)
    for model in (plain, checkpointed):
        model(batch, num_encoder_tokens=32, num_decoder_tokens=32).loss.backward()
    # named_parameters (unlike state_dict) shows the wrapper in the name
    grads = {n.replace("_checkpoint_wrapped_module.", ""): p for n, p in checkpointed.named_parameters()}
    for name, p in plain.named_parameters():
        assert torch.allclose(p.grad, grads[name].grad, atol=1e-6), name

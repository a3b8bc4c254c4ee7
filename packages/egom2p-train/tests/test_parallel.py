"""Activation checkpointing changes neither the parameter names nor the gradients."""

import torch
from egom2p.model import EgoM2P, preset_config
from egom2p.train.distributed import DistInfo
from egom2p.train.parallel import parallelize
from fakes import TINY_MODALITIES


def tiny_model():
    torch.manual_seed(0)
    return EgoM2P(preset_config("egom2p-tiny", modalities=str(TINY_MODALITIES), dim=48, encoder_depth=1,
                                decoder_depth=1, num_heads=4, attn_backend="sdpa"))


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

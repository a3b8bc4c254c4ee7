"""FLOP and token accounting for mfu_computed / mfu_valid / valid_tok_s: packed and unpacked agree on valid work."""

import pytest
import torch
from egom2p.data.packing import pack_batch
from egom2p.model import EgoM2P
from egom2p.model.cost import flops_per_sample
from egom2p.train.throughput import batch_flops, count_tokens
from fakes import tiny_config


def masked_batch(seed=0, batch_size=5):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, n in (("tok_rgb", 32), ("tok_cam", 6)):
        out[name] = {"tensor": torch.randint(0, 8, (batch_size, n), generator=g),
                     "input_mask": torch.rand(batch_size, n, generator=g) < 0.6,
                     "target_mask": torch.rand(batch_size, n, generator=g) < 0.7}
    out["tok_cam"]["input_mask"][1] = True  # a sample with no camera input
    out["tok_rgb"]["target_mask"][2] = True  # ... and one with no rgb target
    return out


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return EgoM2P(tiny_config())


@pytest.mark.parametrize("budgets", [(None, None), (10, 8)])
def test_packed_and_unpacked_count_the_same_valid_work(model, budgets):
    batch = masked_batch()
    unpacked = count_tokens(batch, budgets)
    packed = count_tokens(pack_batch(batch, *budgets, num_rows=2, multiple=16))
    assert packed.encoder == unpacked.encoder and packed.decoder == unpacked.decoder
    assert batch_flops(model, packed)[1] == batch_flops(model, unpacked)[1]
    if budgets[0] is not None:
        assert unpacked.encoder_slots == 5 * budgets[0] and max(unpacked.encoder) <= budgets[0]
        assert all(sum(d.values()) <= budgets[1] for d in unpacked.decoder)


def test_computed_counts_padding_slots_and_equals_valid_without_padding(model):
    batch = masked_batch()
    tokens = count_tokens(pack_batch(batch, num_rows=1, multiple=64))
    computed, valid = batch_flops(model, tokens)
    assert tokens.encoder_slots % 64 == 0 and computed > valid > 0
    full = {"tok_rgb": {"tensor": torch.zeros(2, 32, dtype=torch.long), "input_mask": torch.zeros(2, 32, dtype=torch.bool),
                        "target_mask": torch.zeros(2, 32, dtype=torch.bool)}}
    tokens = count_tokens(full, (32, 32))
    assert tokens.valid == 128 and batch_flops(model, tokens)[0] == batch_flops(model, tokens)[1]
    assert batch_flops(model, tokens)[1] == 2 * flops_per_sample(model.config, 32, 32, {"tok_rgb": 32})

"""loader.pack_rows: a fixed row count is honoured; null packs into the cheapest row count for the attention
backend (one row with the Triton kernel, the least egom2p.model.cost.packed_work among 1, 2, 4, ... rows
otherwise), and the loss of what it picks is the loss of the unpacked batch."""

import dataclasses

import pytest
import torch
from egom2p.core.packing import PackedBatch
from egom2p.data.packing import pack_batch
from egom2p.model import EgoM2P
from egom2p.model.cost import packed_work
from egom2p.train.packing import pack_micro_batch
from fakes import tiny_config


def masked_batch(batch_size: int, seed: int = 0) -> dict:
    """Samples of very different sizes (so rows of different counts differ in width)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    fills = torch.linspace(0.1, 0.9, batch_size)[:, None]
    for name, n in (("tok_rgb", 32), ("tok_cam", 8)):  # the tiny modalities' sizes
        u = torch.rand(batch_size, n, generator=g)
        out[name] = {"tensor": torch.randint(0, 8, (batch_size, n), generator=g),
                     "input_mask": ~(u < fills), "target_mask": ~((u >= fills) & (u < fills + 0.1))}
    return out


def model_with(backend: str) -> EgoM2P:
    torch.manual_seed(0)
    return EgoM2P(dataclasses.replace(tiny_config(), attn_backend=backend))


def work(model: EgoM2P, packed: PackedBatch) -> int:
    return packed_work(model, packed.row_samples(), packed.widths)


def test_a_fixed_row_count_is_honoured():
    packed = pack_micro_batch(model_with("sdpa"), masked_batch(8), (None, None), num_rows=3, multiple=4)
    assert packed.num_rows == 3


def test_triton_packs_into_one_row():
    packed = pack_micro_batch(model_with("triton"), masked_batch(8), (None, None), num_rows=None, multiple=4)
    assert packed.num_rows == 1


@pytest.mark.parametrize("batch_size", [1, 5, 16])
def test_dense_backend_picks_the_least_work(batch_size):
    model, batch = model_with("sdpa"), masked_batch(batch_size)
    chosen = pack_micro_batch(model, batch, (None, None), num_rows=None, multiple=4)
    candidates = [pack_batch(batch, num_rows=r, multiple=4) for r in (1, 2, 4, 8, 16) if r <= batch_size]
    assert work(model, chosen) == min(work(model, p) for p in candidates)
    if batch_size == 16:  # the cheapest is not one long row: dense attention pays every pair of a row
        assert chosen.num_rows > 1


def test_work_counts_every_pair_of_a_short_row_and_own_pairs_with_triton_or_long_cpu_rows(monkeypatch):
    dense, triton = model_with("sdpa"), model_with("triton")
    one_row, two_rows = [[(50, 25), (50, 25)]], [[(50, 25)], [(50, 25)]]
    # Triton: linear in the slots, whatever the rows.
    assert packed_work(triton, one_row, (100, 50)) == packed_work(triton, two_rows, (50, 25))
    # sdpa on short rows (the calls of per-run attention would cost more): every pair of a row.
    assert packed_work(dense, one_row, (100, 50)) > packed_work(dense, two_rows, (50, 25))
    # ... and when per-run attention pays (free calls here), each sample's own pairs, as Triton.
    monkeypatch.setattr("egom2p.model.attention._MACS_PER_CALL", 0)
    assert packed_work(dense, one_row, (100, 50)) == packed_work(dense, two_rows, (50, 25))


def test_the_chosen_packing_gives_the_unpacked_loss():
    model, batch = model_with("sdpa"), masked_batch(16)
    packed = pack_micro_batch(model, batch, (20, 8), num_rows=None, multiple=4)
    with torch.no_grad():
        expected = model(batch, num_encoder_tokens=20, num_decoder_tokens=8).loss
        got = model(packed, check_vocab=False).loss
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

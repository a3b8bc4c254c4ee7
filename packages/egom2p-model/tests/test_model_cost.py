"""egom2p.model.cost: FLOPs against hand counts on the tiny config, the work of packed rows per backend, and
the packing each backend gets (one row with Triton, the least work among 1, 2, 4, ... rows otherwise)."""

from __future__ import annotations

import pytest
import torch
from egom2p.core.packing import PackedBatch, PackedSide, balance_rows
from egom2p.model import EgoM2P
from egom2p.model.cost import (
    FLASH_BACKWARD_FACTOR,
    TRAINING_FACTOR,
    attention_flops,
    choose_packing,
    flops_per_sample,
    inference_rows,
    packed_work,
    packing_row_counts,
    padding_flops,
)
from model_helpers import tiny_config

# tiny_config: D = 24, 2 + 2 blocks, SwiGLU with H = int(2 * 24 * 4 / 3) = 64, vocabularies cam 16, depth 24,
# gaze 16, rgb 32.


def test_flops_of_one_sample_match_a_hand_count():
    # N = 10 inputs; M = 8 targets: 5 cam + 3 rgb.
    # encoder layer: qkv + proj 2*10*4*24^2 = 46080, MLP 2*10*3*24*64 = 92160, attention 4*10*10*24 = 9600
    encoder = 2 * (46080 + 92160 + 9600)
    context = 2 * 10 * 24 * 24  # 11520
    # decoder layer: self qkv + proj 2*8*4*576 = 36864, self attention over own modality 4*(25 + 9)*24 = 3264,
    # cross q 9216, cross kv over the context 2*10*2*576 = 23040, cross out 9216, cross attention 4*8*10*24 = 7680,
    # MLP 2*8*3*24*64 = 73728
    decoder = 2 * (36864 + 3264 + 9216 + 23040 + 9216 + 7680 + 73728)
    heads = 2 * 5 * 24 * 16 + 2 * 3 * 24 * 32
    forward = encoder + context + decoder + heads
    assert forward == 641664
    config = tiny_config()
    per_modality = {"tok_cam": 5, "tok_rgb": 3}
    assert flops_per_sample(config, 10, 8, per_modality, backward=False) == forward
    assert flops_per_sample(config, 10, 8, per_modality) == 3 * forward == TRAINING_FACTOR * forward
    # decoder_sep_mask off: the 8 targets see each other, 64 pairs instead of 34
    unmasked = flops_per_sample(tiny_config(decoder_sep_mask=False), 10, 8, per_modality, backward=False)
    assert unmasked - forward == 2 * 4 * 24 * (64 - 34)
    # without a split, every target is counted at the largest vocabulary (rgb)
    assert flops_per_sample(config, 10, 8, backward=False) == flops_per_sample(config, 10, 8, {"tok_rgb": 8}, backward=False)
    with pytest.raises(ValueError, match="sums to 3, expected 8"):
        flops_per_sample(config, 10, 8, {"tok_cam": 3})
    with pytest.raises(ValueError, match="unknown modalities"):
        flops_per_sample(config, 10, 8, {"tok_x": 8})


def test_padding_slots_cost_their_linear_work():
    # encoder slot: 2 layers x (13824 linear + 96 for its own pair) + the context projection 1152 + 2 decoder layers'
    # cross kv 2304 each; decoder slot: 2 layers x (4608 + 96 + 1152 + 1152 + 9216), no head.
    assert padding_flops(tiny_config()) == (3.0 * (2 * (13824 + 96) + 1152 + 2 * 2304), 3.0 * 2 * (4608 + 96 + 1152 + 1152 + 9216))


def test_attention_flops_and_the_flash_backward():
    assert attention_flops(pairs=7, dim=64) == 7 * 64 * 2 * 2  # score + weighted sum, a multiply-add per dim each
    assert 1 + FLASH_BACKWARD_FACTOR == 3.5 and TRAINING_FACTOR == 3


def _model(backend: str) -> EgoM2P:
    torch.manual_seed(0)
    return EgoM2P(tiny_config(attn_backend=backend))


def test_packed_work_counts_own_pairs_with_triton_and_every_pair_of_short_sdpa_rows():
    row = [[(2, 1), (2, 1)]]  # one row, encoder width 4, decoder width 2
    linear = 6 * 24 * (4 + 2)
    assert packed_work(_model("triton"), row, (4, 2)) == linear + (4 + 4) + (1 + 1) + (2 + 2)
    assert packed_work(_model("sdpa"), row, (4, 2)) == linear + 4 * 4 + 2 * 2 + 2 * 4
    assert packed_work(_model("reference"), row, (4, 2)) == linear + 4 * 4 + 2 * 2 + 2 * 4


def _packed(sizes: list[int], num_rows: int) -> PackedBatch:
    """A packed batch of samples with ``sizes`` encoder tokens and one target each, balanced over the rows."""
    rows = balance_rows(sizes, num_rows)
    enc_width = max(sum(sizes[s] for s in row) for row in rows)
    dec_width = max(len(row) for row in rows)

    def side(width: int, count) -> PackedSide:
        samples = torch.full((num_rows, width), -1, dtype=torch.int32)
        for r, row in enumerate(rows):
            owners = [s for s in row for _ in range(count(s))]
            samples[r, : len(owners)] = torch.tensor(owners, dtype=torch.int32)
        zeros = torch.zeros(num_rows, width, dtype=torch.int64)
        modality = torch.where(samples >= 0, 0, -1).to(torch.int32)
        return PackedSide(zeros, modality, zeros, samples, (samples >= 0).sum(1).to(torch.int32))

    return PackedBatch(side(enc_width, lambda s: sizes[s]), side(dec_width, lambda s: 1),
                       {"tok_cam": torch.arange(dec_width * num_rows)})


@pytest.mark.parametrize("backend, batch_size, counts", [
    ("triton", 16, [1]), ("sdpa", 16, [1, 2, 4, 8, 16]), ("sdpa", 5, [1, 2, 4]), ("reference", 0, [1]),
])
def test_the_row_counts_tried_per_backend(backend, batch_size, counts):
    assert packing_row_counts(_model(backend), batch_size) == counts


@pytest.mark.parametrize("backend", ["triton", "sdpa"])
def test_choose_packing_takes_the_least_work(backend):
    model, sizes, tried = _model(backend), [40, 40, 40, 40, 3], []

    def pack(rows: int) -> PackedBatch:
        tried.append(rows)
        return _packed(sizes, rows)

    chosen = choose_packing(model, pack, len(sizes))
    if backend == "triton":
        assert tried == [1] and chosen.num_rows == 1
        return
    assert tried == [1, 2, 4]
    works = {}
    for rows in tried:
        candidate = _packed(sizes, rows)
        works[rows] = packed_work(model, candidate.row_samples(), candidate.widths)
    assert chosen.num_rows == min(works, key=works.get)
    assert chosen.num_rows == 4  # sdpa computes every pair of a short row: four rows of ~40 beat one of 163


@pytest.mark.parametrize("backend, lengths, rows", [
    ("sdpa", [5, 3, 2], [[0], [1, 2]]),  # rows as wide as the longest: 2 x 5 slots, 50 pairs (one row: 100)
    ("sdpa", [4, 1], [[0, 1]]),  # one row of 5 slots beats two rows of 4
    ("triton", [4, 1], [[0, 1]]),
])
def test_inference_rows_pick_the_cheapest_first_fit(backend, lengths, rows):
    assert inference_rows(_model(backend), lengths) == rows

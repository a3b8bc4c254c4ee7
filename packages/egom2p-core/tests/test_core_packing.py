"""The packed-batch contract: the token-selection rule, the row assignments, PackedBatch's structure check,
device move, dict round trip, value check, and its counts against a hand-built batch."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from egom2p.core.modalities import load_modality_specs
from egom2p.core.packing import PackedBatch, PackedSide, balance_rows, first_fit_rows, kept_tokens

SPECS = load_modality_specs({"tok_a": {"vocab_size": 10, "length": 4}, "tok_b": {"vocab_size": 5, "length": 3}})


def test_kept_tokens_are_the_first_budget_selected_in_sorted_concatenation_order():
    excluded = {  # given out of order: the rule concatenates tok_a, then tok_b
        "tok_b": torch.tensor([[False, True, False], [True, True, True]]),
        "tok_a": torch.tensor([[True, False, False, True], [False, False, True, False]]).view(2, 2, 2),
    }
    everything = torch.tensor([[0, 1, 1, 0, 1, 0, 1], [1, 1, 0, 1, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(kept_tokens(excluded, None), everything)
    assert torch.equal(kept_tokens(excluded, 3), torch.tensor([[0, 1, 1, 0, 1, 0, 0], [1, 1, 0, 1, 0, 0, 0]],
                                                              dtype=torch.bool))
    assert not kept_tokens(excluded, 0).any()
    with pytest.raises(ValueError, match="num_input_tokens must be >= 0, got -1"):
        kept_tokens(excluded, -1, "num_input_tokens")


def test_row_assignments():
    # largest first onto the least-filled row: 9 -> r0, 5 -> r1, 4 -> r1 (5 < 9), 1 -> r0 (9 == 9, first)
    assert balance_rows([4, 9, 1, 5], 2) == [[1, 2], [0, 3]]
    assert balance_rows([3], 3) == [[0], [], []]
    # first fit into rows of 10: 9 -> r0, 5 -> r1, 4 -> r1, 1 -> r0
    assert first_fit_rows([4, 9, 1, 5], 10) == [[1, 2], [0, 3]]
    assert first_fit_rows([12, 2], 10) == [[0], [1]]  # too long for the capacity: a row of its own


def _side(ids, modality, positions, samples, lengths) -> PackedSide:
    return PackedSide(torch.tensor(ids), torch.tensor(modality, dtype=torch.int32), torch.tensor(positions),
                      torch.tensor(samples, dtype=torch.int32), torch.tensor(lengths, dtype=torch.int32))


def hand_packed() -> PackedBatch:
    """Three samples in two rows. Row 0: sample 0 (inputs a0, b1; target b0) then sample 2 (input a3; targets
    a1, b2). Row 1: sample 1 (inputs a0, a1, b2; no target)."""
    encoder = _side(ids=[[1, 2, 3, 0], [4, 5, 1, 0]], modality=[[0, 1, 0, -1], [0, 0, 1, -1]],
                    positions=[[0, 1, 3, 0], [0, 1, 2, 0]], samples=[[0, 0, 2, -1], [1, 1, 1, -1]], lengths=[3, 3])
    decoder = _side(ids=[[4, 9, 2], [0, 0, 0]], modality=[[1, 0, 1], [-1, -1, -1]],
                    positions=[[0, 1, 2], [0, 0, 0]], samples=[[0, 2, 2], [-1, -1, -1]], lengths=[3, 0])
    return PackedBatch(encoder, decoder, {"tok_b": torch.tensor([0, 2]), "tok_a": torch.tensor([1, -1])})


def test_counts_of_a_hand_built_batch():
    packed = hand_packed()
    packed.check_values(SPECS)
    assert packed.modality_names == ["tok_a", "tok_b"]
    assert (packed.num_rows, packed.widths, packed.slots) == (2, (4, 3), (8, 6))
    assert packed.row_samples() == [[(2, 1), (1, 2)], [(3, 0)]]
    assert packed.sample_tokens() == ((2, 3, 1), ({"tok_b": 1}, {}, {"tok_a": 1, "tok_b": 1}))
    assert packed.efficiency() == {"encoder": 6 / 8, "decoder": 3 / 6, "total": 9 / 14}
    assert packed.modality_indices(["tok_a", "tok_b", "tok_c"]) == [0, 1]
    assert packed.modality_indices(["tok_0", "tok_b", "tok_a"]) == [2, 1]


def test_device_move_and_dict_round_trip():
    packed = hand_packed()
    moved = packed.to("meta")
    tensors = [*dataclasses.astuple(moved.encoder), *dataclasses.astuple(moved.decoder), *moved.targets.values()]
    assert all(t.device.type == "meta" for t in tensors)
    assert [t.shape for t in dataclasses.astuple(moved.encoder)] == [t.shape for t in dataclasses.astuple(packed.encoder)]
    data = packed.as_dict()
    assert set(data) == {"encoder", "decoder", "targets"} and set(data["decoder"]) == {
        "ids", "modality", "positions", "samples", "lengths"}
    again = PackedBatch.from_dict(data)
    for name in ("encoder", "decoder"):
        for got, want in zip(dataclasses.astuple(getattr(again, name)), dataclasses.astuple(getattr(packed, name))):
            assert torch.equal(got, want)
    assert again.targets.keys() == packed.targets.keys()


def _with_side(name: str, **changes) -> dict:
    data = hand_packed().as_dict()
    data[name] = {**data[name], **changes}
    return data


@pytest.mark.parametrize("data, message", [
    (_with_side("encoder", ids=torch.zeros(2, 4)), r"encoder.ids must be an integer tensor, got torch.float32"),
    (_with_side("decoder", lengths=torch.ones(2, dtype=torch.bool)), r"decoder.lengths must be an integer tensor"),
    (_with_side("encoder", samples=[[0]]), r"encoder.samples must be an integer tensor, got list"),
    (_with_side("encoder", ids=torch.zeros(8, dtype=torch.int64)), r"encoder.ids must be \[rows, width\], got \(8,\)"),
    (_with_side("encoder", modality=torch.zeros(2, 3, dtype=torch.int32)), r"encoder.modality has shape \(2, 3\), expected \(2, 4\)"),
    (_with_side("decoder", lengths=torch.zeros(3, dtype=torch.int32)), r"decoder.lengths has shape \(3,\), expected \(2,\)"),
    ({**hand_packed().as_dict(), "targets": {}}, "targets must map every modality"),
    ({**hand_packed().as_dict(), "targets": {"tok_a": torch.zeros(2, 2, dtype=torch.int64)}},
     r"targets\['tok_a'\] must be a 1-D integer tensor, got torch.int64 \(2, 2\)"),
    ({k: v for k, v in hand_packed().as_dict().items() if k != "targets"}, "must hold exactly"),
    ({**hand_packed().as_dict(), "encoder": {"ids": torch.zeros(2, 4, dtype=torch.int64)}}, "encoder must hold exactly"),
])
def test_structure_errors_name_the_field(data, message):
    with pytest.raises(ValueError, match=message):
        PackedBatch.from_dict(data)


def test_rows_must_agree_and_sides_must_be_packed_sides():
    packed = hand_packed()
    one_row = PackedSide(*(t[:1] for t in dataclasses.astuple(packed.decoder)))
    with pytest.raises(ValueError, match="2 encoder rows and 1 decoder rows"):
        PackedBatch(packed.encoder, one_row, packed.targets)
    with pytest.raises(ValueError, match="encoder must be a PackedSide, got dict"):
        PackedBatch(packed.as_dict()["encoder"], packed.decoder, packed.targets)


def _broken(side: str, key: str, row: int, col: int, value: int) -> PackedBatch:
    packed = hand_packed()
    getattr(getattr(packed, side), key)[row, col] = value
    return packed


@pytest.mark.parametrize("packed, message", [
    (_broken("encoder", "ids", 0, 1, 7), r"encoder.ids has tok_b values \[7\] outside \[0, 5\)"),
    (_broken("decoder", "positions", 0, 1, 4), r"decoder.positions has tok_a values \[4\] outside \[0, 4\)"),
    (_broken("encoder", "modality", 1, 0, 2), r"encoder.modality must be in \[-1, 2\)"),
    (_broken("encoder", "modality", 1, 1, -1), "the tokens of encoder row r must be its first lengths"),
    (dataclasses.replace(hand_packed(), targets={"tok_a": torch.tensor([0, -1]), "tok_b": torch.tensor([0, 2])}),
     r"targets\['tok_a'\] must list decoder slots of tok_a"),
    (dataclasses.replace(hand_packed(), targets={"tok_a": torch.tensor([1, 6]), "tok_b": torch.tensor([0, 2])}),
     r"targets\['tok_a'\] must list decoder slots of tok_a"),
])
def test_value_check_names_the_problem(packed, message):
    with pytest.raises(ValueError, match=message):
        packed.check_values(SPECS)


def test_value_check_and_indices_refuse_unknown_modalities():
    only_a = {"tok_a": SPECS["tok_a"]}
    with pytest.raises(ValueError, match=r"targets name modalities \['tok_b'\] that are not among \['tok_a'\]"):
        hand_packed().check_values(only_a)
    with pytest.raises(ValueError, match="not among"):
        hand_packed().modality_indices(["tok_a"])

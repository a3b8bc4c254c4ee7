"""pack_batch: the packed layout against a direct restatement of the selection, and its efficiency."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from egom2p.core.packing import PackedBatch
from egom2p.data.masking import UnifiedMasking
from egom2p.data.packing import pack_batch

ROOT = Path(__file__).resolve().parents[3]
COUNTS = {"tok_cam": 6, "tok_depth": 12, "tok_gaze": 6, "tok_rgb": 12}


def random_batch(batch_size: int, seed: int, p_input: float = 0.4, p_target: float = 0.4) -> dict:
    gen = torch.Generator().manual_seed(seed)
    batch = {}
    for name, n in COUNTS.items():
        u = torch.rand(batch_size, n, generator=gen)
        batch[name] = {"tensor": torch.randint(0, 50, (batch_size, n), generator=gen),
                       "input_mask": ~(u < p_input), "target_mask": ~((u >= p_input) & (u < p_input + p_target))}
    return batch


def selected(batch: dict, sample: int, mask_key: str, budget: int | None) -> list[tuple[int, int, int]]:
    """(id, modality index, position) of the sample's first ``budget`` selected tokens, concatenation order."""
    out = []
    for i, name in enumerate(sorted(batch)):
        for pos in (~batch[name][mask_key][sample]).nonzero().flatten().tolist():
            out.append((int(batch[name]["tensor"][sample].reshape(-1)[pos]), i, pos))
    return out if budget is None else out[:budget]


def unpacked(side, sample: int) -> tuple[int, list[tuple[int, int, int]]]:
    """The row of ``sample`` and its tokens in slot order."""
    rows, cols = (side.samples == sample).nonzero(as_tuple=True)
    assert len(set(rows.tolist())) <= 1, "a sample is split over rows"
    tokens = [(int(side.ids[r, c]), int(side.modality[r, c]), int(side.positions[r, c])) for r, c in zip(rows, cols)]
    return (int(rows[0]) if len(rows) else -1), tokens


@pytest.mark.parametrize("num_rows", [1, 2, 7])
@pytest.mark.parametrize("budgets", [(None, None), (9, 5), (0, 3)])
def test_packed_layout_holds_exactly_the_selected_tokens(num_rows, budgets):
    for seed in range(4):
        batch = random_batch(5, seed)
        for d in batch.values():
            d["input_mask"][1] = True  # a sample without inputs
            d["target_mask"][3] = True  # a sample without targets
        batch["tok_gaze"]["target_mask"][:] = True  # a modality without targets
        packed = pack_batch(batch, *budgets, num_rows=num_rows, multiple=8)
        assert isinstance(packed, PackedBatch) and packed.modality_names == sorted(COUNTS)
        for s, mask_key, budget in ((packed.encoder, "input_mask", budgets[0]), (packed.decoder, "target_mask", budgets[1])):
            assert s.ids.shape[0] == num_rows and s.ids.shape[1] % 8 == 0
            assert (s.ids.dtype, s.modality.dtype, s.positions.dtype, s.samples.dtype, s.lengths.dtype) == (
                torch.int64, torch.int32, torch.int64, torch.int32, torch.int32)
            valid = torch.arange(s.ids.shape[1])[None, :] < s.lengths[:, None].long()
            assert torch.equal(s.samples >= 0, valid) and torch.equal(s.modality >= 0, valid)
            for r in range(num_rows):  # samples keep batch order inside a row: sorted segment ids
                row = s.samples[r, : s.lengths[r]]
                assert torch.equal(row, row.sort().values)
            for sample in range(5):
                assert unpacked(s, sample)[1] == selected(batch, sample, mask_key, budget)
        dec = packed.decoder
        for i, name in enumerate(sorted(COUNTS)):
            index = packed.targets[name]
            assert index.dtype == torch.int64 and index.numel() % 8 == 0
            used = index[index >= 0]
            assert torch.equal(index[: len(used)], used)  # padding only at the end
            modality, samples, positions = (t.reshape(-1)[used] for t in (dec.modality, dec.samples, dec.positions))
            assert (modality == i).all()
            key = samples.long() * 1000 + positions
            assert torch.equal(key, key.sort().values)  # by sample, then position
            want = sum(sum(1 for t in selected(batch, b, "target_mask", budgets[1]) if t[1] == i) for b in range(5))
            assert len(used) == want
        assert packed.targets["tok_gaze"].numel() == 0


def test_rows_hold_the_same_samples_on_both_sides_and_are_balanced():
    batch = random_batch(8, seed=5)
    packed = pack_batch(batch, num_rows=3, multiple=1)
    for sample in range(8):
        enc_row, enc = unpacked(packed.encoder, sample)
        dec_row, dec = unpacked(packed.decoder, sample)
        if enc and dec:
            assert enc_row == dec_row
    sizes = packed.encoder.lengths + packed.decoder.lengths
    biggest = max(len(selected(batch, b, "input_mask", None)) + len(selected(batch, b, "target_mask", None)) for b in range(8))
    assert int(sizes.max() - sizes.min()) <= biggest  # largest-first onto the least-filled row


def test_efficiency_counts_valid_over_computed_slots():
    batch = random_batch(3, seed=6)
    packed = pack_batch(batch, multiple=16)
    eff = packed.efficiency()
    n_in = sum(len(selected(batch, b, "input_mask", None)) for b in range(3))
    n_tg = sum(len(selected(batch, b, "target_mask", None)) for b in range(3))
    assert eff["encoder"] == n_in / packed.encoder.ids.numel()
    assert eff["decoder"] == n_tg / packed.decoder.ids.numel()
    assert eff["total"] == (n_in + n_tg) / (packed.encoder.ids.numel() + packed.decoder.ids.numel())


def test_released_masking_packs_above_ninety_percent():
    """At the released masking (budgets 2048 / 2048, 4 samples per GPU, rows rounded to 256) padding
    takes about half of an unpacked batch; packed, more than 90% of the computed slots are real tokens."""
    counts = {"tok_cam": 30, "tok_depth": 5120, "tok_gaze": 30, "tok_rgb": 5120}
    masking = UnifiedMasking.from_config(counts, list(counts), list(counts), 2048, 2048,
                                         alphas_config="mix_mod4_all2all_uni")
    gen = torch.Generator().manual_seed(0)
    tensors = {n: torch.zeros(4, c, dtype=torch.int64) for n, c in counts.items()}
    valid = computed = 0
    for _ in range(25):
        packed = pack_batch(masking.mask_batch(tensors, gen), 2048, 2048, multiple=256)
        valid += int(packed.encoder.lengths.sum() + packed.decoder.lengths.sum())
        computed += packed.encoder.ids.numel() + packed.decoder.ids.numel()
    assert valid / computed > 0.9
    assert valid / (25 * 4 * 4096) < 0.6  # what the unpacked batches would have used of their slots


@pytest.mark.parametrize(
    ("mutate", "kwargs", "message"),
    [
        (lambda b: b["tok_cam"].pop("target_mask"), {}, r"batch\['tok_cam'\] is missing 'target_mask'"),
        (lambda b: b["tok_rgb"].update(input_mask=b["tok_rgb"]["input_mask"].int()), {}, r"tok_rgb.*input_mask.*bool"),
        (lambda b: b["tok_gaze"].update(tensor=b["tok_gaze"]["tensor"][:2]), {}, r"tok_gaze.*expected \[B=3"),
        (lambda b: None, {"num_rows": 0}, "num_rows and multiple must be >= 1"),
        (lambda b: None, {"num_input_tokens": -1}, "num_input_tokens must be >= 0"),
    ],
)
def test_bad_input_raises_one_clear_line(mutate, kwargs, message):
    batch = random_batch(3, seed=7)
    mutate(batch)
    with pytest.raises(ValueError, match=message):
        pack_batch(batch, **kwargs)

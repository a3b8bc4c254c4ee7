"""The batch contract's one validator: what the model forward and the sampler both accept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from egom2p.core.batch import validate_batch
from egom2p.core.modalities import load_modality_specs

SPECS = load_modality_specs({"tok_rgb": {"vocab_size": 10, "grid": [1, 2, 2]}, "tok_cam": {"vocab_size": 5, "length": 3}})


def _entry(ids, input_masked=False, target_masked=True):
    ids = torch.as_tensor(ids)
    n = ids[0].numel()
    return {"tensor": ids, "input_mask": torch.full((ids.shape[0], n), input_masked),
            "target_mask": torch.full((ids.shape[0], n), target_masked)}


def test_valid_batch_is_flattened_in_sorted_order_without_copies():
    rgb = torch.arange(8).reshape(2, 1, 2, 2)
    out = validate_batch({"tok_rgb": _entry(rgb), "tok_cam": _entry(torch.ones(2, 3, dtype=torch.int32))}, SPECS)
    assert list(out) == ["tok_cam", "tok_rgb"]
    assert out["tok_rgb"].ids.shape == (2, 4) and out["tok_rgb"].ids.data_ptr() == rgb.data_ptr()
    assert out["tok_cam"].ids.dtype == torch.int64 and out["tok_cam"].target_mask.all()


@pytest.mark.parametrize("batch, message", [
    ({"tok_x": _entry(torch.zeros(1, 3, dtype=torch.long))}, "unknown modality 'tok_x'"),
    ({"tok_cam": {"tensor": torch.zeros(1, 3, dtype=torch.long), "input_mask": torch.zeros(1, 3, dtype=torch.bool)}},
     "batch\\['tok_cam'\\] is missing 'target_mask'"),
    ({"tok_cam": _entry(torch.zeros(1, 3))}, "must hold integer token ids, got torch.float32"),
    ({"tok_cam": _entry(torch.zeros(1, 4, dtype=torch.long))}, r"has shape \(1, 4\); expected \[B, 3\]"),
    ({"tok_cam": _entry(torch.zeros(1, 3, dtype=torch.long)), "tok_rgb": _entry(torch.zeros(2, 4, dtype=torch.long))},
     "batch size 2, other modalities have 1"),
    ({"tok_cam": _entry(torch.tensor([[0, 5, 1]]))}, r"token ids in \[0, 5\], outside the vocabulary \[0, 5\)"),
    ({"tok_cam": _entry(torch.tensor([[-1, 0, 1]]))}, r"token ids in \[-1, 1\]"),
    ({"tok_cam": {**_entry(torch.zeros(1, 3, dtype=torch.long)), "input_mask": torch.zeros(1, 3)}}, "must be a bool tensor"),
    ({"tok_cam": {**_entry(torch.zeros(1, 3, dtype=torch.long)), "input_mask": torch.zeros(1, 2, dtype=torch.bool)}},
     r"input_mask'\] has shape \(1, 2\); expected \[1, 3\]"),
    ({}, "non-empty dict"),
])
def test_contract_violations_name_modality_and_key(batch, message):
    with pytest.raises(ValueError, match=message):
        validate_batch(batch, SPECS)


def test_vocabulary_check_can_be_skipped():
    batch = {"tok_cam": _entry(torch.tensor([[0, 9, 1]]))}
    assert validate_batch(batch, SPECS, check_vocab=False)["tok_cam"].ids.tolist() == [[0, 9, 1]]


def test_missing_masks_mean_full_conditioning_only_when_allowed():
    batch = {"tok_cam": {"tensor": np.array([[1, 2, 3]])}}
    with pytest.raises(ValueError, match="missing 'input_mask'"):
        validate_batch(batch, SPECS)
    out = validate_batch(batch, SPECS, require_masks=False)["tok_cam"]
    assert not out.input_mask.any() and out.target_mask.all() and out.ids.tolist() == [[1, 2, 3]]
    half = {"tok_cam": {"tensor": torch.zeros(1, 3, dtype=torch.long), "target_mask": torch.ones(1, 3, dtype=torch.bool)}}
    with pytest.raises(ValueError, match="has only \\['target_mask'\\]; give both"):
        validate_batch(half, SPECS, require_masks=False)

"""The one modality spec and modality-file reader: what data, model and generate all rely on."""

from __future__ import annotations

import numpy as np
import pytest
from egom2p.core.modalities import RELEASED_MODALITIES, ModalitySpec, load_modality_specs

# The released set as the original's configs define it: an independent reference for the shipped file.
RELEASED = {
    "tok_cam": {"vocab_size": 256, "length": 30, "folder": "cam"},
    "tok_depth": {"vocab_size": 64000, "grid": [5, 32, 32], "folder": "depth"},
    "tok_gaze": {"vocab_size": 256, "length": 30, "folder": "gaze"},
    "tok_rgb": {"vocab_size": 64000, "grid": [5, 32, 32], "folder": "rgb"},
}


def test_released_preset_is_the_released_set_and_spec():
    specs = load_modality_specs("egom2p")  # by name: the file egom2p-core ships
    assert list(specs) == ["tok_cam", "tok_depth", "tok_gaze", "tok_rgb"]
    assert {n: s.to_dict() for n, s in specs.items()} == RELEASED == RELEASED_MODALITIES
    assert specs["tok_rgb"].num_tokens == 5120 and specs["tok_rgb"].shape == (5, 32, 32) and specs["tok_rgb"].is_video
    assert specs["tok_cam"].num_tokens == 30 and specs["tok_cam"].shape == (30,) and not specs["tok_cam"].is_video


def test_folder_rule_is_the_name_without_tok_prefix():
    specs = load_modality_specs({"tok_rgb": {"vocab_size": 8, "grid": [1, 2, 2]}, "gaze": {"vocab_size": 4, "length": 3},
                                 "tok_x": {"vocab_size": 4, "length": 3, "folder": "elsewhere"}})
    assert [s.folder for s in specs.values()] == ["gaze", "rgb", "elsewhere"]
    # to_dict round-trips, folder included, so a saved config.json reads back identically
    assert load_modality_specs({n: s.to_dict() for n, s in specs.items()}) == specs


@pytest.mark.parametrize("entry, message", [
    ({"vocab_size": 8}, "exactly one of 'grid'"),
    ({"vocab_size": 8, "grid": [2, 2], "length": 3}, "exactly one of 'grid'"),
    ({"vocab_size": 8, "grid": [2, 2]}, "three positive integers"),
    ({"vocab_size": 0, "length": 3}, "vocab_size must be a positive integer"),
    ({"vocab_size": 8, "length": True}, "length must be a positive integer"),
    ({"length": 3}, "missing 'vocab_size'"),
    ({"vocab_size": 8, "length": 3, "embedding": "x"}, r"unknown key\(s\) \['embedding'\]"),
    ({"vocab_size": 8, "length": 3, "folder": "../up"}, "folder '../up' must be a plain name"),
    ({"vocab_size": 8, "length": 3, "folder": "a,b"}, "folder 'a,b' must be a plain name"),  # breaks [a,b] lists
    ({"vocab_size": 8, "length": 3, "folder": 3}, "plain folder name"),
])
def test_bad_entries_name_the_modality_and_key(entry, message):
    with pytest.raises(ValueError, match=message) as err:
        load_modality_specs({"tok_bad": entry})
    assert "tok_bad" in str(err.value)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_modality_specs(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tok_a: {vocab_size: 4, length: [\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: not valid YAML at line"):
        load_modality_specs(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="empty.yaml: expected a non-empty mapping"):
        load_modality_specs(empty)
    clash = tmp_path / "clash.yaml"
    clash.write_text("tok_a: {vocab_size: 4, length: 2, folder: x}\ntok_b: {vocab_size: 4, length: 2, folder: x}\n")
    with pytest.raises(ValueError, match="share the folder 'x'"):
        load_modality_specs(clash)


def test_check_tokens_names_shape_dtype_and_vocabulary_problems():
    spec = ModalitySpec("tok_rgb", vocab_size=10, grid=(1, 2, 2))
    assert spec.check_tokens(np.zeros((1, 2, 2), dtype=np.int32)) is None
    assert spec.check_tokens(np.arange(4)) is None  # the flat layout is accepted too
    assert "shape (3,)" in spec.check_tokens(np.arange(3))
    assert "dtype float32" in spec.check_tokens(np.zeros(4, dtype=np.float32))
    assert "[0, 10]" in spec.check_tokens(np.array([0, 1, 2, 10]))
    assert "[-1, 2]" in spec.check_tokens(np.array([-1, 0, 1, 2]))


def test_specs_given_as_objects_must_match_their_key():
    spec = ModalitySpec("tok_a", vocab_size=4, length=2)
    assert load_modality_specs({"tok_a": spec}) == {"tok_a": spec}
    with pytest.raises(ValueError, match="holds the spec of modality 'tok_a'"):
        load_modality_specs({"tok_b": spec})

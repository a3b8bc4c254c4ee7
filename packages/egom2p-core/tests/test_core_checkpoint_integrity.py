"""The integrity manifest of a checkpoint directory: written last, checked before the directory is believed, and
the config's dtype checked against the stored tensors."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

import pytest
import torch
from egom2p.core.checkpoint_integrity import (
    INTEGRITY_NAME,
    file_sha256,
    tensor_specs,
    verify_checkpoint_dir,
    write_integrity,
)
from egom2p.core.checkpoints import read_checkpoint_dir, write_checkpoint_dir
from safetensors.torch import save_file

CONFIG = {"kind": "cam", "dim": 8}


def _state(shapes: dict[str, tuple[int, ...]], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(len(shapes))
    return {k: torch.randn(s, generator=g).to(dtype) for k, s in shapes.items()}


SHAPES = [
    {"w": (3, 5)},
    {"encoder.weight": (7, 2, 3), "bias": (7,), "scalar": (), "empty": (0, 4)},
    {f"blocks.{i}.mlp.weight": (16, 8 + i) for i in range(6)},
]


def _directory(tmp_path: Path, state: dict[str, torch.Tensor], extra: bytes = b"optimizer state") -> Path:
    """A checkpoint directory like a trainer's step: weights, config and a third file, then the manifest."""
    folder = tmp_path / "step-2"
    write_checkpoint_dir(folder, state, CONFIG)
    (folder / "train_state.pt").write_bytes(extra)
    write_integrity(folder)
    return folder


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_manifest_records_every_file_and_tensor(tmp_path, shapes, dtype):
    state = _state(shapes, dtype)
    folder = _directory(tmp_path, state)
    manifest = json.loads((folder / INTEGRITY_NAME).read_text())
    files = manifest["files"]
    assert sorted(files) == ["config.json", "model.safetensors", "train_state.pt"]
    for name, entry in files.items():
        data = (folder / name).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() == file_sha256(folder / name)
    expected = {k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)} for k, v in state.items()}
    assert files["model.safetensors"]["tensors"] == expected
    assert "tensors" not in files["train_state.pt"]
    assert verify_checkpoint_dir(folder) is True
    loaded, config = read_checkpoint_dir(folder)
    assert config == CONFIG and all(torch.equal(loaded[k], v) for k, v in state.items())


def test_a_directory_without_manifest_is_not_checked(tmp_path):
    write_checkpoint_dir(tmp_path / "plain", _state(SHAPES[0]), CONFIG)
    (tmp_path / "plain" / INTEGRITY_NAME).unlink()  # as written by an older version, or by hand
    assert verify_checkpoint_dir(tmp_path / "plain") is False
    assert read_checkpoint_dir(tmp_path / "plain")[1] == CONFIG


def test_a_weights_directory_records_only_its_own_two_files(tmp_path):
    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "README.md").write_text("notes the user edits later")
    write_checkpoint_dir(folder, _state(SHAPES[1]), CONFIG)
    files = json.loads((folder / INTEGRITY_NAME).read_text())["files"]
    assert sorted(files) == ["config.json", "model.safetensors"]
    (folder / "README.md").write_text("edited")
    assert verify_checkpoint_dir(folder) is True
    flipped = bytearray((folder / "model.safetensors").read_bytes())
    flipped[-1] ^= 0x01
    (folder / "model.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"exported/model\.safetensors: content differs"):
        read_checkpoint_dir(folder)


def test_adding_to_a_manifest_keeps_what_it_recorded(tmp_path):
    folder = tmp_path / "step-4"
    write_checkpoint_dir(folder, _state(SHAPES[0]), CONFIG)
    before = json.loads((folder / INTEGRITY_NAME).read_text())["files"]
    (folder / "train_state.pt").write_bytes(b"optimizer")
    write_integrity(folder, ["train_state.pt"], add=True)
    after = json.loads((folder / INTEGRITY_NAME).read_text())["files"]
    assert sorted(after) == ["config.json", "model.safetensors", "train_state.pt"]
    assert {k: after[k] for k in before} == before and verify_checkpoint_dir(folder) is True


@pytest.mark.parametrize("offset", [0.5, 0.9, -1])
def test_a_flipped_bit_names_the_file(tmp_path, offset):
    folder = _directory(tmp_path, _state(SHAPES[2]))
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[int(len(data) * offset) if offset > 0 else offset] ^= 0x04  # in the tensor bytes: the header still parses
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"step-2/model\.safetensors: content differs from integrity\.json") as err:
        verify_checkpoint_dir(folder)
    assert "\n" not in str(err.value) and f"delete {folder / INTEGRITY_NAME}" in str(err.value)
    with pytest.raises(ValueError, match=r"model\.safetensors: content differs"):
        read_checkpoint_dir(folder)


def test_other_damage_names_the_file_and_what_differs(tmp_path):
    folder = _directory(tmp_path, _state(SHAPES[1]))
    (folder / "train_state.pt").write_bytes(b"optimizer state, longer")
    with pytest.raises(ValueError, match=r"train_state\.pt: 23 bytes, integrity\.json recorded 15"):
        verify_checkpoint_dir(folder)
    (folder / "train_state.pt").unlink()
    with pytest.raises(ValueError, match=r"train_state\.pt: missing, but listed in .*integrity\.json"):
        verify_checkpoint_dir(folder)


@pytest.mark.parametrize("change, message", [
    (lambda s: {**s, "bias": s["bias"].half()}, r"tensor 'bias' is float16, integrity\.json recorded float32"),
    (lambda s: {**s, "bias": s["bias"][:3]}, r"tensor 'bias' has shape \[3\], integrity\.json recorded \[7\]"),
    (lambda s: {k: v for k, v in s.items() if k != "scalar"}, r"tensors \['scalar'\] missing and \[\] unexpected"),
])
def test_a_resaved_tensor_is_named_with_both_dtypes_or_shapes(tmp_path, change, message):
    state = _state(SHAPES[1])
    folder = _directory(tmp_path, state)
    save_file({k: v.contiguous() for k, v in change(state).items()}, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=message):
        verify_checkpoint_dir(folder)


def test_a_damaged_header_or_manifest_is_one_line_naming_it(tmp_path):
    folder = _directory(tmp_path, _state(SHAPES[0]))
    (folder / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"):
        verify_checkpoint_dir(folder)
    manifest = folder / INTEGRITY_NAME
    for text, message in [("{not json", "not a readable integrity manifest"),
                          ('{"format": "other", "files": {}}', "not an integrity manifest of format"),
                          (json.dumps({"format": "egom2p-checkpoint-integrity/1",
                                       "files": {"../x": {"size": 1, "sha256": "0"}}}), r"malformed entry '\.\./x'")]:
        manifest.write_text(text)
        with pytest.raises(ValueError, match=message) as err:
            verify_checkpoint_dir(folder)
        assert str(manifest) in str(err.value)


def test_hashing_streams_the_file(tmp_path):
    big = {"w": torch.zeros(16 * 2**20 // 4)}  # a 16 MiB tensor
    folder = tmp_path / "big"
    write_checkpoint_dir(folder, big, CONFIG)
    del big
    tracemalloc.start()
    try:
        write_integrity(folder)
        assert verify_checkpoint_dir(folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"hashing held {peak / 2**20:.1f} MiB at once"


def test_tensor_specs_reads_the_header_only(tmp_path):
    state = {"a": torch.zeros(2, 3, dtype=torch.bfloat16), "b": torch.zeros(4, dtype=torch.int64),
             "c": torch.zeros((), dtype=torch.bool)}
    save_file(state, str(tmp_path / "x.safetensors"))
    assert tensor_specs(tmp_path / "x.safetensors") == {"a": ("bfloat16", (2, 3)), "b": ("int64", (4,)),
                                                        "c": ("bool", ())}


@pytest.mark.parametrize("declared, stored, message", [
    ("float32", torch.bfloat16, "'dtype' is float32 but tensor 'norm' is bfloat16"),
    ("bf16", torch.bfloat16, "'dtype' is bfloat16 but tensor 'w' is float32"),
    ("torch.float16", torch.float64, "'dtype' is float16 but tensor 'norm' is float64"),  # keys in file order
])
def test_config_dtype_must_match_the_tensors(tmp_path, declared, stored, message):
    state = {"w": torch.ones(2, 2), "counts": torch.arange(3), "norm": torch.ones(2).to(stored)}
    write_checkpoint_dir(tmp_path / "c", state, {**CONFIG, "dtype": declared})
    with pytest.raises(ValueError, match=r"c/config\.json: ") as err:
        read_checkpoint_dir(tmp_path / "c")
    assert str(err.value).endswith(message)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_config_dtype_that_matches_loads_and_is_not_a_model_field(tmp_path, dtype):
    state = {"w": torch.ones(2, 2, dtype=dtype), "counts": torch.arange(3)}
    write_checkpoint_dir(tmp_path / "c", state, {**CONFIG, "dtype": str(dtype)})
    loaded, config = read_checkpoint_dir(tmp_path / "c")
    assert config == CONFIG and loaded["w"].dtype == dtype
    write_checkpoint_dir(tmp_path / "d", state, {**CONFIG, "dtype": "int8"})
    with pytest.raises(ValueError, match=r"config\.json: 'dtype': dtype must be a floating torch dtype"):
        read_checkpoint_dir(tmp_path / "d")

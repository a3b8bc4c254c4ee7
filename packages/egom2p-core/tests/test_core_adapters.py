"""LoRA adapters beside a checkpoint: merging is W + (alpha / rank) B A, and every reader of the directory merges."""

import pytest
import torch
from egom2p.core.adapters import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, merge_adapter, read_adapter, write_adapter
from egom2p.core.checkpoints import read_checkpoint_dir, write_checkpoint_dir

CONFIG = {"rank": 2, "alpha": 6.0, "dropout": 0.0, "target_modules": ["qkv"], "blocks": ["encoder"]}


def adapter(out=6, inp=4, rank=2):
    g = torch.Generator().manual_seed(0)
    return {"layer.lora_A": torch.randn(rank, inp, generator=g), "layer.lora_B": torch.randn(out, rank, generator=g)}


@pytest.mark.parametrize(("out", "inp"), [(6, 4), (12, 3)])
def test_merge_adds_the_scaled_product_in_float64(out, inp):
    weight = torch.randn(out, inp)
    tensors = adapter(out, inp)
    merged = merge_adapter({"layer.weight": weight, "other.weight": weight}, tensors, CONFIG)
    expected = weight.double() + 3.0 * tensors["layer.lora_B"].double() @ tensors["layer.lora_A"].double()
    assert merged["layer.weight"].dtype == torch.float32
    assert torch.equal(merged["layer.weight"], expected.float())
    assert merged["other.weight"] is weight  # only adapted layers change
    x = torch.randn(5, inp)  # what the adapted layer computes: W x + (alpha / rank) B A x
    adapted = x @ weight.T + 3.0 * (x @ tensors["layer.lora_A"].T) @ tensors["layer.lora_B"].T
    assert torch.allclose(x @ merged["layer.weight"].T, adapted, atol=1e-5)


def test_a_checkpoint_directory_with_an_adapter_reads_merged(tmp_path):
    weight = torch.randn(6, 4)
    write_checkpoint_dir(tmp_path, {"layer.weight": weight}, {"dim": 4})
    write_adapter(tmp_path, adapter(), CONFIG)
    state, config = read_checkpoint_dir(tmp_path)
    assert config == {"dim": 4}
    assert torch.equal(state["layer.weight"], merge_adapter({"layer.weight": weight}, adapter(), CONFIG)["layer.weight"])
    tensors, meta = read_adapter(tmp_path)
    assert meta["format"] == "egom2p-lora/1" and meta["rank"] == 2 and set(tensors) == set(adapter())


def test_broken_adapters_are_one_line_naming_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="'layer' has only one of layer.lora_A / layer.lora_B"):
        merge_adapter({"layer.weight": torch.zeros(6, 4)}, {"layer.lora_A": torch.zeros(2, 4)}, CONFIG)
    with pytest.raises(ValueError, match=r"lora_B \[6, 2\] @ lora_A \[2, 4\] does not make the weight's shape \[5, 4\]"):
        merge_adapter({"layer.weight": torch.zeros(5, 4)}, adapter(), CONFIG)
    with pytest.raises(ValueError, match="'layer' adapts no weight of the checkpoint"):
        merge_adapter({}, adapter(), CONFIG)
    write_adapter(tmp_path, adapter(), CONFIG)
    (tmp_path / ADAPTER_CONFIG_NAME).unlink()
    with pytest.raises(ValueError, match=f"has {ADAPTER_WEIGHTS_NAME} but no {ADAPTER_CONFIG_NAME}"):
        read_adapter(tmp_path)
    write_adapter(tmp_path, adapter(), {**CONFIG, "rank": 0})
    with pytest.raises(ValueError, match="'rank' must be a positive number, got 0"):
        read_adapter(tmp_path)

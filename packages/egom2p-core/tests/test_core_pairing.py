"""The one paired reader (issue 26): a shard's folders read together and paired by sample key under an explicit
policy, checked against each folder's members read on their own."""

from __future__ import annotations

import numpy as np
import pytest
from egom2p.core.errors import ShardError
from egom2p.core.layout import domain_list, folder_modalities, sample_key
from egom2p.core.modalities import load_modality_specs
from egom2p.core.pairing import iter_folder_samples, iter_shard, key_mismatches, read_shard
from egom2p.core.shards import encode_tokens, read_tar_members, write_tar


def shard(root, keys_by_folder, extra=()):
    """One shard ``root/[folders]/ds/s.tar``: each folder's tar holds its keys (value = position), plus ``extra``."""
    for folder, keys in keys_by_folder.items():
        members = [(f"{k}.npz", encode_tokens(np.full(2, i))) for i, k in enumerate(keys)] + list(extra)
        write_tar(root / folder / "ds" / "s.tar", members)
    return f"{root}/[{','.join(keys_by_folder)}]/ds/s.tar"


def reference(root, folders):
    """The samples by hand: each folder's members read on their own, keyed by sample key."""
    return {f: {key: (f"{key}.{ext}", data) for key, ext, data in read_tar_members(f"{root}/{f}/ds/s.tar")}
            for f in folders}


def test_matching_folders_read_alike_under_every_policy(tmp_path):
    url = shard(tmp_path, {"rgb": ["a", "b", "c"], "cam": ["a", "b", "c"]})
    by_hand = reference(tmp_path, ["rgb", "cam"])
    expected = [(k, {"rgb": by_hand["rgb"][k], "cam": by_hand["cam"][k]}) for k in "abc"]
    for policy in ("union", "strict", "lockstep"):
        assert read_shard(url, policy=policy) == expected
        assert list(iter_shard(url, policy=policy)) == expected
    assert key_mismatches({"rgb": list("abc"), "cam": list("abc")}, url) == []


def test_differing_keys_under_each_policy(tmp_path):
    url = shard(tmp_path, {"rgb": ["a", "b", "c"], "cam": ["a", "c", "z"]})
    union = read_shard(url, policy="union")
    assert [(k, sorted(m)) for k, m in union] == [("a", ["cam", "rgb"]), ("b", ["rgb"]), ("c", ["cam", "rgb"]),
                                                   ("z", ["cam"])]
    assert union[2][1]["cam"] == reference(tmp_path, ["cam"])["cam"]["c"]
    with pytest.raises(ShardError, match=r"s.tar: folder 'cam' vs 'rgb': keys differ \(3 vs 3 samples, e.g. \['b', 'z'\]\)"):
        read_shard(url, policy="strict")
    with pytest.raises(ShardError, match="sample keys differ across modality shards: .*rgb/ds/s.tar: 'b'"):
        list(iter_shard(url, policy="lockstep"))


def test_order_and_length_differences(tmp_path):
    url = shard(tmp_path, {"rgb": ["a", "b"], "cam": ["b", "a"]})
    assert [k for k, _ in read_shard(url)] == ["a", "b"]  # union: the first folder's order
    assert key_mismatches({"rgb": ["a", "b"], "cam": ["b", "a"]}, "x") == ["x: folder 'cam' vs 'rgb': keys are in a different order"]
    with pytest.raises(ShardError, match="keys are in a different order"):
        read_shard(url, policy="strict")
    short = shard(tmp_path / "short", {"rgb": ["a", "b"], "cam": ["a"]})
    with pytest.raises(ShardError, match=r"shards differ in length: \[.*short/cam/ds/s.tar'\] ended before"):
        list(iter_shard(short, policy="lockstep"))


def test_a_mapping_a_single_tar_and_a_suffix_filter(tmp_path):
    url = shard(tmp_path, {"rgb": ["a"], "cam": ["a"]}, extra=[("notes.txt", b"not tokens")])
    tars = {"cam": f"{tmp_path}/cam/ds/s.tar", "rgb": f"{tmp_path}/rgb/ds/s.tar"}
    assert [k for k, _ in read_shard(url)] == ["a", "notes"]
    assert [(k, list(m)) for k, m in iter_shard(tars, policy="lockstep", suffixes=(".npz",))] == [("a", ["cam", "rgb"])]
    assert [(k, list(m)) for k, m in read_shard(tars["rgb"], suffixes=(".npz",))] == [("a", [""])]


def test_per_sample_files_pair_by_the_same_rule(tmp_path):
    for folder, keys in (("rgb", ["a", "b"]), ("cam", ["b", "c"])):
        (tmp_path / folder / "ds").mkdir(parents=True)
        for k in keys:
            (tmp_path / folder / "ds" / f"{k}.npz").write_bytes(encode_tokens(np.arange(2)))
    union = list(iter_folder_samples(tmp_path, "ds", ["rgb", "cam"]))
    assert [(k, sorted(m)) for k, m in union] == [("a", ["rgb"]), ("b", ["cam", "rgb"]), ("c", ["cam"])]
    assert union[1][1]["cam"] == ("b.npz", (tmp_path / "cam" / "ds" / "b.npz").read_bytes())
    with pytest.raises(ShardError, match="folder 'cam' vs 'rgb': keys differ"):
        list(iter_folder_samples(tmp_path, "ds", ["rgb", "cam"], policy="strict"))
    with pytest.raises(ValueError, match="lockstep"):
        list(iter_folder_samples(tmp_path, "ds", ["rgb"], policy="lockstep"))


def test_the_layout_rules():
    specs = load_modality_specs({"tok_rgb": {"vocab_size": 8, "grid": [1, 2, 2]}, "tok_cam": {"vocab_size": 8, "length": 3}})
    assert folder_modalities(["tok_rgb", "tok_cam"], specs) == {"rgb": "tok_rgb", "cam": "tok_cam"}
    assert folder_modalities(["tok_rgb"], specs, {"video": "tok_rgb"}) == {"rgb": "tok_rgb", "video": "tok_rgb"}
    assert sample_key("x/clip-1.npz") == ("clip-1", "npz") and sample_key("clip.v1.npy") == ("clip", "v1.npy")
    # the original's hyphen-separated domains, or a list; empty parts dropped
    assert domain_list("tok_rgb-tok_depth--tok_cam") == ["tok_rgb", "tok_depth", "tok_cam"]
    assert domain_list(("tok_rgb", "tok_cam")) == ["tok_rgb", "tok_cam"] and domain_list("") == []

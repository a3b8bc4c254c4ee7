"""Shard writing: the original's layout, read back with egom2p-core's reader through the data opener."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
from egom2p.core.layout import expand_shard_pattern
from egom2p.core.pairing import read_shard
from egom2p.core.shards import decode_tokens, load_token_array, open_url
from egom2p.data.shards import write_shards


def test_write_and_read_round_trip(tmp_path):
    rgb = np.arange(5 * 2 * 3 * 3).reshape(5, 2, 3, 3).astype(np.int32)
    cam = [np.full(4, i, dtype=np.int16) for i in range(5)]
    pattern = write_shards(tmp_path, "toy", {"rgb": rgb, "cam": cam}, samples_per_shard=2)
    assert pattern == f"{tmp_path}/[cam,rgb]/toy/shard-{{000000..000002}}.tar"
    assert (tmp_path / "rgb/toy/shard-000002.tar").exists() and (tmp_path / "cam/toy/shard-000000.tar").exists()
    samples = [s for url in expand_shard_pattern(pattern) for s in read_shard(url, open_url)]
    assert [k for k, _ in samples] == [f"sample-{i:08d}" for i in range(5)]
    key, raw = samples[3]
    member, data = raw["rgb"]
    assert member == "sample-00000003.npz"
    assert load_token_array(member, data).dtype == np.int32  # the stored dtype is kept
    out = decode_tokens(member, data)
    assert out.dtype == np.int64 and np.array_equal(out, rgb[3])
    assert np.array_equal(decode_tokens(*raw["cam"]), np.full(4, 3))
    # Same keys in the same order in every modality's tar (the original's loader requires it).
    names = lambda p: [m.name for m in tarfile.open(p)]  # noqa: E731
    assert names(tmp_path / "rgb/toy/shard-000001.tar") == names(tmp_path / "cam/toy/shard-000001.tar")
    assert read_shard(f"file://{tmp_path}/[rgb]/toy/shard-000000.tar", open_url)[0][0] == "sample-00000000"


def test_write_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="different sample counts"):
        write_shards(tmp_path, "x", {"rgb": np.zeros((2, 3), dtype=np.int64), "cam": np.zeros((3, 3), dtype=np.int64)})
    with pytest.raises(ValueError, match="contain '.'"):
        write_shards(tmp_path, "x", {"rgb": np.zeros((1, 3), dtype=np.int64)}, keys=["a.b"])
    with pytest.raises(ValueError, match="dtype float64"):
        write_shards(tmp_path, "x", {"rgb": np.zeros((1, 3))})

"""Shard writing/reading: layout, brace and bracket expansion, the real example token files."""

from __future__ import annotations

import io
import pathlib
import tarfile

import numpy as np
import pytest
from egom2p.data.shards import (
    ShardError,
    decode_tokens,
    expand_folders,
    expand_shard_pattern,
    read_shard,
    read_tar_members,
    write_shards,
)

# The reference example files of the original repository (shared with the project, outside this tree).
EXAMPLES = pathlib.Path(__file__).resolve().parents[4] / "shared/reference/examples"


def test_expand_pattern_keeps_folder_brackets():
    urls = expand_shard_pattern("root/[rgb,depth,cam]/egogen/shard-{000000..000002}.tar")
    assert urls == [f"root/[rgb,depth,cam]/egogen/shard-00000{i}.tar" for i in range(3)]
    assert expand_folders(urls[1]) == {f: f"root/{f}/egogen/shard-000001.tar" for f in ("rgb", "depth", "cam")}
    assert expand_folders("root/[rgb]/x.tar") == {"rgb": "root/rgb/x.tar"}


def test_write_and_read_round_trip(tmp_path):
    rgb = np.arange(5 * 2 * 3 * 3).reshape(5, 2, 3, 3).astype(np.int32)
    cam = [np.full(4, i, dtype=np.int16) for i in range(5)]
    pattern = write_shards(tmp_path, "toy", {"rgb": rgb, "cam": cam}, samples_per_shard=2)
    assert pattern == f"{tmp_path}/[cam,rgb]/toy/shard-{{000000..000002}}.tar"
    assert (tmp_path / "rgb/toy/shard-000002.tar").exists() and (tmp_path / "cam/toy/shard-000000.tar").exists()
    samples = [s for url in expand_shard_pattern(pattern) for s in read_shard(url, {"rgb": "tok_rgb", "cam": "tok_cam"})]
    assert [k for k, _ in samples] == [f"sample-{i:08d}" for i in range(5)]
    key, raw = samples[3]
    member, data = raw["tok_rgb"]
    assert member == "sample-00000003.npz"
    out = decode_tokens(member, data)
    assert out.dtype == np.int64 and np.array_equal(out, rgb[3])
    assert np.array_equal(decode_tokens(*raw["tok_cam"]), np.full(4, 3))
    # Same keys in the same order in every modality's tar (the original's loader requires it).
    names = lambda p: [m.name for m in tarfile.open(p)]  # noqa: E731
    assert names(tmp_path / "rgb/toy/shard-000001.tar") == names(tmp_path / "cam/toy/shard-000001.tar")


def test_write_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="different sample counts"):
        write_shards(tmp_path, "x", {"rgb": np.zeros((2, 3)), "cam": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="contain '.'"):
        write_shards(tmp_path, "x", {"rgb": np.zeros((1, 3))}, keys=["a.b"])


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="reference examples not available")
def test_real_example_token_files(tmp_path):
    video = np.load(EXAMPLES / "rgb2cam_egoexo.npz")["arr_0"]
    cam = np.load(EXAMPLES / "token__cam-tok.npz")["arr_0"]
    assert video.dtype == np.int32 and cam.dtype == np.int64
    pattern = write_shards(tmp_path, "egoexo", {"rgb": video[None], "cam": cam[None]}, keys=["take-0"])
    [(key, raw)] = read_shard(pattern, {"rgb": "tok_rgb", "cam": "tok_cam"})
    rgb_tokens, cam_tokens = decode_tokens(*raw["tok_rgb"]), decode_tokens(*raw["tok_cam"])
    assert key == "take-0" and rgb_tokens.shape == (5, 32, 32) and rgb_tokens.dtype == np.int64
    assert 0 <= rgb_tokens.min() and rgb_tokens.max() < 64000 and np.array_equal(rgb_tokens, video)
    assert cam_tokens.shape == (30,) and cam_tokens.dtype == np.int64 and 0 <= cam_tokens.min() and cam_tokens.max() < 256
    # The original files decode directly too (.npz arr_0).
    assert decode_tokens("x.npz", (EXAMPLES / "token__gaze-tok.npz").read_bytes()).shape == (30,)


def test_npy_members_and_bad_members():
    buf = io.BytesIO()
    np.save(buf, np.arange(6, dtype=np.uint8))
    assert decode_tokens("k.npy", buf.getvalue()).dtype == np.int64
    buf = io.BytesIO()
    np.save(buf, np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="dtype float32"):
        decode_tokens("k.npy", buf.getvalue())
    with pytest.raises(ValueError, match="unsupported"):
        decode_tokens("k.jpg", b"")


def test_truncated_and_missing_tars_raise_shard_error(tmp_path):
    pattern = write_shards(tmp_path, "t", {"rgb": np.zeros((50, 64), dtype=np.int64) + np.arange(64)}, samples_per_shard=50)
    path = tmp_path / "rgb/t/shard-000000.tar"
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ShardError, match="shard-000000.tar"):
        read_tar_members(str(path))
    with pytest.raises(ShardError, match="nope.tar"):
        read_tar_members(str(tmp_path / "nope.tar"))
    assert pattern.endswith("shard-000000.tar")

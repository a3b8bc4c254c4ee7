"""The shard format: one pattern grammar, one folder-list rule, one codec, the tar reader and writer."""

from __future__ import annotations

import io
import pathlib
import tarfile

import numpy as np
import pytest
from egom2p.core.errors import ShardError
from egom2p.core.layout import expand_folders, expand_shard_pattern, find_root_shards
from egom2p.core.pairing import iter_folder_samples, read_shard
from egom2p.core.shards import decode_tokens, encode_tokens, load_token_array, read_tar_members, write_tar

# Token files written by the original tokenizers (copied from the project's reference folder).
EXAMPLES = pathlib.Path(__file__).resolve().parent / "fixtures" / "examples"


def test_pattern_grammar_is_braceexpand_with_folder_lists_intact():
    urls = expand_shard_pattern("root/[rgb,depth,cam]/egogen/shard-{000000..000002}.tar")
    assert urls == [f"root/[rgb,depth,cam]/egogen/shard-00000{i}.tar" for i in range(3)]
    assert expand_shard_pattern("s-{000010..000008}.tar") == ["s-000010.tar", "s-000009.tar", "s-000008.tar"]
    assert expand_shard_pattern("{a,b}/x-{1..2}.tar") == ["a/x-1.tar", "a/x-2.tar", "b/x-1.tar", "b/x-2.tar"]
    assert expand_shard_pattern("s3://bucket/plain.tar") == ["s3://bucket/plain.tar"]
    with pytest.raises(ValueError, match="non-empty string"):
        expand_shard_pattern("")


def test_folder_lists():
    assert expand_folders("root/[rgb, cam]/x.tar") == {"rgb": "root/rgb/x.tar", "cam": "root/cam/x.tar"}
    assert expand_folders("root/rgb/x.tar") == {"": "root/rgb/x.tar"}
    for bad, message in (("r/[]/x.tar", "empty folder list"), ("[a]/[b]/x.tar", "at most one"),
                         ("r/[a,..]/x.tar", "folder '..' must be a plain name"), ("r/[a,a]/x.tar", "twice")):
        with pytest.raises(ValueError, match=message):
            expand_folders(bad)


def test_codec_round_trip_and_stored_dtype():
    array = np.arange(12, dtype=np.int16).reshape(3, 4)
    data = encode_tokens(array)
    assert load_token_array("k.npz", data).dtype == np.int16
    out = decode_tokens("k.npz", data)
    assert out.dtype == np.int64 and np.array_equal(out, array)
    buf = io.BytesIO()
    np.save(buf, np.arange(6, dtype=np.uint8))
    assert decode_tokens("k.npy", buf.getvalue()).dtype == np.int64


def test_codec_rejects_floats_pickles_and_garbage_naming_the_file():
    buf = io.BytesIO()
    np.save(buf, np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="k.npy: token array has dtype float32"):
        decode_tokens("k.npy", buf.getvalue())
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="obj.npy: not a readable token file"):
        decode_tokens("obj.npy", buf.getvalue())
    with pytest.raises(ValueError, match="k.jpg: unsupported"):
        decode_tokens("k.jpg", b"")
    with pytest.raises(ValueError, match="junk.npz: not a readable"):
        decode_tokens("junk.npz", b"not a zip")
    buf = io.BytesIO()
    np.savez(buf, tokens=np.arange(3))
    with pytest.raises(ValueError, match="expected 'arr_0'"):
        decode_tokens("named.npz", buf.getvalue())
    with pytest.raises(ValueError, match="integers"):
        encode_tokens(np.zeros(2))


def test_real_example_token_files_decode():
    video = decode_tokens("x.npz", (EXAMPLES / "rgb2cam_egoexo.npz").read_bytes())
    assert video.shape == (5, 32, 32) and 0 <= video.min() and video.max() < 64000
    assert load_token_array("x.npz", (EXAMPLES / "rgb2cam_egoexo.npz").read_bytes()).dtype == np.int32
    for name in ("token__cam-tok.npz", "token__gaze-tok.npz"):
        tokens = decode_tokens(name, (EXAMPLES / name).read_bytes())
        assert tokens.shape == (30,) and 0 <= tokens.min() and tokens.max() < 256


def _write(tmp_path, folder, keys, value=0):
    path = tmp_path / folder / "ds" / "shard-000000.tar"
    write_tar(path, [(f"{k}.npz", encode_tokens(np.full(3, value + i))) for i, k in enumerate(keys)])
    return path


def test_write_tar_is_reproducible_and_leaves_no_temp_file(tmp_path):
    a = _write(tmp_path, "rgb", ["k0", "k1"])
    first = a.read_bytes()
    a = _write(tmp_path, "rgb", ["k0", "k1"])
    assert a.read_bytes() == first
    assert sorted(p.name for p in a.parent.iterdir()) == ["shard-000000.tar"]
    assert [m[:2] for m in read_tar_members(str(a))] == [("k0", "npz"), ("k1", "npz")]


def test_read_shard_pairs_members_across_folders_by_key(tmp_path):
    _write(tmp_path, "rgb", ["a", "b", "c"])
    _write(tmp_path, "cam", ["a", "c", "z"], value=10)
    samples = read_shard(str(tmp_path / "[rgb,cam]" / "ds" / "shard-000000.tar"))  # the union policy
    assert [k for k, _ in samples] == ["a", "b", "c", "z"]  # the first folder's order, then keys only cam holds
    assert set(samples[0][1]) == {"rgb", "cam"} and set(samples[1][1]) == {"rgb"} and set(samples[3][1]) == {"cam"}
    assert np.array_equal(decode_tokens(*samples[2][1]["cam"]), np.full(3, 11))


def test_truncated_corrupt_and_missing_tars_raise_shard_error(tmp_path):
    path = tmp_path / "t.tar"
    write_tar(path, [("k.npz", encode_tokens(np.random.default_rng(0).integers(0, 1000, 4096)))])
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ShardError, match="t.tar"):
        read_tar_members(str(path))
    with pytest.raises(ShardError, match="nope.tar") as err:
        read_tar_members(str(tmp_path / "nope.tar"))
    assert str(err.value).count("nope.tar") == 1  # the opener's message names it; the wrapper does not repeat it
    (tmp_path / "junk.tar").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ShardError, match="junk.tar"):
        read_tar_members(str(tmp_path / "junk.tar"))


@pytest.mark.parametrize("names", [("a/k.npz", "b/k.npz"), ("k.npz", "k.npz"), ("k.npy", "k.npz"), ("j.npz", "k.npz", "x/j.npz")])
def test_two_members_with_one_key_are_refused_not_merged(tmp_path, names):
    data = encode_tokens(np.arange(3))
    folder = tmp_path / "cam"
    write_tar(folder / "s.tar", [(name, data) for name in names])
    key = pathlib.PurePosixPath(names[-1]).name.partition(".")[0]
    first = next(n for n in names if pathlib.PurePosixPath(n).name.partition(".")[0] == key)
    message = f"members {first} and {names[-1]} have the same sample key '{key}'"
    with pytest.raises(ShardError, match=message.replace(".", r"\.")):
        read_tar_members(str(folder / "s.tar"))
    with pytest.raises(ShardError, match="s.tar"):  # the loaders' reader too
        read_shard(str(tmp_path / "[cam]" / "s.tar"))


def test_tar_directories_and_links_are_skipped(tmp_path):
    path = tmp_path / "mixed.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("sub")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        data = encode_tokens(np.arange(2))
        info = tarfile.TarInfo("sub/k.npz")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("link.npz")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    assert [m[:2] for m in read_tar_members(str(path))] == [("k", "npz")]


def test_per_file_layout_pairs_by_key(tmp_path):
    for folder, keys in (("rgb", ["a", "b"]), ("cam", ["b", "a"])):
        (tmp_path / folder / "ds").mkdir(parents=True)
        for i, k in enumerate(keys):
            (tmp_path / folder / "ds" / f"{k}.npz").write_bytes(encode_tokens(np.full(2, i)))
    samples = list(iter_folder_samples(tmp_path, "ds", ["rgb", "cam", "gaze"]))
    assert [k for k, _ in samples] == ["a", "b"]
    assert np.array_equal(decode_tokens(*samples[0][1]["cam"]), np.full(2, 1))
    with pytest.raises(FileNotFoundError, match="gaze"):
        list(iter_folder_samples(tmp_path, "ds", ["gaze"]))


def test_a_data_root_resolves_to_the_tars_below_each_folder(tmp_path):
    for folder in ("rgb", "cam"):
        for n in range(2):
            write_tar(tmp_path / folder / "ds" / "token" / f"shard-{n:06d}.tar", [("k.npz", encode_tokens(np.arange(2)))])
    (tmp_path / "gaze" / "ds").mkdir(parents=True)  # a folder without tars is left out of the folder list
    urls = find_root_shards(str(tmp_path), "ds", ["rgb", "cam", "gaze"])
    assert urls == [f"{tmp_path}/[rgb,cam]/ds/token/shard-00000{n}.tar" for n in range(2)]
    assert set(read_shard(urls[1])[0][1]) == {"rgb", "cam"}
    assert find_root_shards(str(tmp_path), "other", ["rgb"]) == []
    assert find_root_shards(tmp_path, "ds", ["gaze"], policy="strict") == []  # no tars: [] under either policy


def _tars(root, names_by_folder):
    for folder, names in names_by_folder.items():
        for name in names:
            write_tar(root / folder / "ds" / name, [("k.npz", encode_tokens(np.arange(2)))])


def test_union_policy_lists_every_name_and_a_lacking_tar_reads_as_missing(tmp_path):
    _tars(tmp_path, {"rgb": ["s-0.tar", "s-1.tar"], "cam": ["s-1.tar", "s-2.tar"]})
    urls = find_root_shards(tmp_path, "ds", ["rgb", "cam"], policy="union")
    assert urls == [f"{tmp_path}/[rgb,cam]/ds/s-{n}.tar" for n in range(3)]
    assert find_root_shards(tmp_path, "ds", ["rgb", "cam"]) == urls  # union is the default
    with pytest.raises(ShardError, match="cam/ds/s-0.tar"):
        read_shard(urls[0])
    # no folders given: every folder of the root holding the dataset, sorted
    assert find_root_shards(tmp_path, "ds")[0] == f"{tmp_path}/[cam,rgb]/ds/s-0.tar"


def test_strict_policy_names_both_folders_and_the_differing_shards(tmp_path):
    _tars(tmp_path, {"rgb": ["s-0.tar", "s-1.tar"], "cam": ["s-0.tar", "s-1.tar"]})
    assert len(find_root_shards(tmp_path, "ds", ["rgb", "cam"], policy="strict")) == 2
    _tars(tmp_path, {"cam": ["s-2.tar"]})
    (tmp_path / "rgb" / "ds" / "s-0.tar").unlink()
    with pytest.raises(ShardError) as err:
        find_root_shards(tmp_path, "ds", ["rgb", "cam"], policy="strict")
    assert str(err.value) == (f"{tmp_path}/rgb/ds and {tmp_path}/cam/ds hold different shards: "
                              "only rgb holds [], only cam holds ['s-0.tar', 's-2.tar']")


def test_root_finder_rejects_bad_policies_and_folder_names(tmp_path):
    _tars(tmp_path, {"a,b": ["s-0.tar"]})
    with pytest.raises(ValueError, match=r"folder 'a,b' must be a plain name"):
        find_root_shards(tmp_path, "ds")
    with pytest.raises(ValueError, match="'union' or 'strict'"):
        find_root_shards(tmp_path, "ds", ["a,b"], policy="first")
    with pytest.raises(ValueError, match="name the modality folders"):
        find_root_shards("s3://bucket/root", "ds")


@pytest.mark.parametrize("dtype", ["int8", "uint16", ">i4", "int64", "float32"])
@pytest.mark.parametrize("shape", [(0,), (8,), (2, 3, 4)])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("suffix", [".npy", ".npz", ".compressed.npz"])
def test_one_pass_decoding_gives_what_np_load_gives(dtype, shape, order, suffix):
    """The header-first reader against numpy's own: same values, dtype, shape and memory order, and writable."""
    array = np.asarray(np.arange(int(np.prod(shape))).reshape(shape) % 100, dtype=dtype, order=order)
    stream = io.BytesIO()
    {".npy": np.save, ".npz": np.savez, ".compressed.npz": np.savez_compressed}[suffix](stream, array)
    name = "k" + suffix.removeprefix(".compressed")
    ours = load_token_array(name, stream.getvalue())
    loaded = np.load(io.BytesIO(stream.getvalue()), allow_pickle=False)
    theirs = loaded if name.endswith(".npy") else loaded["arr_0"]
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape and np.array_equal(ours, theirs)
    assert ours.flags.f_contiguous == theirs.flags.f_contiguous and ours.flags.writeable


def test_one_pass_decoding_refuses_objects_truncation_and_what_the_check_refuses():
    stream = io.BytesIO()
    np.save(stream, np.arange(8))
    whole = stream.getvalue()
    with pytest.raises(ValueError, match=r"k.npy: not a readable token file \(truncated: 32 of 64 data bytes\)"):
        load_token_array("k.npy", whole[:-32])
    claims = io.BytesIO()  # a header claiming 8 TB over 64 bytes of data: refused before anything is allocated
    np.lib.format.write_array_header_1_0(claims, {"descr": "<i8", "fortran_order": False, "shape": (10**12,)})
    with pytest.raises(ValueError, match=r"truncated: 64 of 8000000000000 data bytes"):
        load_token_array("k.npy", claims.getvalue() + bytes(64))
    objects = io.BytesIO()
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="k.npy: not a readable token file"):
        load_token_array("k.npy", objects.getvalue())
    seen = []

    def refuse(head):
        seen.append((head.shape, str(head.dtype)))
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        decode_tokens("k.npy", whole, refuse)
    assert seen == [((8,), "int64")]

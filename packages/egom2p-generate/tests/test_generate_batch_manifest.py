"""Batch inference outputs know where they came from: the root's manifest, resume or refuse, --new-root and
--overwrite, finished shards verified before they are skipped, outputs that never collide or leave the root."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from egom2p.core.errors import ShardError
from egom2p.core.shards import encode_tokens, read_tar_members, write_tar
from egom2p.generate.batch_manifest import build_manifest, claim_root, first_difference, manifest_path, source_identity
from egom2p.generate.cli import main as generate_main
from egom2p.generate.infer import generate_shards
from egom2p.generate.shards import list_data_shards


def _write_rgb(path, keys, seed=0):
    rng = np.random.default_rng(seed)
    write_tar(path, [(f"{key}.npz", encode_tokens(rng.integers(0, 256, (2, 4, 4)))) for key in keys])


@pytest.fixture
def pattern(tmp_path):
    for shard in range(2):
        _write_rgb(tmp_path / "in" / "rgb" / "val" / f"shard-{shard:06d}.tar", [f"s{shard}-{i}" for i in range(3)], shard)
    return str(tmp_path / "in") + "/[rgb]/val/shard-{000000..000001}.tar"


def _manifest(**settings):
    return build_manifest({"task": "rgb2cam", "temperature": 0.01, **settings}, {"checkpoint": {"sha256": "a"}},
                          ["cam/val/shard-0.tar"], "cpu")


def test_first_difference_names_the_setting_and_both_values():
    old = _manifest()
    assert first_difference(old, _manifest()) is None
    assert first_difference(old, _manifest(temperature=0.5)) == ("temperature", 0.01, 0.5)
    assert first_difference(old, _manifest(seed=3)) == ("seed", None, 3)
    other_weights = {**old, "sources": {"checkpoint": {"sha256": "b", "path": "/elsewhere"}}}
    assert first_difference(old, other_weights) == ("checkpoint sha256", "a", "b")
    moved = {**old, "sources": {"checkpoint": {"sha256": "a", "path": "/moved"}}, "outputs": [], "written_by": {}}
    assert first_difference(old, moved) is None  # the same weights elsewhere, another version: the same run


def test_claim_root_resumes_refuses_moves_or_overwrites(tmp_path):
    root, old = tmp_path / "preds", _manifest()
    claim = claim_root(root, "rgb2cam", old)
    assert claim.root == root and not manifest_path(root, "rgb2cam").exists()  # nothing written before commit
    claim.commit()
    assert json.loads(manifest_path(root, "rgb2cam").read_text()) == old
    assert claim_root(root, "rgb2cam", old).manifest is None  # the same run: resume, nothing to write
    assert claim_root(root, "rgb2depth", _manifest(task="rgb2depth")).root == root  # another task's manifest
    new = _manifest(temperature=0.5)
    with pytest.raises(ValueError, match=r"made with temperature 0\.01, this run has 0\.5 .*--new-root"):
        claim_root(root, "rgb2cam", new)
    moved = claim_root(root, "rgb2cam", new, new_root=True)
    assert moved.root == tmp_path / "preds-2"
    moved.commit()
    assert claim_root(root, "rgb2cam", new, new_root=True).root == tmp_path / "preds-2"  # reruns resume there
    assert claim_root(root, "rgb2cam", _manifest(temperature=0.7), new_root=True).root == tmp_path / "preds-3"
    # --overwrite deletes the old run's outputs (only those inside the root) before writing the new manifest
    shard = root / "cam" / "val" / "shard-0.tar"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"old")
    outside = tmp_path / "keep.tar"
    outside.write_bytes(b"not ours")
    manifest_path(root, "rgb2cam").write_text(json.dumps({**old, "outputs": [*old["outputs"], "../keep.tar"]}))
    claim = claim_root(root, "rgb2cam", new, overwrite=True)
    assert shard.exists()
    claim.commit()
    assert not shard.exists() and outside.exists()
    assert json.loads(manifest_path(root, "rgb2cam").read_text())["settings"]["temperature"] == 0.5
    with pytest.raises(ValueError, match="not both"):
        claim_root(root, "rgb2cam", new, overwrite=True, new_root=True)


def test_claim_root_refuses_outputs_of_unknown_origin_and_an_unreadable_manifest(tmp_path):
    root, manifest = tmp_path / "preds", _manifest()
    (root / "cam" / "val").mkdir(parents=True)
    (root / "cam" / "val" / "shard-0.tar").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"shard-0.tar: an output shard of unknown origin"):
        claim_root(root, "rgb2cam", manifest)
    assert claim_root(root, "rgb2cam", manifest, new_root=True).root == tmp_path / "preds-2"
    manifest_path(root, "rgb2cam").write_text("{truncated")
    with pytest.raises(ValueError, match=r"egom2p-batch-rgb2cam.json: unreadable \(JSONDecodeError\)"):
        claim_root(root, "rgb2cam", manifest)
    assert claim_root(root, "rgb2cam", manifest, overwrite=True).stale == [root / "cam" / "val" / "shard-0.tar"]


def test_source_identity_is_the_resolved_path_and_the_weights_digest(checkpoint, tmp_path):
    identity = source_identity(str(checkpoint))
    assert identity["path"] == str(checkpoint.resolve()) and len(identity["sha256"]) == 64
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("model.safetensors", "config.json"):
        (copy / name).write_bytes((checkpoint / name).read_bytes())
    assert source_identity(copy)["sha256"] == identity["sha256"]
    with open(copy / "model.safetensors", "r+b") as f:  # one byte of the weights differs
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    assert source_identity(copy)["sha256"] != identity["sha256"]


def test_a_rerun_verifies_finished_shards_and_redoes_damaged_ones(tiny_model, pattern, tmp_path):
    out = tmp_path / "preds"
    assert generate_shards(tiny_model, pattern, "rgb2depth", out, batch_size=2)["written"] == 2
    first, second = out / "depth" / "val" / "shard-000000.tar", out / "depth" / "val" / "shard-000001.tar"
    good = first.read_bytes(), second.read_bytes()
    first.write_bytes(good[0][:700])  # cut inside its first member: the disk filled, a copy was cut
    write_tar(second, [(f"{key}.{ext}", data) for key, ext, data in read_tar_members(str(second))[:2]])  # one lost
    with pytest.warns(UserWarning) as caught:
        summary = generate_shards(tiny_model, pattern, "rgb2depth", out, batch_size=2)
    assert (summary["written"], summary["redone"], summary["skipped"]) == (2, 2, 0)
    messages = sorted(str(w.message) for w in caught)
    assert "shard-000000.tar: not a finished shard (cannot read shard" in messages[0]
    assert "shard-000001.tar: not a finished shard" in messages[1] and "holds 2 members" in messages[1]
    assert (first.read_bytes(), second.read_bytes()) == good  # the same bytes as the first run
    summary = generate_shards(tiny_model, pattern, "rgb2depth", out, batch_size=2)
    assert (summary["written"], summary["skipped"], summary["redone"]) == (0, 2, 0)


def test_shards_in_different_folders_keep_their_folders(tiny_model, tmp_path):
    for folder in ("a", "b"):  # the same file name in two folders, different samples
        _write_rgb(tmp_path / "in" / folder / "rgb" / "val" / "shard-000000.tar", ["k0", "k1"], seed=ord(folder))
    pattern = str(tmp_path / "in") + "/{a,b}/[rgb]/val/shard-000000.tar"
    shards = list_data_shards(pattern, ["rgb", "cam"])
    assert [s.output_path("o", "cam") for s in shards] == ["o/a/cam/val/shard-000000.tar", "o/b/cam/val/shard-000000.tar"]
    out = tmp_path / "preds"
    assert generate_shards(tiny_model, pattern, "rgb2cam", out)["written"] == 2
    a, b = (read_tar_members(str(out / f / "cam" / "val" / "shard-000000.tar")) for f in ("a", "b"))
    assert [m[0] for m in a] == [m[0] for m in b] == ["k0", "k1"] and a != b  # both kept, each its own samples
    # members in different folders of one tar share a key (core's key is the base name): refused, never merged
    write_tar(tmp_path / "dup" / "rgb" / "shard.tar", [("x/k.npz", encode_tokens(np.zeros((2, 4, 4), np.int64))),
                                                       ("y/k.npz", encode_tokens(np.ones((2, 4, 4), np.int64)))])
    with pytest.raises(ShardError, match="members x/k.npz and y/k.npz have the same sample key 'k'"):
        generate_shards(tiny_model, str(tmp_path / "dup") + "/[rgb]/shard.tar", "rgb2cam", tmp_path / "dup-preds")
    assert not (tmp_path / "dup-preds").exists()


def test_outputs_that_would_leave_the_root_are_refused(tiny_model, tmp_path):
    for folder in ("in/a", "b"):
        _write_rgb(tmp_path / folder / "rgb" / "val" / "shard-0.tar", ["k0"])
    escaping = str(tmp_path / "in") + "/{a,../b}/[rgb]/val/shard-0.tar"
    with pytest.raises(ValueError, match=r"would leave the output root .*'\.\.' in the shard's path"):
        generate_shards(tiny_model, escaping, "rgb2cam", tmp_path / "preds")
    with pytest.raises(ValueError, match=r"would leave the output root"):
        generate_shards(tiny_model, str(tmp_path / "in/a") + "/[rgb]/../../../b/rgb/val/shard-0.tar", "rgb2cam",
                        tmp_path / "preds")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "preds").mkdir()
    (tmp_path / "preds" / "cam").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match=r"a symbolic link on the way leads outside the output root"):
        generate_shards(tiny_model, str(tmp_path / "b") + "/[rgb]/val/shard-0.tar", "rgb2cam", tmp_path / "preds")
    assert not list((tmp_path / "elsewhere").iterdir()) and not list((tmp_path / "preds").glob("*.json"))


def test_cli_refuses_other_settings_and_new_root_prints_where_it_writes(checkpoint, pattern, tmp_path, capsys):
    argv = ["--checkpoint", str(checkpoint), "--device", "cpu", "--data", pattern, "--task", "rgb2cam",
            "--out", str(tmp_path / "preds")]
    assert generate_main(argv) == 0
    manifest = json.loads(manifest_path(tmp_path / "preds", "rgb2cam").read_text())
    assert manifest["sources"]["checkpoint"] == source_identity(str(checkpoint))
    assert manifest["settings"]["data"] == pattern and manifest["settings"]["temperature"] == 0.01
    assert manifest["outputs"] == ["cam/val/shard-000000.tar", "cam/val/shard-000001.tar"]
    capsys.readouterr()
    assert generate_main([*argv, "--seed", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "made with seed 0, this run has 7" in err
    assert generate_main([*argv, "--seed", "7", "--new-root"]) == 0
    out = capsys.readouterr().out
    assert f"writing to {tmp_path / 'preds-2'}" in out and f"6 samples in 2 new shards under {tmp_path / 'preds-2'}" in out
    assert generate_main([*argv, "--seed", "7", "--overwrite", "--new-root"]) == 2
    assert "not both" in capsys.readouterr().err

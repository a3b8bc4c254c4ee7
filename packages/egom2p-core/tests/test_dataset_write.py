"""The one rule of dataset writes (egom2p.core.dataset_write): refuse, overwrite atomically, append; a crash at any
point is finished or undone by the next write, never leaving old and new shards side by side."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from egom2p.core.dataset_write import begin_write, existing_shards, recover_writes, shard_name
from egom2p.core.shards import encode_tokens, write_tar


def _write(root: Path, folders: list[str], keys_per_shard: list[list[str]], mode: str = "new", value: int = 0,
           subdir: str | None = None) -> None:
    """One committed write of ``folders``: shard i holds ``keys_per_shard[i]``, every token ``value``."""
    write = begin_write(root, "ds", folders, mode=mode, subdir=subdir)
    _stage(write, keys_per_shard, value)
    write.commit()


def _stage(write, keys_per_shard: list[list[str]], value: int) -> None:
    for folder in write.folders:
        for i, keys in enumerate(keys_per_shard):
            members = [(f"{key}.npz", encode_tokens(np.full(3, value, np.int64))) for key in keys]
            write_tar(write.staging(folder) / shard_name(write.first_index + i), members)


def _dataset(root: Path, folder: str, subdir: str | None = None) -> dict[str, tuple[list[str], set[int]]]:
    """shard name -> (member keys, token values) of ``root/folder/ds[/subdir]``."""
    found = {}
    for shard in existing_shards(root / folder / "ds" / (subdir or "")):
        with tarfile.open(shard) as tar:
            names = [m.name for m in tar.getmembers()]
            values = {int(np.load(tar.extractfile(m))["arr_0"][0]) for m in tar.getmembers()}
        found[shard.name] = ([n.split(".")[0] for n in names], values)
    return found


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


OLD = [["a", "b"], ["c", "d"], ["e"]]
NEW = [["x", "y"]]


def test_new_write_lands_whole_and_a_second_one_is_refused(tmp_path):
    _write(tmp_path, ["rgb", "cam"], OLD)
    assert _listing(tmp_path) == ["cam", *(f"cam/ds{s}" for s in ["", *(f"/{shard_name(i)}" for i in range(3))]),
                                  "rgb", *(f"rgb/ds{s}" for s in ["", *(f"/{shard_name(i)}" for i in range(3))])]
    for folder in ("rgb", "cam"):
        with pytest.raises(ValueError) as info:
            begin_write(tmp_path, "ds", [folder])
        assert str(info.value) == (f"{tmp_path / folder / 'ds'} already holds 3 shard file(s); pass --overwrite to "
                                   "replace them, --append to add to them, or choose another --dataset or --out")
    # Another modality folder of the same dataset (another tool's) is a new write.
    _write(tmp_path, ["gaze"], OLD)
    assert _dataset(tmp_path, "gaze") == _dataset(tmp_path, "rgb")


def test_overwrite_replaces_the_written_folders_and_removes_stale_shards(tmp_path):
    _write(tmp_path, ["rgb", "cam", "depth"], OLD, value=1)
    depth = _dataset(tmp_path, "depth")
    _write(tmp_path, ["rgb", "cam"], NEW, mode="overwrite", value=2)
    for folder in ("rgb", "cam"):
        assert _dataset(tmp_path, folder) == {shard_name(0): (["x", "y"], {2})}
    assert _dataset(tmp_path, "depth") == depth  # a folder the write does not name is left as it is
    assert not [p for p in tmp_path.rglob(".*")]  # nothing staged, swapped out or journaled is left


def test_overwrite_refuses_what_is_not_a_shard(tmp_path):
    _write(tmp_path, ["rgb"], OLD)
    (tmp_path / "rgb/ds/notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=f"--overwrite: {tmp_path / 'rgb/ds/notes.txt'} is not a shard file of "):
        begin_write(tmp_path, "ds", ["rgb"], mode="overwrite")
    assert begin_write(tmp_path, "ds", ["rgb"], mode="overwrite", own_files=["notes.txt"]).first_index == 0


def test_append_continues_the_numbering(tmp_path):
    _write(tmp_path, ["rgb", "cam"], OLD, subdir="token")
    write = begin_write(tmp_path, "ds", ["cam", "rgb"], mode="append", subdir="token")
    assert write.first_index == 3
    assert set(write.existing_keys()) == {"a", "b", "c", "d", "e"}
    assert write.existing_keys()["c"] == tmp_path / "cam/ds/token" / shard_name(1)  # the first folder by name
    _stage(write, NEW, 2)
    write.commit()
    for folder in ("rgb", "cam"):
        assert list(_dataset(tmp_path, folder, "token")) == [shard_name(i) for i in range(4)]
        assert _dataset(tmp_path, folder, "token")[shard_name(3)] == (["x", "y"], {2})
    # Appending to some folders only would leave the others' partners missing.
    with pytest.raises(ValueError, match=f"--append: {tmp_path / 'rgb/ds/token'} holds shards of ds that this write"):
        begin_write(tmp_path, "ds", ["cam"], mode="append", subdir="token")
    # Appending to a dataset that does not exist yet starts at 0.
    assert begin_write(tmp_path, "other", ["cam"], mode="append").first_index == 0


def test_a_failed_write_leaves_the_dataset_as_it_was(tmp_path):
    _write(tmp_path, ["rgb", "cam"], OLD, value=1)
    before = {f: _dataset(tmp_path, f) for f in ("rgb", "cam")}
    write = begin_write(tmp_path, "ds", ["rgb", "cam"], mode="overwrite")
    _stage(write, NEW, 2)  # ... and the process dies before commit
    assert {f: _dataset(tmp_path, f) for f in ("rgb", "cam")} == before
    with pytest.warns(UserWarning, match="the staged shards of an unfinished write") as warned:
        begin_write(tmp_path, "ds", ["rgb", "cam"], mode="overwrite")
    assert len(warned) == 2 and not [p for p in tmp_path.rglob(".*")]
    # An exception the writer sees: abort removes what was staged.
    write = begin_write(tmp_path, "ds", ["rgb", "cam"], mode="append")
    _stage(write, NEW, 2)
    write.abort()
    assert {f: _dataset(tmp_path, f) for f in ("rgb", "cam")} == before and not [p for p in tmp_path.rglob(".*")]


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_a_crash_during_commit_is_finished_by_the_next_write_never_mixed(tmp_path, monkeypatch, mode):
    """Crash at every rename of the commit: until the next write, each folder shows its old shards or its new ones or
    is missing (never old and new side by side); the next write of the dataset finishes the commit."""
    folders = ["rgb", "cam", "depth"]
    rename = os.rename
    crash_points = 0
    while True:
        root = tmp_path / f"crash{crash_points}"
        _write(root, folders, OLD, value=1)
        old = _dataset(root, "rgb")
        write = begin_write(root, "ds", folders, mode=mode)
        _stage(write, NEW, 2)
        calls = []

        def crash(src, dst, calls=calls, limit=crash_points):
            if len(calls) == limit:
                raise OSError("killed")
            calls.append(src)
            rename(src, dst)

        monkeypatch.setattr(os, "rename", crash)
        try:
            write.commit()
            finished = True
        except OSError:
            finished = False
        monkeypatch.setattr(os, "rename", rename)
        states = [_dataset(root, f) for f in folders]
        if mode == "overwrite":
            new = {shard_name(0): (["x", "y"], {2})}
            assert all(state in (old, new, {}) for state in states) and not (old in states and new in states)
        else:  # shard files move one by one: the last index may lack partners until the next write finishes it
            new = {**old, shard_name(3): (["x", "y"], {2})}
            assert all(state in (old, new) for state in states)
        if finished:
            break
        with pytest.warns(UserWarning, match=f"finished moving in the shards of an interrupted write of ds \\({mode}: "
                          "cam, depth, rgb\\)"):
            recover_writes(root, "ds", ["cam"])
        assert all(_dataset(root, f) == new for f in folders) and not [p for p in root.rglob(".*")]
        crash_points += 1
    assert crash_points == (6 if mode == "overwrite" else 3)  # every rename of the commit was a crash point

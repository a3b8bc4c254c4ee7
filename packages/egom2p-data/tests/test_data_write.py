"""``egom2p-data write`` (issue 16): no sample lost or mispaired, nothing written outside ``--out``."""

from __future__ import annotations

import numpy as np
import pytest
from egom2p.core.pairing import read_shard
from egom2p.data.cli import main
from egom2p.data.shards import dataset_pattern, write_shards
from egom2p.data.sources import read_from_dir


def tokens_dir(root, files):
    """``root/<folder>/<name>`` token files; ``files`` maps ``folder/name`` to a fill value."""
    for rel, value in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".npz"):
            np.savez_compressed(path, np.full(4, value, dtype=np.int32))
        else:
            np.save(path, np.full(4, value, dtype=np.int32))
    return root


def write(src, out, *extra):
    return main(["write", "--from-dir", str(src), "--out", str(out), "--dataset", "ds", *extra])


def test_keys_are_names_without_the_final_extension(tmp_path, capsys):
    src = tokens_dir(tmp_path / "t", {"rgb/clip-1.npy": 1, "rgb/clip_2.npz": 2, "cam/clip-1.npy": 3, "cam/clip_2.npz": 4})
    keys, files = read_from_dir(str(src))
    assert keys == ["clip-1", "clip_2"] and sorted(files) == ["cam", "rgb"]
    assert write(src, tmp_path / "out") == 0
    samples = read_shard(capsys.readouterr().out.strip())
    assert [(k, sorted(raw)) for k, raw in samples] == [("clip-1", ["cam", "rgb"]), ("clip_2", ["cam", "rgb"])]


@pytest.mark.parametrize("files, message", [
    # clip.v1 / clip.v2 used to collapse into one sample "clip": a dotted key is refused, naming the file
    ({"rgb/clip.v1.npy": 1, "rgb/clip.v2.npy": 2}, "rgb/clip.v1.npy: sample key 'clip.v1' contains a dot"),
    ({"rgb/a.npy": 1, "rgb/a.npz": 2}, "two files for sample key 'a': a.npy and a.npz"),
    ({"rgb/other.npy": 1, "cam/other.npz": 2}, "sample key 'other' is stored in mixed formats: cam/other.npz, rgb/other.npy"),
    ({"rgb/a.npy": 1, "cam/b.npy": 2}, "hold different sample keys"),
])
def test_samples_are_never_lost_or_mispaired(tmp_path, capsys, files, message):
    src = tokens_dir(tmp_path / "t", files)
    assert write(src, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "../../x"], "dataset '../../x' must be a plain name"),
    (["--dataset", "ds", "--subdir", "../../x"], "subdir '../../x' must be a plain name"),
    (["--dataset", "ds", "--subdir", "/abs"], "subdir '/abs' must be a plain name"),
    (["--dataset", "a/b"], "dataset 'a/b' must be a plain name"),
])
def test_every_path_stays_inside_out(tmp_path, capsys, argv, message):
    np.save(tmp_path / "cam.npy", np.zeros((2, 4), dtype=np.int64))
    out = tmp_path / "deep/er/out"
    assert main(["write", "--stacked", f"cam={tmp_path / 'cam.npy'}", "--out", str(out), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not any(p.suffix == ".tar" for p in tmp_path.rglob("*"))


def test_stacked_folder_names_stay_inside_out(tmp_path, capsys):
    np.save(tmp_path / "cam.npy", np.zeros((2, 4), dtype=np.int64))
    for folder in ("../x", "..", "a,b", "[a]"):
        assert main(["write", "--stacked", f"{folder}={tmp_path / 'cam.npy'}", "--out", str(tmp_path / "o"), "--dataset", "d"]) == 2
        assert f"folder {folder!r} must be a plain name" in capsys.readouterr().err
    assert not any(p.suffix == ".tar" for p in tmp_path.rglob("*"))
    # The library refuses the same names.
    with pytest.raises(ValueError, match="folder '../x'"):
        write_shards(tmp_path / "o", "d", {"../x": np.zeros((1, 4), dtype=np.int64)})


def test_nested_subdir_and_ignored_files(tmp_path, capsys):
    src = tokens_dir(tmp_path / "t", {"cam/a.npy": 1})
    (src / "cam/notes.txt").write_text("not tokens")
    assert write(src, tmp_path / "out", "--subdir", "token/v1") == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"{tmp_path}/out/[cam]/ds/token/v1/shard-000000.tar"
    assert "egom2p-data: warning:" in captured.err and "ignored 1 entries" in captured.err and "notes.txt" in captured.err


def test_dataset_pattern_pairs_folders(tmp_path):
    write_shards(tmp_path, "ds", {"rgb": np.zeros((5, 4), dtype=np.int64), "cam": np.zeros((5, 2), dtype=np.int64)},
                 samples_per_shard=2)
    pattern = dataset_pattern(tmp_path, "ds")
    assert pattern == f"{tmp_path}/[cam,rgb]/ds/{{shard-000000.tar,shard-000001.tar,shard-000002.tar}}"
    assert dataset_pattern(tmp_path, "ds", ["rgb"]) == f"{tmp_path}/[rgb]/ds/{{shard-000000.tar,shard-000001.tar,shard-000002.tar}}"
    with pytest.raises(FileNotFoundError, match="no tar shards under"):
        dataset_pattern(tmp_path, "other")
    # tars nested below the dataset folder (the released layout's token/), found as the loader finds them
    write_shards(tmp_path, "nested", {"cam": np.zeros((1, 2), dtype=np.int64)}, subdir="token")
    assert dataset_pattern(tmp_path, "nested") == f"{tmp_path}/[cam]/nested/token/shard-000000.tar"

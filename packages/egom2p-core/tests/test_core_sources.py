"""One resolver of data sources (issue 26): a shard pattern (``data_path``) or a root folder (``data_root``) becomes
the dataset's shard URLs, and each way of getting it wrong is one line naming the source."""

from __future__ import annotations

import subprocess
import sys

import pytest
from egom2p.core import s3
from egom2p.core.errors import ShardError, SourceError
from egom2p.core.shards import write_tar
from egom2p.core.sources import is_shard_pattern, resolve_source


def tars(root, dataset, folders, names):
    for folder in folders:
        for name in names:
            write_tar(root / folder / dataset / name, [("k.npy", b"x")])


@pytest.mark.parametrize("text, expected", [
    ("s3://b/[rgb,depth]/ds/shard-{000000..000040}.tar", True), ("x.tar", True),
    ("root/[cam,rgb]/ds/{shard-000000.tar,shard-000001.tar}", True), ("s3://bucket/val", False), ("data/val/", False),
    ("root/[cam]/ds/{shard-0.tar,notes.txt}", False), ("", False),
])
def test_a_pattern_is_a_text_whose_every_name_is_a_tar(text, expected):
    assert is_shard_pattern(text) is expected


def test_a_pattern_expands_and_an_s3_pattern_stays_lazy(monkeypatch):
    def no_network(*_args, **_kwargs):
        raise AssertionError("resolving a pattern must not touch S3")

    monkeypatch.setattr(s3, "s3_client", no_network)
    monkeypatch.setattr(s3, "list_s3", no_network)
    assert resolve_source(data_path="s3://b/[rgb,cam]/ds/shard-{000000..000002}.tar") == [
        f"s3://b/[rgb,cam]/ds/shard-00000{i}.tar" for i in range(3)]


def test_a_folder_given_as_data_path_is_one_line_pointing_to_data_root(tmp_path):
    with pytest.raises(SourceError) as err:
        resolve_source(data_path=str(tmp_path))
    message = str(err.value)
    assert "\n" not in message and f"'{tmp_path}' is not a shard pattern" in message and "goes in data_root" in message


def test_exactly_one_source():
    with pytest.raises(SourceError, match="exactly one of data_path .* and data_root .*, got both"):
        resolve_source(data_path="x.tar", data_root="/r", dataset="d")
    with pytest.raises(SourceError, match="got neither"):
        resolve_source()


def test_a_root_gives_the_shards_of_the_equivalent_pattern(tmp_path):
    tars(tmp_path, "ds", ["rgb", "cam"], ["token/shard-000000.tar", "token/shard-000001.tar"])
    tars(tmp_path, "other", ["rgb"], ["shard-000000.tar"])
    pattern = f"{tmp_path}/[cam,rgb]/ds/token/shard-{{000000..000001}}.tar"
    assert resolve_source(data_root=str(tmp_path), dataset="ds") == resolve_source(data_path=pattern)
    # The folders asked for, in the order given; a folder without the dataset's tars is left out.
    assert resolve_source(data_root=f"{tmp_path}/", dataset="ds", folders=["rgb", "depth"]) == [
        f"{tmp_path}/[rgb]/ds/token/shard-00000{i}.tar" for i in range(2)]


def test_an_s3_root_lists_the_folders_it_is_given(monkeypatch):
    listed = []

    def list_s3(prefix):
        listed.append(prefix)
        return [f"{prefix}token/shard-000000.tar", f"{prefix}token/notes.txt"] if "/rgb/" in prefix else []

    monkeypatch.setattr(s3, "list_s3", list_s3)
    assert resolve_source(data_root="s3://b/val", dataset="ds", folders=["rgb", "cam"]) == [
        "s3://b/val/[rgb]/ds/token/shard-000000.tar"]
    assert listed == ["s3://b/val/rgb/ds/", "s3://b/val/cam/ds/"]
    with pytest.raises(FileNotFoundError, match=r"^no tar shards under s3://b/val/<cam>/ds/$"):
        resolve_source(data_root="s3://b/val", dataset="ds", folders=["cam"])
    with pytest.raises(SourceError, match="name the modality folders of an s3:// data root"):
        resolve_source(data_root="s3://b/val", dataset="ds")


def test_root_mistakes_are_one_line_each(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"^data root {tmp_path}/nope is not a folder$"):
        resolve_source(data_root=str(tmp_path / "nope"), dataset="ds")
    with pytest.raises(SourceError, match="also give the dataset name"):
        resolve_source(data_root=str(tmp_path))
    (tmp_path / "rgb" / "files").mkdir(parents=True)  # the original's per-sample layout: no tars
    with pytest.raises(SourceError, match="dataset 'files' is stored as per-sample files, not tar shards"):
        resolve_source(data_root=str(tmp_path), dataset="files", folders=["rgb"])
    assert resolve_source(data_root=str(tmp_path), dataset="files", folders=["rgb"], files=True) == []
    with pytest.raises(FileNotFoundError, match=rf"^no tar shards under {tmp_path}/<folder>/gone/$"):
        resolve_source(data_root=str(tmp_path), dataset="gone")
    with pytest.raises(FileNotFoundError, match=rf"^no token folders {tmp_path}/<rgb\|cam>/gone/$"):
        resolve_source(data_root=str(tmp_path), dataset="gone", folders=["rgb", "cam"], files=True)


def test_strict_folders_must_hold_the_same_shards(tmp_path):
    tars(tmp_path, "ds", ["rgb"], ["shard-000000.tar", "shard-000001.tar"])
    tars(tmp_path, "ds", ["cam"], ["shard-000000.tar"])
    assert len(resolve_source(data_root=str(tmp_path), dataset="ds")) == 2  # union: the gap reads as missing
    with pytest.raises(ShardError, match="hold different shards: only cam holds"):
        resolve_source(data_root=str(tmp_path), dataset="ds", policy="strict")


def test_import_needs_no_torch_webdataset_or_boto3():
    code = ("import sys\n"
            "for name in ('torch', 'webdataset', 'boto3'): sys.modules[name] = None\n"
            "import egom2p.core.sources")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

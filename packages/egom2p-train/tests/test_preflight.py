"""Start-up checks: a dataset whose shards are missing fails in one line naming it, its pattern and the fix."""

import pytest
from egom2p.core.shards import write_tar
from egom2p.train.config import ConfigError
from egom2p.train.preflight import check_data_sources, check_dataset_source


class Entry:
    def __init__(self, data_path):
        self.data_path = data_path


def test_present_shards_pass(tmp_path):
    for folder in ("rgb", "cam"):
        (tmp_path / folder).mkdir()
        write_tar(tmp_path / folder / "shard-000000.tar", [("a.npy", b"x")])
    pattern = str(tmp_path / "[rgb,cam]" / "shard-{000000..000003}.tar")
    assert check_dataset_source("data.train.datasets.d.data_path", pattern) is None
    check_data_sources({"d": Entry(pattern)}, {"v": Entry(str(tmp_path))})  # a folder layout for val


def test_missing_shard_names_dataset_pattern_and_fix(tmp_path):
    (tmp_path / "rgb").mkdir()
    write_tar(tmp_path / "rgb" / "shard-000000.tar", [("a.npy", b"x")])
    pattern = str(tmp_path / "[rgb,cam]" / "shard-{000000..000001}.tar")
    with pytest.raises(ConfigError) as err:
        check_data_sources({"ok": Entry(str(tmp_path / "rgb" / "shard-000000.tar")), "broken": Entry(pattern)}, {})
    message = str(err.value)
    assert "\n" not in message and err.value.key == "data.train.datasets.broken.data_path"
    assert pattern in message and "cam/shard-000000.tar does not exist" in message and "egom2p-data synth" in message


def test_val_folder_layout_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="'data.val.datasets.v.data_path'.*no such directory"):
        check_data_sources({}, {"v": Entry(str(tmp_path / "nope"))})

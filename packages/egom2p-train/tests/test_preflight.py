"""Start-up checks: a dataset whose shards are missing fails in one line naming it, its source and the fix."""

import pytest
from egom2p.core.modalities import load_modality_specs
from egom2p.core.shards import write_tar
from egom2p.data.config import DatasetConfig
from egom2p.train.config import ConfigError
from egom2p.train.preflight import check_data_sources, check_dataset_source


def entry(data_path=None, data_root=None, name="d", domains=("tok_rgb",)):
    return DatasetConfig(name=name, in_domains=domains, out_domains=domains, num_input_tokens=1, num_target_tokens=1,
                         data_path=data_path, data_root=data_root)


def test_present_shards_pass(tmp_path):
    for folder in ("rgb", "cam"):
        (tmp_path / folder).mkdir()
        write_tar(tmp_path / folder / "shard-000000.tar", [("a.npy", b"x")])
    pattern = str(tmp_path / "[rgb,cam]" / "shard-{000000..000003}.tar")
    assert check_dataset_source("data.train.datasets.d.data_path", entry(pattern)) is None
    (tmp_path / "rgb" / "v").mkdir()
    check_data_sources({"d": entry(pattern)}, {"v": entry(data_root=str(tmp_path), name="v")})  # per-sample files


def test_missing_shard_names_dataset_pattern_and_fix(tmp_path):
    (tmp_path / "rgb").mkdir()
    write_tar(tmp_path / "rgb" / "shard-000000.tar", [("a.npy", b"x")])
    pattern = str(tmp_path / "[rgb,cam]" / "shard-{000000..000001}.tar")
    with pytest.raises(ConfigError) as err:
        check_data_sources({"ok": entry(str(tmp_path / "rgb" / "shard-000000.tar")), "broken": entry(pattern)}, {})
    message = str(err.value)
    assert "\n" not in message and err.value.key == "data.train.datasets.broken.data_path"
    assert pattern in message and "cam/shard-000000.tar does not exist" in message and "egom2p-data synth" in message


def test_val_folder_layout_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="'data.val.datasets.v.data_root'.*nope is not a folder; write the shards"):
        check_data_sources({}, {"v": entry(data_root=str(tmp_path / "nope"), name="v")})


def test_a_training_root_is_resolved_and_its_folders_checked_at_start(tmp_path):
    """A data_root resolves as the loader resolves it: the dataset's tars in the folders of its modalities."""
    specs = load_modality_specs({name: {"vocab_size": 8, "length": 2} for name in ("tok_rgb", "tok_cam", "tok_depth")})
    for folder in ("rgb", "cam"):
        write_tar(tmp_path / folder / "ds" / "shard-000000.tar", [("a.npy", b"x")])
    root = entry(data_root=str(tmp_path), name="ds", domains=("tok_rgb", "tok_cam"))
    assert check_dataset_source("data.train.datasets.ds.data_root", root, specs) is None
    # A root without the dataset's tars fails at start, in one line; training cannot read per-sample files.
    (tmp_path / "rgb" / "files").mkdir()
    with pytest.raises(ConfigError) as err:
        check_data_sources({"files": entry(data_root=str(tmp_path), name="files")}, {}, specs)
    assert err.value.key == "data.train.datasets.files.data_root" and "\n" not in str(err.value)
    assert "dataset 'files' is stored as per-sample files, not tar shards" in str(err.value)
    with pytest.raises(ConfigError, match=r"no tar shards under .*/<rgb>/gone/; write the shards"):
        check_data_sources({"gone": entry(data_root=str(tmp_path), name="gone")}, {}, specs)
    # The folders found must feed every modality of the dataset (depth has no folder here).
    with pytest.raises(ConfigError, match=r"no folder for tok_depth \(folder depth\)"):
        check_data_sources({"ds": entry(data_root=str(tmp_path), name="ds", domains=("tok_rgb", "tok_depth"))}, {}, specs)


def test_a_folder_given_as_data_path_fails_at_start_in_one_line(tmp_path):
    """Even past the data config's own check (an object built by hand), the start-up check refuses it."""
    with pytest.raises(ConfigError) as err:
        check_data_sources({"d": entry(str(tmp_path))}, {})
    assert err.value.key == "data.train.datasets.d.data_path" and "\n" not in str(err.value)
    assert "is not a shard pattern" in str(err.value) and "goes in data_root" in str(err.value)

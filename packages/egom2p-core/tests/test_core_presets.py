"""Named presets (egom2p.core.presets): an existing file wins, else a shipped preset by name, else one line with the
path tried and the known names. Run against an installed egom2p-core wheel (ci/isolation.sh), the by-name tests prove
the modality files ship inside it."""

from __future__ import annotations

import os

import pytest
from egom2p.core import presets
from egom2p.core.modalities import load_modality_specs
from egom2p.core.presets import preset_file, preset_names, resolve_preset

# The demo's modality set as its docs describe it: an independent reference for the shipped file.
TINY = {
    "tok_cam": {"vocab_size": 64, "length": 8, "folder": "cam"},
    "tok_depth": {"vocab_size": 64, "grid": [2, 4, 4], "folder": "depth"},
    "tok_gaze": {"vocab_size": 64, "length": 8, "folder": "gaze"},
    "tok_rgb": {"vocab_size": 64, "grid": [2, 4, 4], "folder": "rgb"},
}
ONE = '{"tok_x": {"vocab_size": 3, "length": 2}}'


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """An empty working directory: nothing of the checkout can be found from it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def specs_dict(source) -> dict:
    return {name: spec.to_dict() for name, spec in load_modality_specs(source).items()}


def test_the_modality_presets_ship_and_read_by_name(elsewhere):
    assert preset_names("modalities") == ["egom2p", "tiny", "tiny-hand"]
    assert specs_dict("tiny") == TINY
    assert specs_dict("tiny-hand") == {**TINY, "tok_hand": {"vocab_size": 64, "length": 15, "folder": "hand"}}
    found = resolve_preset("modalities", "tiny")
    assert found.preset == "tiny" and found.path == preset_file("modalities", "tiny") and os.path.isfile(found.path)
    assert found.path.endswith(os.path.join("egom2p", "core", "configs", "modalities", "tiny.yaml"))


def test_an_existing_file_wins_over_a_name(elsewhere):
    (elsewhere / "tiny").write_text(ONE)
    found = resolve_preset("modalities", "tiny")
    assert (found.path, found.preset) == ("tiny", None)
    assert list(load_modality_specs("tiny")) == ["tok_x"]


def test_a_folder_of_a_presets_name_does_not_hide_it(elsewhere):
    (elsewhere / "tiny").mkdir()
    assert resolve_preset("modalities", "tiny").preset == "tiny"
    assert specs_dict("tiny") == TINY
    (elsewhere / "mine").mkdir()  # a folder that is no preset is returned: the reader says it is a folder
    with pytest.raises(ValueError, match="mine is a folder, not a config file"):
        load_modality_specs("mine")


def test_a_relative_path_resolves_against_base_dir_and_keeps_its_project_root(tmp_path, elsewhere):
    project = tmp_path / "project"
    (project / "configs" / "modalities").mkdir(parents=True)
    (project / "configs" / "modalities" / "mine.yaml").write_text(ONE)
    found = resolve_preset("modalities", "configs/modalities/mine.yaml", project)
    assert found.path == str(project / "configs" / "modalities" / "mine.yaml")
    assert (found.base_dir, found.preset) == (str(project), None)  # the folder holding configs/


def test_a_presets_relative_paths_resolve_where_it_was_named(tmp_path, elsewhere):
    assert resolve_preset("modalities", "tiny").base_dir == str(elsewhere)  # on the command line: the working dir
    assert resolve_preset("modalities", "tiny", tmp_path / "proj").base_dir == str(tmp_path / "proj")  # in a file


def test_an_unknown_name_lists_the_known_ones_and_the_path_tried(tmp_path, elsewhere):
    with pytest.raises(FileNotFoundError) as err:
        load_modality_specs("tinyy")
    assert str(err.value) == "config file not found: tinyy, and the modalities presets are egom2p, tiny, tiny-hand"
    with pytest.raises(FileNotFoundError, match=f"config file not found: {tmp_path}/x.yaml, and the modalities presets"):
        resolve_preset("modalities", "x.yaml", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^no modalities preset 'x': the modalities presets are egom2p, tiny, "):
        preset_file("modalities", "x")


def test_a_kind_whose_package_is_missing_says_which_to_install(monkeypatch, elsewhere):
    monkeypatch.setitem(presets.PRESET_KINDS, "alphas", "egom2p_not_installed.data")
    assert preset_names("alphas") == []
    with pytest.raises(FileNotFoundError, match=r"^config file not found: mix, and the alphas presets ship with "
                                                r"egom2p_not_installed-data, which is not installed$"):
        resolve_preset("alphas", "mix")
    with pytest.raises(ValueError, match="unknown preset kind 'nope'"):
        preset_names("nope")


def test_a_dangling_symlink_is_left_to_the_reader(elsewhere):
    (elsewhere / "tiny").symlink_to(elsewhere / "gone.yaml")
    with pytest.raises(FileNotFoundError, match="tiny is a symlink to .*gone.yaml, which is missing"):
        load_modality_specs("tiny")


def test_a_path_through_a_file_is_left_to_the_reader(elsewhere):
    (elsewhere / "train.yaml").write_text("a: 1\n")
    with pytest.raises(ValueError, match="train.yaml is a file, not a folder"):
        load_modality_specs(str(elsewhere / "train.yaml" / "x.yaml"))

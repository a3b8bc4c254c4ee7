"""Enums, the relative-path rule, and the promise that importing egom2p.core needs no torch."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import pytest
from egom2p.core.enums import AttnBackend, LossType
from egom2p.core.paths import config_base_dir, resolve_path


def test_enums_are_their_strings_and_errors_list_the_choices():
    assert LossType("mod") is LossType.MOD and LossType.MOD == "mod" and str(LossType.MOD_PRESENT) == "mod_present"
    assert AttnBackend.values() == ("auto", "reference", "sdpa", "triton")
    with pytest.raises(ValueError, match=r"attn_backend: 'flash' is not one of \['auto', 'reference', 'sdpa', 'triton'\]"):
        AttnBackend.parse("flash", "attn_backend")


def test_relative_paths_resolve_against_the_project_root_of_the_config(tmp_path):
    nested = tmp_path / "proj" / "configs" / "train"
    nested.mkdir(parents=True)
    assert config_base_dir(nested / "x.yaml") == str(tmp_path / "proj")
    assert config_base_dir(tmp_path / "loose.yaml") == str(tmp_path)
    assert resolve_path("data/a.tar", tmp_path) == str(tmp_path / "data" / "a.tar")
    assert resolve_path("s3://b/k.tar", tmp_path) == "s3://b/k.tar"
    assert resolve_path("pipe:cat data/a.tar", tmp_path) == "pipe:cat data/a.tar"  # a shell source: run as given
    assert resolve_path("/abs/p", tmp_path) == "/abs/p"
    assert resolve_path("~/p", tmp_path) == os.path.expanduser("~/p")


def test_import_needs_no_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import egom2p.core, egom2p.core.shards, egom2p.core.modalities, egom2p.core.paths\n"
            "import egom2p.core.atomic, egom2p.core.checkpoint_layout, egom2p.core.hub\n"
            "print(egom2p.core.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # One version source: the wheel's metadata (hatch reads it from __init__.py) is the module's __version__.
    assert out.stdout.strip() == importlib.metadata.version("egom2p-core")

"""EgoM2P on the Hugging Face Hub, with no network: from_pretrained through a stand-in snapshot_download,
push_to_hub against a recording stand-in for HfApi (the upload folder and the model card), the model card, and
the install hint of egom2p-model's [hub] extra. Hub ids and the offline cache are tested in egom2p-core."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from egom2p.model import EgoM2P, model_card, push_to_hub, resolve_checkpoint
from model_helpers import tiny_config


def test_missing_hub_extra_is_a_one_line_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes `import huggingface_hub` fail
    with pytest.raises(FileNotFoundError, match=r"org/repo: no such file or directory .*pip install 'egom2p-model\[hub\]'"):
        resolve_checkpoint("org/repo")
    with pytest.raises(ImportError, match=r"pip install 'egom2p-model\[hub\]'"):
        push_to_hub(EgoM2P(tiny_config()), "org/repo")


def test_from_pretrained_reads_a_hub_id_through_core_hub(tmp_path, monkeypatch):
    """The hub path of from_pretrained (revision, dtype, eval mode); the cache lookup itself is egom2p-core's
    (test_core_checkpoints.py reads a hand-populated offline cache)."""
    model = EgoM2P(tiny_config())
    model.save_pretrained(tmp_path / "snapshot")
    calls = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, revision, allow_patterns))
        return str(tmp_path / "snapshot")

    monkeypatch.setitem(sys.modules, "huggingface_hub", SimpleNamespace(snapshot_download=snapshot_download))
    monkeypatch.chdir(tmp_path)
    loaded = EgoM2P.from_pretrained("org/tiny", dtype="bfloat16", revision="v1")
    assert not loaded.training and loaded.mask_token.dtype == torch.bfloat16
    assert torch.equal(loaded.mask_token, model.mask_token.to(torch.bfloat16))
    assert calls == [("org/tiny", "v1", ["model.safetensors", "config.json", "integrity.json", "README.md", "*.pth", "*.pt"])]


class RecordingHfApi:
    """Stands in for huggingface_hub.HfApi: records the calls and what the upload folder holds."""

    calls: list = []

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, private=None, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private, exist_ok))

    def upload_folder(self, repo_id, folder_path, revision=None, commit_message=None):
        folder = Path(folder_path)
        files = {p.name: p.read_bytes() for p in folder.iterdir()}
        self.calls.append(("upload_folder", repo_id, revision, commit_message, files))
        return type("CommitInfo", (), {"commit_url": f"https://example.invalid/{repo_id}/commit/1"})()


def test_push_to_hub_uploads_weights_config_and_card(monkeypatch, tmp_path):
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub, "HfApi", RecordingHfApi)
    RecordingHfApi.calls = []
    model = EgoM2P(tiny_config())
    url = push_to_hub(model, "my-org/egom2p-tiny", private=True, token="t0k")
    assert url.endswith("my-org/egom2p-tiny/commit/1")
    (_, token), (_, repo, private, exist_ok), (_, up_repo, revision, message, files) = RecordingHfApi.calls
    assert (token, repo, private, exist_ok, up_repo, revision) == ("t0k", "my-org/egom2p-tiny", True, True, "my-org/egom2p-tiny", None)
    assert sorted(files) == ["README.md", "config.json", "integrity.json", "model.safetensors"] and "EgoM2P" in message
    # what was uploaded opens like the model
    (tmp_path / "up").mkdir()
    for name, data in files.items():
        (tmp_path / "up" / name).write_bytes(data)
    assert torch.equal(EgoM2P.from_pretrained(tmp_path / "up").mask_token, model.mask_token)
    with pytest.raises(ValueError, match="not a Hub repository id"):
        push_to_hub(model, "not/a/repo")


def test_model_card_describes_the_model():
    model = EgoM2P(tiny_config())
    card = model_card(model, "my-org/egom2p-tiny")
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "egom2p" and meta["license"] == "apache-2.0" and "egom2p" in meta["tags"]
    params = sum(p.numel() for p in model.parameters())
    assert body.lstrip().startswith("# my-org/egom2p-tiny") and f"{params:,} parameters" in body
    assert 'EgoM2P.from_pretrained("my-org/egom2p-tiny"' in body
    assert "| `tok_rgb` | video grid 2x2x3 | 12 | 32 | `rgb` |" in body
    assert "| `tok_cam` | sequence of 6 | 6 | 16 | `cam` |" in body
    assert "Cosmos-0.1-Tokenizer-DV4x8x8" in body and "camera VQ-VAE" in body and "gaze VQ-VAE" in body

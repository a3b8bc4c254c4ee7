"""Hugging Face Hub checkpoints, with no network: a hand-populated cache read with HF_HUB_OFFLINE=1, and
push_to_hub against a recording stand-in for HfApi (the upload folder and the model card)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from egom2p.model import EgoM2P, model_card, push_to_hub, resolve_checkpoint
from egom2p.model.hub import is_hub_id
from model_helpers import tiny_config


def test_hub_ids_and_local_names():
    assert is_hub_id("org/repo") and is_hub_id("my-org/egom2p_base.v1")
    for local in ("runs", "./org/repo", "/abs/path", "a/b/c", "org/checkpoint-main.pth", "../x", "org/", "~/x"):
        assert not is_hub_id(local), local


def test_missing_hub_extra_is_a_one_line_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes `import huggingface_hub` fail
    with pytest.raises(FileNotFoundError, match=r"org/repo: no such file or directory .*pip install 'egom2p-model\[hub\]'"):
        resolve_checkpoint("org/repo")
    with pytest.raises(ImportError, match=r"pip install 'egom2p-model\[hub\]'"):
        push_to_hub(EgoM2P(tiny_config()), "org/repo")


def _cache_repo(hub_cache: Path, repo_id: str, files: dict[str, Path], refs: dict[str, str]) -> None:
    """The layout huggingface_hub keeps: models--org--name/{refs/<rev>, snapshots/<commit>/<file>}."""
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    for ref, commit in refs.items():
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        for name, source in files.items():
            (snapshot / name).write_bytes(source.read_bytes())


OFFLINE_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    from egom2p.model import EgoM2P
    out = {}
    model = EgoM2P.from_pretrained("org/tiny", dtype="bfloat16")
    out["training"], out["dtype"] = model.training, str(model.mask_token.dtype)
    out["mask_token"] = model.mask_token.float().flatten().tolist()
    out["tagged"] = EgoM2P.from_pretrained("org/tiny", revision="v1").mask_token.flatten().tolist()
    out["original"] = EgoM2P.from_pretrained("org/original", config=EgoM2P.from_pretrained("org/tiny").config).mask_token.flatten().tolist()
    try:
        EgoM2P.from_pretrained("org/none")
    except FileNotFoundError as err:
        out["missing"] = str(err)
    json.dump(out, sys.stdout)
""")


def test_from_pretrained_reads_a_hub_id_from_the_offline_cache(tmp_path):
    pytest.importorskip("huggingface_hub")
    model = EgoM2P(tiny_config())
    model.save_pretrained(tmp_path / "ours")
    other = EgoM2P(tiny_config())
    torch.save({"model": other.state_dict()}, tmp_path / "checkpoint-main.pth")
    hub_cache = tmp_path / "hf_home" / "hub"
    ours = {name: tmp_path / "ours" / name for name in ("model.safetensors", "config.json")}
    _cache_repo(hub_cache, "org/tiny", ours, {"main": "a" * 40})
    tagged = EgoM2P(tiny_config())
    tagged.save_pretrained(tmp_path / "tagged")
    _cache_repo(hub_cache, "org/tiny", {n: tmp_path / "tagged" / n for n in ours}, {"v1": "b" * 40})
    _cache_repo(hub_cache, "org/original", {"checkpoint-main.pth": tmp_path / "checkpoint-main.pth"}, {"main": "c" * 40})
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["training"] is False and out["dtype"] == "torch.bfloat16"
    torch.testing.assert_close(torch.tensor(out["mask_token"]), model.mask_token.to(torch.bfloat16).float().flatten())
    assert out["tagged"] == tagged.mask_token.flatten().tolist()
    assert out["original"] == other.mask_token.flatten().tolist()
    assert "org/none: not a local path, and not available from the Hugging Face Hub" in out["missing"]
    assert "\n" not in out["missing"]


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
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"] and "EgoM2P" in message
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

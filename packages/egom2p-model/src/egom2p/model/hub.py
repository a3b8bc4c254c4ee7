"""Hugging Face Hub checkpoints (the optional ``[hub]`` extra): hub ids, the local cache, uploads, model cards.

``EgoM2P.from_pretrained("org/repo")`` finds a repository through ``huggingface_hub.snapshot_download``:
with ``HF_HUB_OFFLINE=1`` only the local cache (``HF_HOME`` / ``HF_HUB_CACHE``) is read, so a populated
cache works without a network. A repository holds our files (``model.safetensors`` + ``config.json``,
what :func:`push_to_hub` uploads, with a generated ``README.md`` model card) or one original ``.pth``.
Nothing here runs unless a hub id or an upload is asked for; ``huggingface_hub`` is imported then.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from egom2p.core.cli import MissingExtraError, one_line
from torch import nn

from .checkpoint import CONFIG_NAME, ORIGINAL_SUFFIXES, WEIGHTS_NAME, save_pretrained
from .presets import PRESETS

__all__ = [
    "CARD_NAME", "download_checkpoint", "is_hub_id", "model_card", "prepare_hub_folder", "push_to_hub", "require_hub",
    "upload_folder",
]

CARD_NAME = "README.md"
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_DOWNLOAD = [WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, *(f"*{suffix}" for suffix in ORIGINAL_SUFFIXES)]
INSTALL_HINT = "pip install 'egom2p-model[hub]'"

# What a user needs to turn video and trajectories into the released modalities' tokens (SPEC 9).
TOKENIZERS = {
    "tok_rgb": "NVIDIA Cosmos-0.1-Tokenizer-DV4x8x8 (16 frames at 8 fps, 256x256 -> 5x32x32 tokens)",
    "tok_depth": "NVIDIA Cosmos-0.1-Tokenizer-DV4x8x8 on per-clip min-max normalised depth as 3-channel gray video",
    "tok_cam": "the EgoM2P camera VQ-VAE (checkpoint-cam.pth; 60 camera-to-world poses -> 30 tokens)",
    "tok_gaze": "the EgoM2P gaze VQ-VAE (checkpoint-gaze.pth; 60 gaze points -> 30 tokens)",
}


def is_hub_id(text: str) -> bool:
    """Whether ``text`` has the shape of a Hub repository id ``org/repo`` (and not of a local file name)."""
    return bool(_HUB_ID.fullmatch(text)) and ".." not in text and not text.endswith(ORIGINAL_SUFFIXES)


def require_hub() -> Any:
    """The ``huggingface_hub`` module, or :class:`MissingExtraError` saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise MissingExtraError(f"Hugging Face Hub checkpoints need huggingface-hub: {INSTALL_HINT}") from None
    return huggingface_hub


def download_checkpoint(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot folder of Hub repository ``repo_id`` (downloaded, or from the cache).

    Fetches only checkpoint files (ours, the model card, original ``.pth``). Raises
    ``FileNotFoundError`` naming the repository when it is neither cached nor reachable.
    """
    hub = require_hub()
    try:
        folder = hub.snapshot_download(repo_id, revision=revision, allow_patterns=_DOWNLOAD)
    except (OSError, ValueError) as err:  # not cached offline, not found, no network, bad id
        first = one_line(str(err).split("\n", 1)[0])
        raise FileNotFoundError(f"{repo_id}: not a local path, and not available from the Hugging Face Hub "
                                f"cache or network ({type(err).__name__}: {first})") from None
    return Path(folder)


def _preset_name(config: Any) -> str | None:
    fields = config.to_dict()
    for name, preset in PRESETS.items():
        if name.startswith("egom2p_") and all(fields.get(k) == v for k, v in preset.items()):
            return name
    return None


def model_card(model: nn.Module, repo_id: str) -> str:
    """A model card (``README.md`` with Hub metadata) describing ``model``: architecture, modalities,
    tokenizers, and how to load it."""
    config = model.config
    params = sum(p.numel() for p in model.parameters())
    meta = {"library_name": "egom2p", "license": "apache-2.0",
            "tags": ["egom2p", "egocentric", "multimodal", "masked-modeling", "any-to-any"]}
    preset = _preset_name(config)
    arch = ", ".join(f"{k}={getattr(config, k)}" for k in ("dim", "encoder_depth", "decoder_depth", "num_heads",
                                                           "mlp_ratio", "gated_mlp", "qk_norm"))
    rows = []
    for name, spec in config.modalities.items():
        layout = f"video grid {'x'.join(map(str, spec.grid))}" if spec.is_video else f"sequence of {spec.length}"
        rows.append(f"| `{name}` | {layout} | {spec.num_tokens} | {spec.vocab_size} | `{spec.folder}` |")
    tokenizers = [f"- `{name}`: {TOKENIZERS[name]}" for name in config.modalities if name in TOKENIZERS]
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
        f"# {repo_id}", "",
        f"An EgoM2P any-to-any masked model{f' (`{preset}`)' if preset else ''}: {params:,} parameters "
        f"({arch}).", "",
        "## Use", "",
        "```python",
        "import torch",
        "from egom2p.model import EgoM2P   # pip install 'egom2p-model[hub]'",
        f'model = EgoM2P.from_pretrained("{repo_id}", device="cuda", dtype=torch.bfloat16)   # eval mode',
        "```", "",
        "Any-to-any generation: `pip install egom2p-generate`, then `egom2p-generate --checkpoint "
        f"{repo_id} ...` (see its README).", "",
        "## Modalities", "",
        "| modality | layout | tokens | vocabulary | shard folder |", "|---|---|---|---|---|", *rows, "",
        "## Tokenizers", "",
        "The model reads and writes tokens. To make them from video and trajectories (and to decode its outputs):", "",
        *(tokenizers or ["- the tokenizers this model's modalities were made with (not part of egom2p)."]), "",
        "## Files", "",
        f"`{WEIGHTS_NAME}` (weights) and `{CONFIG_NAME}` (the `EgoM2PConfig`), written by egom2p-model's "
        "`save_pretrained`.", "",
    ]
    return "\n".join(lines)


def prepare_hub_folder(model: nn.Module, directory: str | os.PathLike, repo_id: str) -> Path:
    """Write what :func:`push_to_hub` uploads into ``directory``: weights, config and the model card."""
    directory = Path(directory)
    save_pretrained(model, directory)
    (directory / CARD_NAME).write_text(model_card(model, repo_id), encoding="utf-8")
    return directory


def upload_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload EgoM2P checkpoint",
) -> str:
    """Upload a folder written by :func:`prepare_hub_folder` to Hub repository ``repo_id`` (created if
    needed); returns the commit URL. Credentials: ``token`` or huggingface_hub's usual ones."""
    if not is_hub_id(repo_id):
        raise ValueError(f"{repo_id!r} is not a Hub repository id (expected org/repo)")
    folder = Path(folder)
    missing = [name for name in (WEIGHTS_NAME, CONFIG_NAME) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {missing}; write it with prepare_hub_folder")
    api = require_hub().HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision, commit_message=commit_message)
    return str(getattr(info, "commit_url", info))


def push_to_hub(model: nn.Module, repo_id: str, **options: Any) -> str:
    """Upload ``model`` (safetensors, config, model card) to Hub repository ``repo_id``; ``options`` as
    :func:`upload_folder` (``private``, ``token``, ``revision``, ``commit_message``). Returns the commit URL."""
    if not is_hub_id(repo_id):
        raise ValueError(f"{repo_id!r} is not a Hub repository id (expected org/repo)")
    with tempfile.TemporaryDirectory(prefix="egom2p-hub-") as tmp:
        return upload_folder(prepare_hub_folder(model, tmp, repo_id), repo_id, **options)

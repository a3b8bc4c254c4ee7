"""EgoM2P on the Hugging Face Hub (the optional ``[hub]`` extra): model cards and uploads.

Hub ids, the local cache and the upload itself belong to :mod:`egom2p.core.hub`;
``EgoM2P.from_pretrained("org/repo")`` reaches them through :func:`egom2p.model.checkpoint.resolve_checkpoint`.
A repository written here holds ``model.safetensors`` + ``config.json`` and a generated ``README.md``
model card (what :func:`push_to_hub` uploads). ``huggingface_hub`` is imported only when an upload runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from egom2p.core.checkpoints import CONFIG_NAME, WEIGHTS_NAME
from egom2p.core.hub import CARD_NAME, is_hub_id, upload_folder
from torch import nn

from .checkpoint import HUB_INSTALL_HINT
from .presets import PRESETS

__all__ = ["COMMIT_MESSAGE", "TOKENIZERS", "model_card", "prepare_hub_folder", "push_to_hub"]

COMMIT_MESSAGE = "Upload EgoM2P checkpoint"

# What a user needs to turn video and trajectories into the released modalities' tokens (docs/original-behaviour.md#tokenizers).
TOKENIZERS = {
    "tok_rgb": "NVIDIA Cosmos-0.1-Tokenizer-DV4x8x8 (16 frames at 8 fps, 256x256 -> 5x32x32 tokens)",
    "tok_depth": "NVIDIA Cosmos-0.1-Tokenizer-DV4x8x8 on per-clip min-max normalised depth as 3-channel gray video",
    "tok_cam": "the EgoM2P camera VQ-VAE (checkpoint-cam.pth; 60 camera-to-world poses -> 30 tokens)",
    "tok_gaze": "the EgoM2P gaze VQ-VAE (checkpoint-gaze.pth; 60 gaze points -> 30 tokens)",
}


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
    model.save_pretrained(directory)
    (directory / CARD_NAME).write_text(model_card(model, repo_id), encoding="utf-8")
    return directory


def push_to_hub(model: nn.Module, repo_id: str, **options: Any) -> str:
    """Upload ``model`` (safetensors, config, model card) to Hub repository ``repo_id``; ``options`` as
    :func:`egom2p.core.hub.upload_folder` (``private``, ``token``, ``revision``, ``commit_message``).
    Returns the commit URL."""
    if not is_hub_id(repo_id):
        raise ValueError(f"{repo_id!r} is not a Hub repository id (expected org/repo)")
    options = {"commit_message": COMMIT_MESSAGE, "install_hint": HUB_INSTALL_HINT, **options}
    with tempfile.TemporaryDirectory(prefix="egom2p-hub-") as tmp:
        return upload_folder(prepare_hub_folder(model, tmp, repo_id), repo_id, **options)

"""Hugging Face Hub checkpoints (the optional ``[hub]`` extra): hub ids, the local cache, uploads; no torch needed.

A hub id ``org/repo`` is found through ``huggingface_hub.snapshot_download``: with ``HF_HUB_OFFLINE=1``
only the local cache (``HF_HOME`` / ``HF_HUB_CACHE``) is read, so a populated cache works without a
network. A repository holds a checkpoint directory's files (``model.safetensors`` + ``config.json``, and
a ``README.md`` card) or one original ``.pth``/``.pt``. Nothing here runs unless a hub id or an upload
is asked for; ``huggingface_hub`` is imported then. Each function that needs it takes ``install_hint``,
so that a missing extra names the package the user installed (``egom2p-model[hub]``, ...).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from egom2p.core.checkpoint_layout import CONFIG_NAME, INTEGRITY_NAME, ORIGINAL_SUFFIXES, WEIGHTS_NAME
from egom2p.core.cli import one_line
from egom2p.core.errors import MissingExtraError

__all__ = ["CARD_NAME", "INSTALL_HINT", "download_checkpoint", "is_hub_id", "require_hub", "upload_folder"]

CARD_NAME = "README.md"  # a repository's card: fetched with the weights so the snapshot is complete
INSTALL_HINT = "pip install 'egom2p-core[hub]'"
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_DOWNLOAD = [WEIGHTS_NAME, CONFIG_NAME, INTEGRITY_NAME, CARD_NAME, *(f"*{suffix}" for suffix in ORIGINAL_SUFFIXES)]


def is_hub_id(text: str) -> bool:
    """Whether ``text`` has the shape of a Hub repository id ``org/repo`` (and not of a local file name)."""
    return bool(_HUB_ID.fullmatch(text)) and ".." not in text and not text.endswith(ORIGINAL_SUFFIXES)


def require_hub(install_hint: str = INSTALL_HINT) -> Any:
    """The ``huggingface_hub`` module, or :class:`MissingExtraError` ending in ``install_hint``."""
    try:
        import huggingface_hub
    except ImportError:
        raise MissingExtraError(f"Hugging Face Hub checkpoints need huggingface-hub: {install_hint}") from None
    return huggingface_hub


def download_checkpoint(repo_id: str, revision: str | None = None, *, install_hint: str = INSTALL_HINT,
                        files: Sequence[str] | None = None) -> Path:
    """The local snapshot folder of Hub repository ``repo_id`` (downloaded, or from the cache).

    Fetches only checkpoint files: ours (weights, config, card, original ``.pth``/``.pt``), or the names or
    glob patterns in ``files`` (a foreign format, like Cosmos's ``encoder.jit``); ``revision`` picks a
    branch, tag or commit. Raises ``FileNotFoundError`` naming the repository when it is neither cached
    nor reachable, :class:`MissingExtraError` (with ``install_hint``) without huggingface-hub.
    """
    hub = require_hub(install_hint)
    try:
        folder = hub.snapshot_download(repo_id, revision=revision, allow_patterns=list(files or _DOWNLOAD))
    except (OSError, ValueError) as err:  # not cached offline, not found, no network, bad id
        first = one_line(str(err).split("\n", 1)[0])
        raise FileNotFoundError(f"{repo_id}: not a local path, and not available from the Hugging Face Hub "
                                f"cache or network ({type(err).__name__}: {first})") from None
    return Path(folder)


def upload_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload checkpoint",
    install_hint: str = INSTALL_HINT,
) -> str:
    """Upload checkpoint directory ``folder`` (all its files) to Hub repository ``repo_id``, created if
    needed; returns the commit URL. Credentials: ``token`` or huggingface_hub's usual ones."""
    if not is_hub_id(repo_id):
        raise ValueError(f"{repo_id!r} is not a Hub repository id (expected org/repo)")
    folder = Path(folder)
    missing = [name for name in (WEIGHTS_NAME, CONFIG_NAME) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {missing}; a checkpoint directory holds {WEIGHTS_NAME} + {CONFIG_NAME}")
    api = require_hub(install_hint).HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision, commit_message=commit_message)
    return str(getattr(info, "commit_url", info))

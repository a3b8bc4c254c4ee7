"""egom2p.data: EgoM2P masking and token-shard loaders.

``import egom2p.data`` needs only torch and numpy; the loader, S3 and config pieces (webdataset, boto3,
PyYAML) are imported when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from egom2p.data.masking import UnifiedMasking
from egom2p.data.modalities import ModalityInfo, load_modalities

_LAZY = {
    "load_data_config": "egom2p.data.config",
    "DataConfig": "egom2p.data.config",
    "DatasetConfig": "egom2p.data.config",
    "build_train_loader": "egom2p.data.loader",
    "build_val_loaders": "egom2p.data.loader",
    "steps_per_epoch": "egom2p.data.loader",
    "load_alphas_config": "egom2p.data.alphas",
    "write_shards": "egom2p.data.shards",
}

__all__ = ["ModalityInfo", "UnifiedMasking", "load_modalities", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'egom2p.data' has no attribute {name!r}")

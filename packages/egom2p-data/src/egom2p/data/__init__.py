"""egom2p.data: EgoM2P masking, token-shard loaders and writers, and the demo dataset.

``import egom2p.data`` imports nothing heavy (``egom2p-data --help`` answers at once): the masking (torch), the
config, loader, shard and S3 pieces (egom2p-core, PyYAML, boto3) are imported when first used. Modality specs
come from :mod:`egom2p.core.modalities`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "UnifiedMasking": "egom2p.data.masking",
    "load_data_config": "egom2p.data.config",
    "DataConfig": "egom2p.data.config",
    "DatasetConfig": "egom2p.data.config",
    "build_train_loader": "egom2p.data.loader",
    "build_val_loaders": "egom2p.data.loader",
    "load_alphas_config": "egom2p.data.alphas",
    "write_shards": "egom2p.data.shards",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'egom2p.data' has no attribute {name!r}")

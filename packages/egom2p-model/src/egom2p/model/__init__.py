"""egom2p.model: the EgoM2P encoder-decoder, its embeddings and checkpoint loading.

Modality specs and the batch contract come from :mod:`egom2p.core`.
"""

from .checkpoint import resolve_checkpoint, write_pretrained
from .config import EgoM2PConfig
from .model import EgoM2P, EgoM2POutput, EncoderContext
from .presets import PRESETS, preset_config

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "EgoM2P",
    "EgoM2PConfig",
    "EgoM2POutput",
    "EncoderContext",
    "__version__",
    "preset_config",
    "resolve_checkpoint",
    "write_pretrained",
]

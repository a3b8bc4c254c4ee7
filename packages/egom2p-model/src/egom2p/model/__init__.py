"""egom2p.model: the EgoM2P encoder-decoder, its embeddings and checkpoint loading (ours, the original
``.pth``, Hugging Face Hub ids with the ``[hub]`` extra).

Modality specs and the batch contract come from :mod:`egom2p.core`.
"""

from .checkpoint import resolve_checkpoint
from .config import EgoM2PConfig
from .hub import model_card, push_to_hub
from .kernels.reference import AttentionMask
from .model import EgoM2P, EgoM2POutput, EncoderContext, is_block_parameter, parameter_modality, write_pretrained
from .presets import PRESETS, preset_config

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "AttentionMask",
    "EgoM2P",
    "EgoM2PConfig",
    "EgoM2POutput",
    "EncoderContext",
    "__version__",
    "is_block_parameter",
    "model_card",
    "parameter_modality",
    "preset_config",
    "push_to_hub",
    "resolve_checkpoint",
    "write_pretrained",
]

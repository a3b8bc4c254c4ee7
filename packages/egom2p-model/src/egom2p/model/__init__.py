"""egom2p.model: the EgoM2P encoder-decoder, its embeddings and checkpoint loading."""

from .config import EgoM2PConfig
from .modalities import ModalitySpec, load_modality_specs
from .model import EgoM2P, EgoM2POutput, EncoderContext
from .presets import PRESETS, preset_config

__all__ = [
    "PRESETS",
    "EgoM2P",
    "EgoM2PConfig",
    "EgoM2POutput",
    "EncoderContext",
    "ModalitySpec",
    "load_modality_specs",
    "preset_config",
]

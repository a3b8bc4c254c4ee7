"""egom2p.tokenizers: signals to tokens and back.

The camera and gaze VQ-VAE tokenizers of EgoM2P (:mod:`egom2p.tokenizers.vqvae`), the conventions that turn
recordings into their inputs and their outputs back into poses and gaze points (:mod:`~egom2p.tokenizers.camera`,
:mod:`~egom2p.tokenizers.gaze`, :mod:`~egom2p.tokenizers.tracks`), the trajectory and gaze metrics of the paper
(:mod:`~egom2p.tokenizers.metrics`), the Cosmos video tokenizer of the RGB and depth tokens
(:mod:`~egom2p.tokenizers.cosmos`, with the clip conventions of :mod:`~egom2p.tokenizers.video` and the video files
of :mod:`~egom2p.tokenizers.video_io`) and the ``egom2p-tokenize`` command line.

The model classes are imported on first use, so ``import egom2p.tokenizers.camera`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that owns it (imported lazily by __getattr__).
_EXPORTS = {
    "VQVAE": "vqvae",
    "TokenizerConfig": "config",
    "TOKENIZER_PRESETS": "presets",
    "tokenizer_config": "presets",
    "GazeFrame": "gaze",
    "GAZE_FRAMES": "gaze",
    "CosmosVideoTokenizer": "cosmos",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""egom2p.train: the EgoM2P trainer (torchrun entry point, config tree, one loop for the recipes ``egom2p`` and
``tokenizer``, step-directory checkpoints)."""

__version__ = "0.1.0"

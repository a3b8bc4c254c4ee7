"""egom2p.train: the EgoM2P trainer (torchrun entry point, config tree, loop, step-directory checkpoints)."""

__version__ = "0.1.0"

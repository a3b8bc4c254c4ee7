"""A tiny real EgoM2P whose loss can be poisoned, and a deterministic fake loader, to test the loop in-process."""

from pathlib import Path

import torch
from egom2p.core.packing import PackedBatch
from egom2p.model import EgoM2P, EgoM2PConfig, preset_config

ROOT = Path(__file__).resolve().parents[3]
TINY_MODALITIES = "tiny"  # the shipped modalities preset, by name
BUDGETS = (16, 16)  # input / target tokens per sample, out of tok_rgb's 32


def tiny_config() -> EgoM2PConfig:
    """A few-thousand-parameter egom2p-tiny: each step takes milliseconds."""
    return preset_config("egom2p-tiny", modalities=str(TINY_MODALITIES), dim=12, encoder_depth=1, decoder_depth=1,
                         num_heads=2, attn_backend="sdpa")


class PoisonableEgoM2P(EgoM2P):
    """EgoM2P whose loss is NaN for a masked batch whose ``poison`` entry is set (the hook for non-finite steps)."""

    def forward(self, batch, **kwargs):
        if isinstance(batch, PackedBatch):
            return super().forward(batch, **kwargs)
        out = super().forward({k: v for k, v in batch.items() if k != "poison"}, **kwargs)
        if "poison" in batch and batch["poison"]["flag"].any():
            out.loss = out.loss * float("nan")
        return out


class FakeLoader:
    """Deterministic infinite tok_rgb batches (contract format); ``poison_steps`` are the batch indices that give NaN.

    With ``poison_steps`` each batch carries a ``poison`` entry, so run those tests with ``loader.pack=False``.
    """

    def __init__(self, poison_steps=()):
        self.position = 0
        self.poison_steps = set(poison_steps)
        self.stats = {"samples": 0, "skipped_samples": 0}

    def __iter__(self):
        batch_size, n = 2, 32
        while True:
            g = torch.Generator().manual_seed(self.position)
            order = torch.stack([torch.randperm(n, generator=g) for _ in range(batch_size)])
            input_mask = torch.ones(batch_size, n, dtype=torch.bool).scatter_(1, order[:, :BUDGETS[0]], False)
            target_mask = torch.ones(batch_size, n, dtype=torch.bool).scatter_(1, order[:, BUDGETS[0]:], False)
            batch = {"tok_rgb": {"tensor": torch.randint(0, 64, (batch_size, n), generator=g),
                                 "input_mask": input_mask, "target_mask": target_mask}}
            if self.poison_steps:
                batch["poison"] = {"flag": torch.full((batch_size,), self.position in self.poison_steps)}
            self.position += 1
            self.stats["samples"] += batch_size
            yield batch

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = state["position"]

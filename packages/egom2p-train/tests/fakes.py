"""Small stand-ins for the model and the data loader, to test the loop in-process in milliseconds."""

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class FakeOutput:
    loss: torch.Tensor
    mod_loss: dict
    num_targets: dict


class FakeModel(nn.Module):
    """A linear regression on a batch's ``x``; a batch with ``poison`` set yields a NaN loss."""

    modalities = {"tok_a": None}

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)
        self.out_norm = nn.LayerNorm(1)

    def forward(self, batch, num_encoder_tokens=None, num_decoder_tokens=None, loss_type="mod"):
        x = batch["tok_a"]["tensor"].float()
        loss = ((self.lin(x).squeeze(-1) - x.sum(-1)) ** 2).mean()
        if batch["tok_a"]["poison"].any():
            loss = loss * float("nan")
        return FakeOutput(loss=loss, mod_loss={"tok_a": loss}, num_targets={"tok_a": x.shape[0]})


class FakeLoader:
    """Deterministic infinite batches; ``poison_steps`` are the batch indices that produce NaN."""

    def __init__(self, poison_steps=()):
        self.position = 0
        self.poison_steps = set(poison_steps)
        self.stats = {"samples": 0, "skipped_samples": 0}

    def __iter__(self):
        while True:
            g = torch.Generator().manual_seed(self.position)
            x = torch.randint(0, 5, (2, 4), generator=g)
            poison = torch.full((2,), self.position in self.poison_steps)
            self.position += 1
            self.stats["samples"] += 2
            yield {"tok_a": {"tensor": x, "poison": poison}}

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = state["position"]

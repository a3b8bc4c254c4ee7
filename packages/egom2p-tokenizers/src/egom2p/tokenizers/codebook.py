"""The tokenizers' vector quantizer: a cosine-similarity codebook with EMA updates and dead-code replacement.

Behaviour is the original's (4M's copy of lucidrains' ``CosineSimCodebook`` / ``VectorQuantize``;
docs/original-behaviour.md#camera):

- search: latents and codes are l2-normalised; the nearest code is the argmax of their dot products (one
  matmul); the vector returned is the *stored* code entry, looked up before this step's update;
- training (``module.training``): ``cluster_size`` and ``embed`` move by EMA towards this batch's counts and
  the l2-normalised mean of the normalised latents assigned to each code (a code with no latent moves
  towards its own normalised self), ``embed`` is not renormalised afterwards; then every code whose
  ``cluster_size`` fell below ``threshold_ema_dead_code`` (0 disables) is replaced by an l2-normalised latent
  of the batch, drawn without replacement when the batch has enough latents, else with replacement;
- the quantizer passes gradients by the straight-through estimator and returns
  ``commitment_weight * MSE(code, latent)`` in training, 0 in eval, on the latent as it is: not l2-normalised
  (the original's recorded loss and gradients show this, although its YAML says ``norm_codes: True``).

Distributed: when ``torch.distributed`` has a process group of more than one rank, the per-code counts and
sums are all-reduced (summed) before the update, and dead codes are refilled from the latents of *all*
ranks: every rank gathers the candidates, rank 0 draws the replacements uniformly from them and broadcasts
them, so each rank ends the step with a bit-identical codebook. (The original drew a multinomial share per
rank, each rank sampled its share from its own latents and all shares were gathered: also the same on every
rank, by a different draw.) Every rank must run the training-mode forward at each step, as DDP does.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _l2norm(t: torch.Tensor) -> torch.Tensor:
    return F.normalize(t, p=2, dim=-1)


def _world_size() -> int:
    """Ranks sharing the codebook: the default process group's size, 1 without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _ema_(average: torch.Tensor, new: torch.Tensor, decay: float) -> None:
    """``average = decay * average + (1 - decay) * new``, in place (the original's rounding order)."""
    average.mul_(decay).add_(new, alpha=1.0 - decay)


def _draw(samples: torch.Tensor, num: int) -> torch.Tensor:
    """``num`` rows of ``samples``: distinct rows when there are enough, else drawn with replacement."""
    if samples.shape[0] >= num:
        indices = torch.randperm(samples.shape[0], device=samples.device)[:num]
    else:
        indices = torch.randint(0, samples.shape[0], (num,), device=samples.device)
    return samples[indices]


def _draw_across_ranks(samples: torch.Tensor, num: int) -> torch.Tensor:
    """:func:`_draw` over the samples of every rank, the same rows on every rank (rank 0 draws, broadcasts)."""
    world = dist.get_world_size()
    size = torch.tensor([samples.shape[0]], device=samples.device)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    padded = samples.new_zeros(max(counts), samples.shape[1])
    padded[: samples.shape[0]] = samples
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    chosen = samples.new_empty(num, samples.shape[1])
    if dist.get_rank() == 0:
        chosen.copy_(_draw(torch.cat([g[:n] for g, n in zip(gathered, counts)]), num))
    dist.broadcast(chosen, src=0)
    return chosen


class CosineSimCodebook(nn.Module):
    """``codebook_size`` codes of width ``dim`` (buffers ``initted``, ``cluster_size``, ``embed``)."""

    def __init__(self, dim: int, codebook_size: int, decay: float = 0.99, threshold_ema_dead_code: float = 2.0) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.decay = decay
        self.threshold_ema_dead_code = threshold_ema_dead_code
        # The original's start: kaiming-uniform rows, l2-normalised (no k-means init, so initted = 1).
        embed = torch.empty(codebook_size, dim)
        nn.init.kaiming_uniform_(embed)
        self.register_buffer("initted", torch.ones(1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", _l2norm(embed))

    def search(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (cosine similarity) for each row of ``x`` (..., dim).

        In the codebook's own precision (float32 normally), never autocast: as the original, the nearest-code
        search of a bf16 / fp16 model stays exact.
        """
        with torch.autocast(x.device.type, enabled=False):
            similarity = _l2norm(x.to(self.embed.dtype)) @ _l2norm(self.embed).t()
        return similarity.argmax(dim=-1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The stored code vectors of ``indices`` (not renormalised)."""
        return F.embedding(indices, self.embed)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(stored codes, indices) of ``x`` (..., dim); in training mode also updates the codebook."""
        x = x.to(self.embed.dtype)
        indices = self.search(x)
        codes = self.lookup(indices)
        if self.training:
            self._update(x.detach().reshape(-1, x.shape[-1]), indices.reshape(-1))
        return codes, indices

    @torch.no_grad()
    def _update(self, latents: torch.Tensor, indices: torch.Tensor) -> None:
        normed = _l2norm(latents)
        bins = torch.bincount(indices, minlength=self.codebook_size).to(normed.dtype)
        embed_sum = normed.new_zeros(self.codebook_size, normed.shape[1]).index_add_(0, indices, normed)
        world = _world_size()
        if world > 1:
            dist.all_reduce(bins)
            dist.all_reduce(embed_sum)
        _ema_(self.cluster_size, bins, self.decay)
        unused = bins == 0
        means = _l2norm(embed_sum / bins.masked_fill(unused, 1.0)[:, None])
        targets = torch.where(unused[:, None], _l2norm(self.embed), means)
        _ema_(self.embed, targets, self.decay)
        self._expire_codes(normed, world)

    def _expire_codes(self, normed_latents: torch.Tensor, world: int) -> None:
        if self.threshold_ema_dead_code == 0:
            return
        dead = self.cluster_size < self.threshold_ema_dead_code
        num_dead = int(dead.sum().item())
        if num_dead == 0:
            return
        draw = _draw_across_ranks if world > 1 else _draw
        self.embed[dead] = draw(normed_latents, num_dead)


class VectorQuantizer(nn.Module):
    """Quantise latents with :class:`CosineSimCodebook` (``_codebook``), straight-through, commitment loss."""

    def __init__(self, dim: int, codebook_size: int, decay: float = 0.99, threshold_ema_dead_code: float = 2.0,
                 commitment_weight: float = 1.0) -> None:
        super().__init__()
        self.commitment_weight = commitment_weight
        self._codebook = CosineSimCodebook(dim, codebook_size, decay, threshold_ema_dead_code)

    @property
    def codebook(self) -> torch.Tensor:
        """The stored code vectors ``[codebook_size, dim]``."""
        return self._codebook.embed

    def search(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids of latents ``x`` (..., dim) without touching the codebook (see ``CosineSimCodebook.search``)."""
        return self._codebook.search(x)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The stored code vectors of token ids ``indices``."""
        return self._codebook.lookup(indices)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` (..., dim) -> (quantised (..., dim), commitment loss (scalar), indices (...))."""
        codes, indices = self._codebook(x)
        if not self.training:
            return codes, x.new_zeros(()), indices
        loss = F.mse_loss(codes.detach(), x) * self.commitment_weight
        return x + (codes - x).detach(), loss, indices


def codebook_stats(tokens: torch.Tensor, codebook_size: int) -> dict[str, float | int]:
    """How well ``tokens`` use the codebook: ``live_codes`` (codes used at least once) and ``perplexity``
    (exp of the entropy of the code frequencies; ``codebook_size`` when all codes are equally used)."""
    flat = torch.as_tensor(tokens).reshape(-1).long()
    if flat.numel() == 0:
        raise ValueError("codebook_stats needs at least one token")
    if int(flat.min()) < 0 or int(flat.max()) >= codebook_size:
        raise ValueError(f"tokens must lie in [0, {codebook_size}), got values in "
                         f"[{int(flat.min())}, {int(flat.max())}]")
    counts = torch.bincount(flat, minlength=codebook_size).double()
    probs = counts[counts > 0] / flat.numel()
    entropy = -(probs * probs.log()).sum()
    return {"live_codes": int((counts > 0).sum()), "perplexity": float(entropy.exp())}

"""Any-to-any generation with ROAR or MaskGIT decoding and classifier-free guidance.

The original's steps and guidance: docs/original-behaviour.md#roar-and-maskgit-steps and #guidance; quirk numbers
below are those of docs/original-behaviour.md#quirks.

Each step runs the encoder once on the conditioning plus everything decoded so far
(`model.encode`) and the decoder only on the positions it queries (`model.decode_positions`).
Guided steps batch the conditional and the unconditional (conditioning blanked) inputs into ONE
forward of batch 2B, rows packed so that the short unconditional rows compute only their own tokens
(`pack_passes`), and use the same positions for both (the original draws them twice and relies
on reseeding to make them agree, quirk 26). Multi-condition guidance (`generate_multi_guided`) runs
one pass per condition plus the unconditional one, as one forward of batch (K+1) x B, all at the same
positions; unlike the original's ROAR version, the conditional passes see the tokens decoded so far
as inputs (the original marks them as hidden targets there, quirk 27).

Randomness, per step s with base seed `seed` (drawn from torch's global RNG when None): a CPU
`torch.Generator` seeded with `seed + s` first draws the ROAR order, `torch.rand(N)` shared by all
batch rows (as the original's `torch.manual_seed(seed + s); torch.rand(N)`, so its recorded positions
are reproduced without passing `order`), then the multinomial samples on CPU (on another device a
generator on that device, seeded the same). `order_per_row=True` draws a separate order per row.
The global RNG is never reseeded. `generate_multi_guided` seeds its steps the same way (the original's
reseeds every step with the same `seed`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from egom2p.core.batch import MaskedBatch
from egom2p.core.modalities import ModalitySpec
from egom2p.model import EgoM2P

from .batch import empty_target, flatten_batch, unflatten_into
from .guidance import MultiGuidance, blanked, mix_guided, pass_logits
from .sampling import ARGMAX_TEMPERATURE, sample_tokens
from .schedule import SCHEMES

STEP_KEYS = ("target_domain", "scheme", "num_tokens", "temperature", "cfg_scale", "cfg_cond_domains")

# Called after every step as on_step(step_index, step_dict, batch_so_far).
StepCallback = Callable[[int, dict[str, Any], MaskedBatch], None]


class GenerationSampler:
    """Fills target modalities of a batch following a schedule from `build_generation_schedule`.

    `model` is used through `modalities`, `encode(batch)` and `decode_positions(ctx, modality,
    positions)` (docs/contracts.md), as is (call `model.eval()` first if it has dropout). `filter_after_temperature` swaps the original's
    filter-then-temperature order (quirk 31); `order_per_row` draws a ROAR order per batch row
    instead of one shared order. `pack_passes=False` pads the guidance passes' rows to the longest
    instead of packing them (the original's layout; for comparisons).
    """

    def __init__(
        self, model: EgoM2P, filter_after_temperature: bool = False, order_per_row: bool = False, pack_passes: bool = True
    ):
        self.model = model
        self.pack_passes = pack_passes
        self.filter_after_temperature = filter_after_temperature
        self.order_per_row = order_per_row

    def generate(
        self,
        batch: Mapping[str, Mapping[str, torch.Tensor]],
        schedule: Sequence[Mapping[str, Any]],
        seed: int | None = None,
        top_k: float = 0.0,
        top_p: float = 0.0,
        order: Mapping[str, torch.Tensor] | None = None,
        on_step: StepCallback | None = None,
    ) -> MaskedBatch:
        """Run the whole schedule and return the filled batch (a new dict; `batch` is not modified).

        `batch`: modality -> {tensor, input_mask, target_mask} (a modality without masks is taken as
        fully given; a scheduled target missing from the batch is created empty). `order`: optional
        modality -> LongTensor [B, n] giving the ROAR decoding order of that modality's target
        positions; each step takes its next k entries. `on_step(step_index, step_dict, batch_so_far)`
        is called after every step with a copy of the batch at that point (without it only the last
        step's batch is materialised). Returns tensors on the model's device; targets the sampler
        created come back as [B, N].
        """
        if not schedule:
            raise ValueError("schedule is empty: nothing to generate")
        return self._run(batch, schedule, seed, top_k, top_p, order, on_step)

    def generate_multi_guided(
        self,
        batch: Mapping[str, Mapping[str, torch.Tensor]],
        conditions: Sequence[Mapping[str, Mapping[str, torch.Tensor]]],
        schedule: Sequence[Mapping[str, Any]],
        seed: int | None = None,
        top_k: float = 0.0,
        top_p: float = 0.0,
        order: Mapping[str, torch.Tensor] | None = None,
    ) -> MaskedBatch:
        """Generate with several conditions, each with its own guidance weight (the original's
        `generate_multi_guided`): logits = `uncond + sum_i w_i (cond_i - uncond)`.

        `batch` is the unconditional batch: the targets (created empty when missing) and any inputs
        every pass shares. `conditions` is a list of batches (modality -> {tensor[, masks]}), one per
        condition; a condition must not hold a target or a modality of `batch`. Each step's
        `cfg_scale` is a list of weights, one per condition (`build_generation_schedule` with a list
        per target); when the schedule moves on to the next target, the finished one becomes one
        more condition, as in the original, so later targets need one more weight. The unconditional
        pass sees `batch` with finished targets blanked; pass i sees the same overlaid with condition
        i. Works for every modality and for ROAR and MaskGIT; seeds, `order` and the return value as
        in `generate`.
        """
        if not conditions:
            raise ValueError("generate_multi_guided needs at least one condition")
        if not schedule:
            raise ValueError("schedule is empty: nothing to generate")
        modalities = self.model.modalities
        device = next(self.model.parameters()).device
        targets = [_check_step(i, step, modalities, multi=True)["target_domain"] for i, step in enumerate(schedule)]
        flat = []
        for i, condition in enumerate(conditions):
            if not condition:
                raise ValueError(f"condition {i} is empty")
            cond_state, _ = flatten_batch(condition, modalities, device)
            clash = sorted(set(cond_state) & (set(batch) | set(targets)))
            if clash:
                raise ValueError(f"condition {i} holds {clash}, which the unconditional batch or the schedule also has")
            flat.append(cond_state)
        runs = [t for i, t in enumerate(targets) if i == 0 or t != targets[i - 1]]
        if len(runs) != len(set(runs)):  # a target that came back would be a condition and a target at once
            raise ValueError(f"generate_multi_guided: each target's steps must be consecutive, got targets {runs}")
        if not batch:  # the original's usual call: the unconditional batch holds only the targets
            rows = next(iter(flat[0].values()))["tensor"].shape[0]
            batch = {targets[0]: empty_target(rows, modalities[targets[0]].num_tokens, device)}
        return self._run(batch, schedule, seed, top_k, top_p, order, None, MultiGuidance(flat, self.pack_passes))

    # -- the loop ---------------------------------------------------------------------------------

    def _run(self, batch, schedule, seed, top_k, top_p, order, on_step, guidance=None) -> MaskedBatch:
        modalities = self.model.modalities
        device = next(self.model.parameters()).device
        state, batch_size = flatten_batch(batch, modalities, device)
        multi = guidance is not None
        steps = [_check_step(i, step, modalities, multi) for i, step in enumerate(schedule)]
        for step in steps:  # create missing targets up front so that the batch layout is fixed
            name = step["target_domain"]
            if name not in state:
                state[name] = empty_target(batch_size, modalities[name].num_tokens, device)
        if multi:
            for i, condition in enumerate(guidance.conditions):
                rows = next(iter(condition.values()))["tensor"].shape[0]
                if rows != batch_size:
                    raise ValueError(f"condition {i} has {rows} rows, the batch has {batch_size}")
        order_cursor = _check_order(order, state, batch_size)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())

        for index, step in enumerate(steps):
            logits_fn = self._logits
            if multi:
                guidance.start_step(state, step["target_domain"])
                logits_fn = partial(guidance.logits, self.model)
            with torch.no_grad():
                self._step(state, step, seed + index, top_k, top_p, order_cursor, logits_fn)
            if on_step is not None:
                on_step(index, dict(step), unflatten_into(batch, state))
        return unflatten_into(batch, state)

    def _step(self, state: MaskedBatch, step: dict[str, Any], step_seed: int, top_k, top_p, order_cursor, logits_fn) -> None:
        target = step["target_domain"]
        remaining = ~state[target]["target_mask"]
        counts = remaining.sum(dim=1)
        if bool((counts != counts[0]).any()):
            raise ValueError(
                f"{target!r}: every batch row must have the same number of positions left to generate, "
                f"got {counts.tolist()}"
            )
        n_left = int(counts[0])
        if n_left == 0:
            return  # the original also skips a step whose target is already complete
        k = min(int(step["num_tokens"]), n_left)
        generator = torch.Generator().manual_seed(step_seed)

        if step["scheme"] == "roar":
            positions = self._roar_positions(state[target]["target_mask"], k, generator, order_cursor, target)
        else:  # maskgit queries every remaining position, in position order
            positions = torch.argsort(state[target]["target_mask"].to(torch.int8), dim=1, stable=True)[:, :n_left]

        logits = logits_fn(state, step, positions)
        batch_size, n_query, vocab = logits.shape
        device_generator = generator if logits.device.type == "cpu" else _device_generator(logits.device, step_seed)
        tokens, probs = sample_tokens(
            logits.reshape(batch_size * n_query, vocab),
            float(step["temperature"]),
            top_k,
            top_p,
            generator=device_generator,
            filter_after_temperature=self.filter_after_temperature,
        )
        tokens = tokens.reshape(batch_size, n_query)
        if step["scheme"] == "maskgit":
            confidence = probs.reshape(batch_size, n_query)
            if abs(float(step["temperature"])) <= ARGMAX_TEMPERATURE:
                # Argmax reports probability 1 everywhere, which would make the choice arbitrary
                # (the original then takes whatever topk returns); rank by the model's own softmax.
                confidence = F.softmax(logits.float(), dim=-1).gather(-1, tokens[..., None])[..., 0]
            keep = torch.topk(confidence, k, dim=1).indices
            positions, tokens = positions.gather(1, keep), tokens.gather(1, keep)
        _commit(state[target], positions, tokens)

    def _roar_positions(self, target_mask, k, generator, order_cursor, target) -> torch.Tensor:
        if target in order_cursor:
            order, start = order_cursor[target]
            positions = order[:, start : start + k].to(target_mask.device)
            if positions.shape[1] < k:
                raise ValueError(f"order[{target!r}] has {order.shape[1]} positions, the schedule needs more")
            if bool(target_mask.gather(1, positions).any()):
                raise ValueError(f"order[{target!r}] names positions that are not (or no longer) targets")
            order_cursor[target] = (order, start + k)
            return positions
        batch_size, n = target_mask.shape
        noise = torch.rand((batch_size, n) if self.order_per_row else (n,), generator=generator)
        # The original's key, kept verbatim so that its orders are reproduced exactly.
        key = target_mask.float() + 1e-6 * noise.to(target_mask.device)
        return torch.argsort(key, dim=1)[:, :k]

    def _logits(self, state: MaskedBatch, step: dict[str, Any], positions: torch.Tensor) -> torch.Tensor:
        target, scale = step["target_domain"], float(step["cfg_scale"])
        if scale == 1.0:
            ctx = self.model.encode(state)
            return self.model.decode_positions(ctx, target, positions)
        conditioning = step["cfg_cond_domains"]
        if not conditioning:
            raise ValueError(f"step for {target!r} has cfg_scale {scale} but no conditioning domains to blank")
        for name in conditioning:
            if name not in state:
                raise ValueError(f"guidance blanks {name!r}, which is not in the batch")
        uncond_state = {name: blanked(item) if name in conditioning else item for name, item in state.items()}
        cond, uncond = pass_logits(self.model, [state, uncond_state], target, positions, self.pack_passes)
        return mix_guided(cond, uncond, scale)


def _commit(item: dict[str, torch.Tensor], positions: torch.Tensor, tokens: torch.Tensor) -> None:
    """Write decoded tokens; they become encoder inputs and stop being targets."""
    item["tensor"].scatter_(1, positions, tokens.to(item["tensor"].dtype))
    item["input_mask"].scatter_(1, positions, False)
    item["target_mask"].scatter_(1, positions, True)


def _check_step(
    index: int, step: Mapping[str, Any], modalities: Mapping[str, ModalitySpec], multi: bool = False
) -> dict[str, Any]:
    missing = [key for key in STEP_KEYS if key not in step]
    if missing:
        raise ValueError(f"schedule step {index} lacks {missing}; build it with build_generation_schedule")
    if multi != isinstance(step["cfg_scale"], (list, tuple)):
        raise ValueError(
            f"schedule step {index}: cfg_scale {step['cfg_scale']!r} "
            + ("must be a list of weights, one per condition, for generate_multi_guided" if multi
               else "is a list of multi-condition weights: use generate_multi_guided")
        )
    if step["target_domain"] not in modalities:
        raise ValueError(
            f"schedule step {index}: target {step['target_domain']!r} is unknown to this checkpoint; "
            f"known: {sorted(modalities)}"
        )
    if step["scheme"] not in SCHEMES:
        raise ValueError(f"schedule step {index}: unsupported scheme {step['scheme']!r} ({' or '.join(SCHEMES)})")
    if int(step["num_tokens"]) < 1:
        raise ValueError(f"schedule step {index}: num_tokens must be >= 1, got {step['num_tokens']}")
    for name in step["cfg_cond_domains"]:
        if name not in modalities:
            raise ValueError(f"schedule step {index}: conditioning domain {name!r} is unknown to this checkpoint")
    return dict(step)


def _check_order(order, state: MaskedBatch, batch_size: int) -> dict[str, tuple[torch.Tensor, int]]:
    cursor: dict[str, tuple[torch.Tensor, int]] = {}
    for name, positions in (order or {}).items():
        if name not in state:
            raise ValueError(f"order given for {name!r}, which is neither in the batch nor a target")
        positions = torch.as_tensor(positions)
        n = state[name]["tensor"].shape[1]
        if positions.dim() != 2 or positions.shape[0] != batch_size or positions.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"order[{name!r}] must be an integer tensor [B={batch_size}, k], got {tuple(positions.shape)}")
        if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= n):
            raise ValueError(f"order[{name!r}] holds positions outside [0, {n})")
        cursor[name] = (positions.long(), 0)
    return cursor


def _device_generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)

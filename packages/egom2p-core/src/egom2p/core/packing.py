"""The packed batch (data -> model -> train) and the one rule that picks a sample's tokens.

:func:`kept_tokens` is the token-selection rule: a sample keeps its first ``budget`` selected tokens in
concatenation order (modalities by sorted name, then position). The data package packs by it, the model
builds its one-row-per-sample layouts by it and the trainer counts by it.

:class:`PackedBatch` holds the kept tokens of several samples of a masked batch in shared rows, with a
sample id per token so that attention keeps every sample to itself. ``egom2p.data.packing.pack_batch``
builds it, ``EgoM2P.forward`` reads it, the trainer counts it. ``R`` rows, ``Le`` / ``Ld`` slots per
encoder / decoder row::

    encoder  PackedSide  ids        int64 [R, Le]  token ids, 0 at padding
                         modality   int32 [R, Le]  index of the token's modality in sorted(targets), -1 at padding
                         positions  int64 [R, Le]  position inside its modality (0 .. N_m - 1), 0 at padding
                         samples    int32 [R, Le]  index of the token's sample in the masked batch, -1 at padding
                         lengths    int32 [R]      valid tokens of each row: they are the prefix j < lengths[r]
    decoder  PackedSide  the same fields, [R, Ld]
    targets  {modality: int64 [C_m]}  flat decoder slot (r * Ld + j) of each target of the modality,
                                      ordered by sample then position; -1 pads C_m

``targets`` has an entry for every modality of the masked batch (with or without targets): the set of
modalities is what the ``mod`` loss averages over. A sample's tokens are contiguous in one row, in
concatenation order, and samples inside a row keep their batch order, so segment ids are sorted (the
Triton kernel skips whole blocks of other samples). Encoder row r and decoder row r hold the same
samples. The row assignments (:func:`balance_rows`, :func:`first_fit_rows`) live here too.

This module needs torch (the ``[torch]`` extra); importing ``egom2p.core`` does not import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from egom2p.core.modalities import ModalitySpec
from torch import Tensor

__all__ = [
    "PACKED_KEYS",
    "PACKED_SIDE_KEYS",
    "PackedBatch",
    "PackedSide",
    "balance_rows",
    "first_fit_rows",
    "kept_tokens",
]

PACKED_KEYS = ("encoder", "decoder", "targets")


def kept_tokens(excluded: Mapping[str, Tensor], budget: int | None, name: str = "budget") -> Tensor:
    """The tokens each sample keeps: bool ``[B, N]`` over the modalities concatenated in sorted name order.

    ``excluded`` maps each modality to a bool mask ``[B, N_m]`` (or ``[B, *grid]``) that is True where a
    token is not selected (an ``input_mask`` or ``target_mask`` of the batch contract). A sample keeps its
    first ``budget`` selected tokens in concatenation order; every selected token when ``budget`` is None.
    No host sync: the result has the static shape of the masks. ``name`` names the budget in the error
    for a negative one.
    """
    if budget is not None and budget < 0:
        raise ValueError(f"{name} must be >= 0, got {budget}")
    names = sorted(excluded)
    batch_size = excluded[names[0]].shape[0]
    kept = ~torch.cat([excluded[name].reshape(batch_size, -1) for name in names], dim=1)
    if budget is not None:
        kept &= torch.cumsum(kept, dim=1) <= budget
    return kept


def _largest_first(sizes: Sequence[int]) -> list[int]:
    return sorted(range(len(sizes)), key=lambda s: -sizes[s])


def balance_rows(sizes: Sequence[int], num_rows: int) -> list[list[int]]:
    """Samples of these token counts in ``num_rows`` rows: largest first onto the least-filled row (balanced
    widths). Each row lists its samples in batch order."""
    fill = [0] * num_rows
    rows: list[list[int]] = [[] for _ in range(num_rows)]
    for s in _largest_first(sizes):
        r = min(range(num_rows), key=lambda r: fill[r])
        rows[r].append(s)
        fill[r] += sizes[s]
    return [sorted(row) for row in rows]


def first_fit_rows(sizes: Sequence[int], capacity: int) -> list[list[int]]:
    """Samples of these token counts in rows of ``capacity`` slots: largest first, each into the first row
    where it fits (a sample longer than ``capacity`` gets a row of its own). Each row lists its samples in
    batch order."""
    rows: list[list[int]] = []
    fill: list[int] = []
    for s in _largest_first(sizes):
        r = next((r for r, used in enumerate(fill) if used + sizes[s] <= capacity), len(rows))
        if r == len(rows):
            rows.append([])
            fill.append(0)
        rows[r].append(s)
        fill[r] += sizes[s]
    return [sorted(row) for row in rows]


@dataclass(frozen=True)
class PackedSide:
    """One side (encoder inputs or decoder targets) of a packed batch: ``R`` rows of ``L`` slots."""

    ids: Tensor  # int64 [R, L], 0 at padding
    modality: Tensor  # int32 [R, L], index into sorted(targets), -1 at padding
    positions: Tensor  # int64 [R, L], position inside the modality, 0 at padding
    samples: Tensor  # int32 [R, L], the token's sample in the masked batch, -1 at padding
    lengths: Tensor  # int32 [R]; valid slots are the prefix j < lengths[r]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PackedSide:
        """This side's tensors on ``device``."""
        return PackedSide(**{k: getattr(self, k).to(device, non_blocking=non_blocking) for k in PACKED_SIDE_KEYS})

    @property
    def valid(self) -> Tensor:
        """Bool ``[R, L]``: True at token (non-padding) slots."""
        slots = torch.arange(self.ids.shape[1], device=self.ids.device)
        return slots[None, :] < self.lengths[:, None]


PACKED_SIDE_KEYS = tuple(f.name for f in dataclasses.fields(PackedSide))


def _is_integer(t: Any) -> bool:
    return isinstance(t, Tensor) and not (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool)


@dataclass(frozen=True)
class PackedBatch:
    """The packed batch of the module docstring; its structure (types, dtypes, shapes) is checked when it is
    built, without reading the device; :meth:`check_values` checks the values (host syncs)."""

    encoder: PackedSide
    decoder: PackedSide
    targets: dict[str, Tensor]

    def __post_init__(self) -> None:
        for name in ("encoder", "decoder"):
            side = getattr(self, name)
            if not isinstance(side, PackedSide):
                raise ValueError(f"packed batch: {name} must be a PackedSide, got {type(side).__name__}")
            for key in PACKED_SIDE_KEYS:
                t = getattr(side, key)
                if not _is_integer(t):
                    what = t.dtype if isinstance(t, Tensor) else type(t).__name__
                    raise ValueError(f"packed batch: {name}.{key} must be an integer tensor, got {what}")
            if side.ids.dim() != 2:
                raise ValueError(f"packed batch: {name}.ids must be [rows, width], got {tuple(side.ids.shape)}")
            for key in PACKED_SIDE_KEYS:
                want = side.ids.shape[:1] if key == "lengths" else side.ids.shape
                if getattr(side, key).shape != want:
                    raise ValueError(f"packed batch: {name}.{key} has shape {tuple(getattr(side, key).shape)}, "
                                     f"expected {tuple(want)}")
        if self.encoder.ids.shape[0] != self.decoder.ids.shape[0]:
            raise ValueError(f"packed batch has {self.encoder.ids.shape[0]} encoder rows and "
                             f"{self.decoder.ids.shape[0]} decoder rows")
        if not isinstance(self.targets, Mapping) or not self.targets:
            raise ValueError("packed batch: targets must map every modality of the batch to its decoder slots")
        for name, index in self.targets.items():
            if not _is_integer(index) or index.dim() != 1:
                what = f"{index.dtype} {tuple(index.shape)}" if isinstance(index, Tensor) else type(index).__name__
                raise ValueError(f"packed batch: targets[{name!r}] must be a 1-D integer tensor, got {what}")

    # ------------------------------------------------------------------ shape and movement
    @property
    def modality_names(self) -> list[str]:
        """The batch's modalities, sorted: ``modality`` entries index this list."""
        return sorted(self.targets)

    @property
    def num_rows(self) -> int:
        """Rows per side."""
        return self.encoder.ids.shape[0]

    @property
    def widths(self) -> tuple[int, int]:
        """Slots per row: (encoder, decoder)."""
        return self.encoder.ids.shape[1], self.decoder.ids.shape[1]

    @property
    def slots(self) -> tuple[int, int]:
        """Slots a forward computes: (encoder, decoder) rows x width."""
        return self.encoder.ids.numel(), self.decoder.ids.numel()

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PackedBatch:
        """The batch on ``device`` (``non_blocking`` copies from pinned memory overlap the host)."""
        return PackedBatch(self.encoder.to(device, non_blocking), self.decoder.to(device, non_blocking),
                           {k: v.to(device, non_blocking=non_blocking) for k, v in self.targets.items()})

    def as_dict(self) -> dict[str, dict[str, Tensor]]:
        """The batch as nested dicts of tensors (``torch.load(..., weights_only=True)`` reads it back)."""
        def side(s: PackedSide) -> dict[str, Tensor]:
            return {key: getattr(s, key) for key in PACKED_SIDE_KEYS}

        return {"encoder": side(self.encoder), "decoder": side(self.decoder), "targets": dict(self.targets)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Tensor]]) -> PackedBatch:
        """The batch from :meth:`as_dict`'s nested dicts (checked as any packed batch)."""
        if not isinstance(data, Mapping) or set(data) != set(PACKED_KEYS):
            got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"a packed batch dict must hold exactly {list(PACKED_KEYS)}, got {got}")
        sides = []
        for name in ("encoder", "decoder"):
            entry = data[name]
            if not isinstance(entry, Mapping) or set(entry) != set(PACKED_SIDE_KEYS):
                got = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
                raise ValueError(f"packed batch: {name} must hold exactly {list(PACKED_SIDE_KEYS)}, got {got}")
            sides.append(PackedSide(**entry))
        return cls(*sides, dict(data["targets"]))

    # ------------------------------------------------------------------ validation
    def modality_indices(self, names: Sequence[str]) -> list[int]:
        """The position in ``names`` (a model's modalities) of each of the batch's modalities, in batch order."""
        unknown = [n for n in self.modality_names if n not in names]
        if unknown:
            raise ValueError(f"packed batch: targets name modalities {unknown} that are not among {list(names)}")
        return [list(names).index(n) for n in self.modality_names]

    def check_values(self, specs: Mapping[str, ModalitySpec]) -> None:
        """The debug check (host syncs): valid slots form each row's prefix, modality indices, token ids and
        positions are in range for ``specs``, and each modality's targets are decoder slots of that modality."""
        names = self.modality_names
        self.modality_indices(list(specs))
        for side_name in ("encoder", "decoder"):
            side = getattr(self, side_name)
            modality = side.modality.long()
            if bool(((modality < -1) | (modality >= len(names))).any()):
                raise ValueError(f"packed batch: {side_name}.modality must be in [-1, {len(names)}) "
                                 f"(indices into sorted(targets))")
            if not torch.equal(modality >= 0, side.valid):
                raise ValueError(f"packed batch: the tokens of {side_name} row r must be its first lengths[r] slots "
                                 f"(modality -1 after)")
            for i, name in enumerate(names):
                here, spec = modality == i, specs[name]
                for key, limit in (("ids", spec.vocab_size), ("positions", spec.num_tokens)):
                    values = getattr(side, key)
                    bad = here & ((values < 0) | (values >= limit))
                    if bool(bad.any()):
                        raise ValueError(f"packed batch: {side_name}.{key} has {name} values "
                                         f"{values[bad].unique()[:5].tolist()} outside [0, {limit})")
        flat = self.decoder.modality.reshape(-1).long()
        for i, name in enumerate(names):
            index = self.targets[name]
            used = index[index >= 0]
            in_range = bool((index >= -1).all()) and bool((used < flat.numel()).all())
            if not in_range or bool((flat[used] != i).any()):
                raise ValueError(f"packed batch: targets[{name!r}] must list decoder slots of {name} (or -1)")

    # ------------------------------------------------------------------ counting (CPU tensors)
    def _num_samples(self) -> int:
        """One past the highest sample id present (samples after it have no tokens)."""
        ids = torch.cat([self.encoder.samples.reshape(-1), self.decoder.samples.reshape(-1)]).long()
        return int(torch.cat([ids, ids.new_full((1,), -1)]).max()) + 1

    def sample_tokens(self) -> tuple[tuple[int, ...], tuple[dict[str, int], ...]]:
        """Per sample (up to the last one with tokens): its encoder tokens, and its decoder targets by modality
        (modalities without targets left out)."""
        names, size = self.modality_names, self._num_samples()
        enc_samples = self.encoder.samples.reshape(-1).long()
        dec_samples, dec_mod = self.decoder.samples.reshape(-1).long(), self.decoder.modality.reshape(-1).long()
        per_enc = torch.bincount(enc_samples[enc_samples >= 0], minlength=size)
        keep = dec_samples >= 0
        per_dec = torch.bincount(dec_samples[keep] * len(names) + dec_mod[keep], minlength=size * len(names))
        per_dec = per_dec.view(size, len(names)).tolist()
        return tuple(per_enc.tolist()), tuple({n: c for n, c in zip(names, row) if c} for row in per_dec)

    def row_samples(self) -> list[list[tuple[int, int]]]:
        """Per row, the ``(encoder tokens, decoder tokens)`` of each sample in it, in sample order."""
        rows = []
        for enc, dec in zip(self.encoder.samples.long(), self.decoder.samples.long()):
            size = int(torch.cat([enc, dec, enc.new_full((1,), -1)]).max()) + 1
            enc_counts = torch.bincount(enc[enc >= 0], minlength=size).tolist()
            dec_counts = torch.bincount(dec[dec >= 0], minlength=size).tolist()
            rows.append([(e, d) for e, d in zip(enc_counts, dec_counts) if e or d])
        return rows

    def efficiency(self) -> dict[str, float]:
        """Valid tokens / computed slots, per side (``encoder``, ``decoder``) and ``total``."""
        valid = {side: int(getattr(self, side).lengths.sum()) for side in ("encoder", "decoder")}
        computed = dict(zip(("encoder", "decoder"), self.slots))
        out = {side: valid[side] / computed[side] if computed[side] else 1.0 for side in valid}
        total = sum(computed.values())
        out["total"] = sum(valid.values()) / total if total else 1.0
        return out

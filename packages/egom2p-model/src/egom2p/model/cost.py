"""What the model costs: FLOPs for MFU, the relative work of a packed layout, and the packing each backend wants.

The one owner of these formulas: the trainer's throughput counting (``egom2p.train.throughput``), its packing
(``egom2p.train.packing`` asks :func:`choose_packing`), packed inference (``EgoM2P.encode(pack=True)`` asks
:func:`inference_rows`) and the benchmarks (``bench/``) all read them here.

FLOPs count a multiply-add as 2. A matmul's backward is two matmuls of the same size (the gradients of its
input and of its weight), so a training step costs ``TRAINING_FACTOR = 3`` forwards: the usual MFU convention,
which counts the model's FLOPs and not the work a kernel adds by recomputing. A flash-attention backward does
recompute the scores, so a kernel benchmark that reports the FLOP/s the kernel actually sustains counts
``1 + FLASH_BACKWARD_FACTOR = 3.5`` forwards for attention.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from egom2p.core.enums import AttnBackend
from egom2p.core.packing import PackedBatch, first_fit_rows

from .attention import computed_pairs
from .config import EgoM2PConfig

if TYPE_CHECKING:
    from .model import EgoM2P

__all__ = [
    "BACKWARD_FACTOR",
    "FLASH_BACKWARD_FACTOR",
    "TRAINING_FACTOR",
    "attention_flops",
    "choose_packing",
    "flops_per_sample",
    "inference_rows",
    "packed_work",
    "packing_row_counts",
    "padding_flops",
]

BACKWARD_FACTOR = 2  # a matmul's backward: the gradient of its input and of its weight, each a matmul of its size
TRAINING_FACTOR = 1 + BACKWARD_FACTOR  # forward + backward, in forwards (model FLOPs: recomputation not counted)
# A flash-attention backward: the scores recomputed, then dV, dP, dQ and dK: 5 matmuls against the forward's 2.
FLASH_BACKWARD_FACTOR = 2.5

# packed_work's unit is one query-key pair of attention (4 D FLOPs); a slot's linear layers (the projections and
# the MLP, ~24 D^2 FLOPs at MLP ratio 4) cost about this many D of them.
LINEAR_PAIRS_PER_SLOT = 6

# Packed inference tries rows as wide as the longest sample, that rounded up to this (room for short samples
# beside a long one), and one row for everything (see inference_rows).
INFERENCE_ROUNDING = 256


def attention_flops(pairs: int, dim: int) -> int:
    """Forward FLOPs of attention over ``pairs`` query-key pairs at width ``dim`` (all heads, or one head's
    ``head_dim`` with pairs counted per head): the score and the weighted sum, a multiply-add per dim each."""
    return 4 * dim * pairs


def flops_per_sample(
    config: EgoM2PConfig,
    num_encoder_tokens: int,
    num_decoder_tokens: int,
    decoder_tokens_per_modality: Mapping[str, int] | None = None,
    backward: bool = True,
) -> float:
    """FLOPs of one sample through a model of ``config`` (multiply-add = 2 FLOPs), for MFU.

    With N encoder and M decoder tokens, D = dim, H = MLP hidden, L_e / L_d = depths:
    - encoder layer: 2N(3D^2 + D^2) projections + k_mlp*2NDH MLP + 4N^2 D attention
      (scores and weighted sum over all N keys);
    - context projection 2ND^2;
    - decoder layer: 2M(3D^2 + D^2) self projections + 4 D sum_m M_m^2 self-attention
      (targets see only their own modality's M_m targets; M_m^2 summed over modalities,
      or M^2 with ``decoder_sep_mask`` off) + 2M D^2 + 2N(2D^2) + 2MD^2 cross projections
      + 4MND cross-attention + k_mlp*2MDH MLP;
    - heads: 2 M_m D V_m per modality.
    k_mlp = 3 for SwiGLU, 2 for GELU. Embedding lookups, norms and softmax are not counted.
    Without ``decoder_tokens_per_modality`` all M targets are assumed to belong to the
    modality with the largest vocabulary (an upper bound; the common video case).
    ``backward=True`` returns forward + backward = ``TRAINING_FACTOR`` x forward.
    """
    modalities = config.modalities
    n, m, d, h = num_encoder_tokens, num_decoder_tokens, config.dim, config.mlp_hidden
    if decoder_tokens_per_modality is None:
        largest = max(modalities, key=lambda k: modalities[k].vocab_size)
        decoder_tokens_per_modality = {largest: m}
    unknown = set(decoder_tokens_per_modality) - set(modalities)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)} in decoder_tokens_per_modality")
    if sum(decoder_tokens_per_modality.values()) != m:
        raise ValueError(f"decoder_tokens_per_modality sums to {sum(decoder_tokens_per_modality.values())}, expected {m}")
    k_mlp = 3 if config.gated_mlp else 2
    encoder = config.encoder_depth * (2 * n * 4 * d * d + k_mlp * 2 * n * d * h + attention_flops(n * n, d))
    self_pairs = sum(c * c for c in decoder_tokens_per_modality.values()) if config.decoder_sep_mask else m * m
    decoder = config.decoder_depth * (
        2 * m * 4 * d * d + attention_flops(self_pairs, d) + 2 * m * d * d + 2 * n * 2 * d * d + 2 * m * d * d
        + attention_flops(m * n, d) + k_mlp * 2 * m * d * h
    )
    heads = sum(2 * c * d * modalities[k].vocab_size for k, c in decoder_tokens_per_modality.items())
    forward = encoder + 2 * n * d * d + decoder + heads
    return float(TRAINING_FACTOR * forward if backward else forward)


def padding_flops(config: EgoM2PConfig) -> tuple[float, float]:
    """Training FLOPs of one padding slot in the encoder and in the decoder: its linear work in every layer
    (a padded slot has no attention partner and, in the decoder, no head)."""
    modalities = config.modalities
    smallest = min(modalities, key=lambda k: modalities[k].vocab_size)
    head = TRAINING_FACTOR * 2 * config.dim * modalities[smallest].vocab_size
    return flops_per_sample(config, 1, 0, {}), flops_per_sample(config, 0, 1, {smallest: 1}) - head


def packed_work(model: EgoM2P, rows: Sequence[Sequence[tuple[int, int]]], widths: tuple[int, int]) -> int:
    """Relative work of packed rows on ``model``'s attention backend and device, to choose a packing.

    ``rows[r]`` lists the ``(encoder tokens, decoder tokens)`` of each sample packed in row ``r``
    (:meth:`PackedBatch.row_samples`); every row is ``widths = (encoder width, decoder width)`` slots wide. In
    units of one query-key pair of attention: the linear layers cost ``LINEAR_PAIRS_PER_SLOT`` dim pairs per
    slot; attention costs the pairs :func:`~egom2p.model.attention.computed_pairs` says the backend computes
    (the encoder's self-attention, the decoder's self- and cross-attention): each sample's own pairs with the
    Triton kernel and with ``sdpa`` on the CPU when per-run attention pays, every pair of the row otherwise.
    """
    config = model.config
    enc_width, dec_width = widths
    heads, head_dim = config.num_heads, config.dim // config.num_heads
    device = model.mask_token.device

    def pairs(num_q: int, num_k: int, runs: list[tuple[int, int]]) -> int:  # 0 when a side is empty
        return computed_pairs(model.attn_backend, device, num_q, num_k, runs, heads, head_dim)

    work = 0
    for row in rows:
        work += LINEAR_PAIRS_PER_SLOT * config.dim * (enc_width + dec_width)
        work += pairs(enc_width, enc_width, [(e, e) for e, _ in row])
        work += pairs(dec_width, dec_width, [(d, d) for _, d in row]) + pairs(dec_width, enc_width, list(row))
    return work


def packing_row_counts(model: EgoM2P, batch_size: int) -> list[int]:
    """The row counts worth trying for a training batch of ``batch_size`` samples on ``model``'s backend.

    The Triton kernel's work is linear in the slots and one row has the fewest (``R x`` a rounded-up row width
    is never below the rounded-up total), so it gets one row. Other backends may compute every pair of a row,
    so they try 1, 2, 4, ... rows up to the batch size.
    """
    if model.attn_backend is AttnBackend.TRITON:
        return [1]
    counts, rows = [], 1
    while rows <= max(batch_size, 1):
        counts.append(rows)
        rows *= 2
    return counts


def choose_packing(model: EgoM2P, pack: Callable[[int], PackedBatch], batch_size: int) -> PackedBatch:
    """The cheapest packing (:func:`packed_work`) of a training batch among :func:`packing_row_counts`;
    ``pack(rows)`` packs the batch into that many rows. Ties go to fewer rows."""
    counts = packing_row_counts(model, batch_size)
    if len(counts) == 1:
        return pack(counts[0])
    return min((pack(rows) for rows in counts), key=lambda p: packed_work(model, p.row_samples(), p.widths))


def inference_rows(model: EgoM2P, lengths: Sequence[int]) -> list[list[int]]:
    """Rows for packed inference of samples with these token counts (encoder only): the cheapest
    (:func:`packed_work`) of first-fit packings into rows as wide as the longest sample, that rounded up to
    ``INFERENCE_ROUNDING``, and one row for everything."""

    def work(rows: list[list[int]]) -> int:
        width = max((sum(lengths[s] for s in row) for row in rows), default=0)
        return packed_work(model, [[(lengths[s], 0) for s in row] for row in rows], (width, 0))

    longest = max(lengths, default=0)
    capacities = (longest, -(-longest // INFERENCE_ROUNDING) * INFERENCE_ROUNDING, sum(lengths))
    return min((first_fit_rows(lengths, capacity) for capacity in capacities), key=work)

"""The EgoM2P encoder-decoder (SPEC 2), readable top to bottom.

forward: a masked batch (egom2p.core.batch) or a packed batch (egom2p.data.packing) -> token layouts
(encoder inputs, decoder targets; ``inputs.py``) -> encoder -> context -> decoder (mask-token queries)
-> per-modality heads and cross-entropy -> reduced loss.

The training forward reads nothing back from the device (no host synchronisation): with token budgets
every shape is static (padded slots are masked), embeddings and heads are gathered with static-size
indices, and the target counts stay tensors. Only ``check_vocab=True`` (a debug check; the loader
validates every sample) and the inference helpers (``budget=None``, ``encode(pack=True)``,
``return_logits``) read the device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from egom2p.core.batch import validate_batch
from egom2p.core.enums import AttnBackend, LossType
from egom2p.core.packing import is_packed_batch
from torch import nn

from .attention import computed_pairs, resolve_backend
from .checkpoint import load_pretrained, save_pretrained
from .config import EgoM2PConfig
from .embeddings import DecoderEmbedding, EncoderEmbedding, position_table
from .inputs import (
    IGNORE_INDEX,
    TokenLayout,
    first_fit,
    pack_layout,
    read_packed_batch,
    select_tokens,
    target_slots,
)
from .layers import DecoderBlock, EncoderBlock, layer_norm
from .losses import cross_entropy_sum, reduce_losses, scale_mod_losses
from .presets import preset_config

Batch = Mapping[str, Mapping[str, torch.Tensor]]

# Packed inference tries rows as wide as the longest sample, that rounded up to this (room for short
# samples beside a long one), and one row for everything (see EgoM2P._pack_rows).
PACK_ROUNDING = 256


# State-dict sections: the per-modality embeddings, and the blocks with their final norms (the original's
# "shared parameters", which its fine-tuning warm-up freezes).
EMBEDDING_SECTIONS = ("encoder_embeddings", "decoder_embeddings")
BLOCK_SECTIONS = ("encoder", "encoder_norm", "decoder", "decoder_norm")


def parameter_modality(name: str) -> str | None:
    """The modality whose embedding holds the parameter (or state-dict entry) ``name``
    (``encoder_embeddings.tok_rgb.token_emb.weight`` -> ``tok_rgb``), or None for one every modality shares."""
    section, _, rest = name.partition(".")
    return rest.partition(".")[0] or None if section in EMBEDDING_SECTIONS else None


def is_block_parameter(name: str) -> bool:
    """Whether ``name`` belongs to an encoder/decoder block or their final norms."""
    return name.partition(".")[0] in BLOCK_SECTIONS


@dataclass
class EgoM2POutput:
    """Result of a training forward.

    ``num_targets``: per modality, the number of targets as an int64 0-dim tensor (on the batch's
    device: reading it is a host sync). ``logits`` (only with ``return_logits=True``): per modality
    ``[T_m, V_m]`` at that modality's targets, ordered by sample, then position.
    """

    loss: torch.Tensor
    mod_loss: dict[str, torch.Tensor]
    num_targets: dict[str, torch.Tensor]
    logits: dict[str, torch.Tensor] | None = None


@dataclass
class EncoderContext:
    """Encoder output as the decoder reads it: ``decoder_proj_context(x) + emb``; valid keys are a prefix.

    One row per sample, or (``encode(..., pack=True)``) rows holding several samples: then
    ``samples`` gives each key's sample and ``sample_rows`` each sample's row.
    """

    context: torch.Tensor  # [R, N, D], N may be 0
    key_lengths: torch.Tensor  # int32 [R]
    samples: torch.Tensor | None = None  # int32 [R, N], -1 at padding; None: row r is sample r
    sample_rows: list[int] | None = None  # packed inference: the row of each sample

    @property
    def num_samples(self) -> int:
        """Samples encoded (rows, unless packed)."""
        return self.context.shape[0] if self.sample_rows is None else len(self.sample_rows)


class EgoM2P(nn.Module):
    """Any-to-any masked-modelling encoder-decoder over token modalities.

    ``attn_backend`` is the concrete attention backend, resolved from ``config.attn_backend`` when
    the model is built and again whenever it moves (``.to``/``.cuda``): ``auto`` becomes ``triton``
    on CUDA and ``sdpa`` elsewhere (``sdpa`` for the causal-decoder variant, which Triton lacks).
    """

    def __init__(self, config: EgoM2PConfig) -> None:
        super().__init__()
        if not isinstance(config, EgoM2PConfig):
            raise TypeError(f"config must be an EgoM2PConfig, got {type(config).__name__}")
        self.config = config
        self.modalities = dict(config.modalities)
        self.modality_names = list(self.modalities)  # sorted
        self._modality_index = {name: i for i, name in enumerate(self.modality_names)}
        dim = config.dim

        encoder_embeddings, decoder_embeddings = {}, {}
        for name, spec in self.modalities.items():
            table = position_table(spec, dim)  # one tensor shared by both sides
            encoder_embeddings[name] = EncoderEmbedding(spec, dim, table)
            decoder_embeddings[name] = DecoderEmbedding(spec, dim, table)
        self.encoder_embeddings = nn.ModuleDict(encoder_embeddings)
        self.decoder_embeddings = nn.ModuleDict(decoder_embeddings)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))

        self.encoder = nn.ModuleList(EncoderBlock(config) for _ in range(config.encoder_depth))
        self.encoder_norm = layer_norm(dim, config.norm_bias)
        self.decoder_proj_context = nn.Linear(dim, dim, bias=True)  # the original's only biased linear layer
        self.decoder = nn.ModuleList(DecoderBlock(config) for _ in range(config.decoder_depth))
        self.decoder_norm = layer_norm(dim, config.norm_bias)
        self.attn_backend = self._resolve_backend()
        self.reset_parameters()

    def _resolve_backend(self) -> AttnBackend:
        return resolve_backend(self.config.attn_backend, self.mask_token.device, self.config.decoder_causal_mask)

    def _apply(self, fn, recurse: bool = True):
        # Every device move (.to, .cuda, .cpu, to_empty) goes through here: re-resolve `auto` for the new device.
        out = super()._apply(fn, recurse)
        self.attn_backend = self._resolve_backend()
        return out

    # ----------------------------------------------------------------------------------- init
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """MAE-style init of the original (SPEC 2.7).

        Linear: Xavier-uniform, with fan-out split per projection for ``qkv`` (by 3) and ``kv``
        (by 2); biases 0. LayerNorm: weight 1, bias 0. Encoder token tables, modality embeddings
        and the mask token: normal(0, init_std). Decoder token tables (= output heads): Xavier-
        uniform, bound sqrt(6 / (D + V)), which is what the trained original effectively got (quirk 3).
        """
        std = self.config.init_std
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                fan_out, fan_in = module.weight.shape
                if "qkv" in name:
                    fan_out //= 3
                elif "kv" in name:
                    fan_out //= 2
                bound = math.sqrt(6.0 / (fan_out + fan_in))
                nn.init.uniform_(module.weight, -bound, bound)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                if module.weight is not None:
                    nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for name in self.modality_names:
            nn.init.normal_(self.encoder_embeddings[name].token_emb.weight, std=std)
            nn.init.normal_(self.encoder_embeddings[name].mod_emb, std=std)
            nn.init.xavier_uniform_(self.decoder_embeddings[name].token_emb.weight)
        nn.init.normal_(self.mask_token, std=std)

    # ------------------------------------------------------------------------- constructors
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> EgoM2P:
        """A fresh model of a named preset (``egom2p-base``, an original registry name, ...)."""
        return cls(preset_config(name, **overrides))

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | Mapping[str, torch.Tensor],
        config: EgoM2PConfig | Mapping | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        revision: str | None = None,
    ) -> EgoM2P:
        """Load our directory (safetensors + config.json), a training run, the original ``.pth``, a Hugging
        Face Hub id or a state dict; the model comes back in eval mode on ``device`` in ``dtype``.

        ``path`` is found by :func:`egom2p.model.checkpoint.resolve_checkpoint`: a checkpoint directory
        (a trainer's ``checkpoints/step-N/`` is one), a run's ``output_dir`` or its ``checkpoints/``
        folder (the newest complete step), an original ``.pth``/``.pt`` file (read safely, with
        ``weights_only=True``), or ``org/repo`` on the Hub (``revision``: branch, tag or commit; the
        ``[hub]`` extra; offline from the local cache with ``HF_HUB_OFFLINE=1``). ``config`` (an
        EgoM2PConfig or dict) overrides the architecture stored with the weights; it is required for
        a bare state dict. ``dtype``: a floating dtype or its name (``"bfloat16"``).
        """
        return load_pretrained(cls, path, config, device=device, dtype=dtype, revision=revision)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (atomically, see ``write_pretrained``)."""
        save_pretrained(self, directory)

    # ------------------------------------------------------------------------- embeddings
    def _embed(self, layout: TokenLayout, build) -> torch.Tensor:
        """``[R, L, D]`` with ``build(name, ids, positions)`` at each modality's slots, zeros at padding.

        Every modality's function runs on every slot (others read index 0 and are discarded): static
        shapes, no host sync, and every table takes part in the graph (zero grads, DDP-safe).
        """
        out = self.mask_token.new_zeros(*layout.ids.shape, self.config.dim)
        for i, name in enumerate(self.modality_names):
            here = layout.modality == i
            values = build(name, torch.where(here, layout.ids, 0), torch.where(here, layout.positions, 0))
            out = torch.where(here[..., None], values.to(out.dtype), out)
        return out

    def _position_emb(self, name: str, positions: torch.Tensor) -> torch.Tensor:
        emb = self.encoder_embeddings[name]
        return emb.pos_emb[0, positions] + emb.mod_emb[0]

    # ------------------------------------------------------------------------- trunk
    def _encode_layout(self, layout: TokenLayout) -> EncoderContext:
        tokens = self._embed(layout, lambda name, ids, pos: self.encoder_embeddings[name].token_emb(ids))
        emb = self._embed(layout, lambda name, ids, pos: self._position_emb(name, pos))
        x = tokens + emb
        for block in self.encoder:
            x = block(x, self.attn_backend, layout.lengths, layout.samples)
        x = self.encoder_norm(x)
        # The embeddings are added again to the context (zero at padding, SPEC 2.4 step 6).
        return EncoderContext(context=self.decoder_proj_context(x) + emb, key_lengths=layout.lengths, samples=layout.samples)

    def _decode(
        self,
        y: torch.Tensor,
        ctx: EncoderContext,
        self_lengths: torch.Tensor | None,
        self_segments: torch.Tensor | None,
        samples: torch.Tensor | None,
        causal: bool,
    ) -> torch.Tensor:
        """Decoder blocks; ``samples`` (packed rows) keeps each query to its own sample's context."""
        context = ctx.context.to(y.dtype)
        for block in self.decoder:
            y = block(y, context, self.attn_backend, self_lengths, self_segments, ctx.key_lengths, causal,
                      samples, ctx.samples)
        return self.decoder_norm(y)

    def _self_segments(self, layout: TokenLayout) -> torch.Tensor | None:
        """Decoder self-attention segments: a target sees the targets of its own sample (and, with
        ``decoder_sep_mask``, of its own modality)."""
        if not self.config.decoder_sep_mask:
            return layout.samples
        if layout.samples is None:
            return layout.modality
        return layout.samples * len(self.modality_names) + layout.modality

    def encode(
        self, batch: Batch, num_encoder_tokens: int | None = None, check_vocab: bool = True, pack: bool = False
    ) -> EncoderContext:
        """Run the encoder on the batch's inputs; ``None`` keeps as many tokens as the fullest sample has.

        ``check_vocab=False`` skips the token-id range check (a host sync per modality). ``pack=True``
        (inference) packs the samples' inputs into shared rows, so that short samples (an unconditional
        guidance pass) do not compute the padding up to the longest one; ``decode_positions`` reads
        either kind of context.
        """
        inputs = validate_batch(batch, self.modalities, check_vocab=check_vocab)
        layout = select_tokens(inputs, self._modality_index, "input", num_encoder_tokens)
        if not pack:
            return self._encode_layout(layout)
        packed, rows = pack_layout(layout, self._pack_rows(layout.lengths.tolist()))
        ctx = self._encode_layout(packed)
        ctx.sample_rows = rows
        return ctx

    def packed_work(self, rows: Sequence[Sequence[tuple[int, int]]], widths: tuple[int, int]) -> int:
        """Relative work of packed rows on this model's attention backend and device, to choose a packing.

        ``rows[r]`` lists the ``(encoder tokens, decoder tokens)`` of each sample packed in row ``r``; every row
        is ``widths = (encoder width, decoder width)`` slots wide. In units of one query-key pair of attention:
        the linear layers cost about 6 dim pairs per slot (24 dim^2 FLOPs against 4 dim); attention costs the
        pairs :func:`~egom2p.model.attention.computed_pairs` says the backend computes (the encoder's self-
        attention, the decoder's self- and cross-attention): each sample's own pairs with the Triton kernel and
        with ``sdpa`` on the CPU when per-run attention pays, every pair of the row otherwise.
        """
        enc_width, dec_width = widths
        heads, head_dim = self.config.num_heads, self.config.dim // self.config.num_heads
        device = self.mask_token.device

        def pairs(num_q: int, num_k: int, runs: list[tuple[int, int]]) -> int:  # 0 when a side is empty
            return computed_pairs(self.attn_backend, device, num_q, num_k, runs, heads, head_dim)

        work = 0
        for row in rows:
            work += 6 * self.config.dim * (enc_width + dec_width)
            work += pairs(enc_width, enc_width, [(e, e) for e, _ in row])
            work += pairs(dec_width, dec_width, [(d, d) for _, d in row]) + pairs(dec_width, enc_width, list(row))
        return work

    def _pack_rows(self, lengths: list[int]) -> list[list[int]]:
        """The cheapest (:meth:`packed_work`) of a few first-fit packings of samples with these token counts."""

        def work(rows: list[list[int]]) -> int:
            width = max((sum(lengths[s] for s in row) for row in rows), default=0)
            return self.packed_work([[(lengths[s], 0) for s in row] for row in rows], (width, 0))

        longest = max(lengths, default=0)
        capacities = (longest, -(-longest // PACK_ROUNDING) * PACK_ROUNDING, sum(lengths))
        return min((first_fit(lengths, capacity) for capacity in capacities), key=work)

    def decode_positions(self, ctx: EncoderContext, modality: str, positions: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, k, V]`` of ``modality`` at ``positions`` (int64 ``[B, k]``).

        Queries are mask token + position + modality embedding; they attend to each other
        without restriction and to the context's valid keys (SPEC 2.5, inference).
        """
        if modality not in self.modalities:
            raise ValueError(f"unknown modality {modality!r}; the model has {self.modality_names}")
        num_tokens = self.modalities[modality].num_tokens
        if positions.dim() != 2 or positions.shape[0] != ctx.num_samples:
            raise ValueError(f"positions must have shape [{ctx.num_samples}, k], got {tuple(positions.shape)}")
        if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= num_tokens):
            raise ValueError(f"positions for {modality!r} must be in [0, {num_tokens}), got [{int(positions.min())}, {int(positions.max())}]")
        head = self.decoder_embeddings[modality].head_weight
        y = self.mask_token + self._position_emb(modality, positions.long())
        if ctx.sample_rows is None:
            return F.linear(self._decode(y, ctx, None, None, None, causal=False), head)
        return F.linear(self._decode_packed_queries(y, ctx), head)

    def _decode_packed_queries(self, y: torch.Tensor, ctx: EncoderContext) -> torch.Tensor:
        """Decode queries ``y`` [B, k, D] against a packed context: each sample's k queries go, in sample
        order, into its context row; they see each other and their own sample's keys only."""
        batch, k, dim = y.shape
        rows = ctx.context.shape[0]
        per_row = [0] * rows
        offsets = []
        for row in ctx.sample_rows:
            offsets.append(per_row[row] * k)
            per_row[row] += 1
        width = max(per_row, default=0) * k
        device = y.device
        first = torch.tensor(ctx.sample_rows, device=device) * width + torch.tensor(offsets, device=device)
        dest = (first[:, None] + torch.arange(k, device=device)[None, :]).reshape(-1)
        flat = y.new_zeros(rows * width, dim).index_copy(0, dest, y.reshape(-1, dim))
        owner = torch.arange(batch, dtype=torch.int32, device=device).repeat_interleave(k)
        samples = torch.full((rows * width,), -1, dtype=torch.int32, device=device).index_copy(0, dest, owner)
        lengths = torch.tensor([n * k for n in per_row], dtype=torch.int32, device=device)
        samples = samples.view(rows, width)
        out = self._decode(flat.view(rows, width, dim), ctx, lengths, samples, samples, causal=False)
        return out.reshape(-1, dim).index_select(0, dest).view(batch, k, dim)

    def forward(
        self,
        batch: Batch,
        num_encoder_tokens: int | None = None,
        num_decoder_tokens: int | None = None,
        loss_type: str = "mod",
        return_logits: bool = False,
        check_vocab: bool = True,
    ) -> EgoM2POutput:
        """Masked-modelling loss of a masked batch or a packed batch (docs/contracts.md).

        Masked batch: budgets are per sample (the original's 2048/2048 in training); ``None`` = every
        selected token (rows trimmed to the fullest sample: a host sync). Samples with fewer tokens
        are padded; padding never influences valid tokens.
        Packed batch (``egom2p.data.packing.pack_batch``, keys ``encoder``/``decoder``/``targets``):
        the packer applied the budgets, so the budget arguments are not used; losses are those of
        the unpacked batch.
        ``loss_type`` is a :class:`egom2p.core.enums.LossType` value. ``check_vocab=False`` skips the
        token-id range check (host syncs) for batches already known to be in range: the training
        path, which then never reads the device (``mod`` and ``weighted_mod`` losses).
        """
        loss_type = LossType.parse(loss_type, "loss_type")
        if is_packed_batch(batch):
            encoder, decoder, targets = read_packed_batch(batch, self.modalities, check_values=check_vocab)
        else:
            inputs = validate_batch(batch, self.modalities, check_vocab=check_vocab)
            encoder = select_tokens(inputs, self._modality_index, "input", num_encoder_tokens)
            decoder = select_tokens(inputs, self._modality_index, "target", num_decoder_tokens)
            index = {name: self._modality_index[name] for name in inputs}
            targets = target_slots(decoder, index, {name: self.modalities[name].num_tokens for name in inputs})

        ctx = self._encode_layout(encoder)
        queries = self._embed(decoder, lambda name, ids, pos: self.mask_token[0] + self._position_emb(name, pos))
        causal = self.config.decoder_causal_mask
        y = self._decode(queries, ctx, decoder.lengths, self._self_segments(decoder), decoder.samples, causal)

        # Heads: each modality's targets gathered with a static-size index (-1 = unused entry, ignored by the loss).
        hidden_slots, id_slots = y.reshape(-1, y.shape[-1]), decoder.ids.reshape(-1)
        mod_loss, num_targets, logits = {}, {}, {}
        for name, slots in targets.items():
            keep, slots = slots >= 0, slots.clamp(min=0)
            hidden = hidden_slots.index_select(0, slots)
            target_ids = torch.where(keep, id_slots.index_select(0, slots), IGNORE_INDEX)
            weight = self.decoder_embeddings[name].head_weight
            count = keep.sum()
            ce_sum = cross_entropy_sum(hidden, weight, target_ids, self.config.fused_loss, self.config.fused_loss_chunk_size)
            mod_loss[name] = ce_sum / count.clamp(min=1)
            num_targets[name] = count
            if return_logits:
                logits[name] = F.linear(hidden[keep], weight).float()
        vocab = {name: self.modalities[name].vocab_size for name in targets}
        loss = reduce_losses(mod_loss, num_targets, vocab, loss_type)
        mod_loss = scale_mod_losses(mod_loss, vocab, loss_type)  # weighted_mod reports the rescaled losses, as the original
        return EgoM2POutput(loss=loss, mod_loss=mod_loss, num_targets=num_targets, logits=logits if return_logits else None)

    # ------------------------------------------------------------------------- accounting
    def flops_per_sample(
        self,
        num_encoder_tokens: int,
        num_decoder_tokens: int,
        decoder_tokens_per_modality: Mapping[str, int] | None = None,
        backward: bool = True,
    ) -> float:
        """FLOPs of one sample (multiply-add = 2 FLOPs), for MFU.

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
        ``backward=True`` returns forward + backward = 3x forward.
        """
        cfg = self.config
        n, m, d, h = num_encoder_tokens, num_decoder_tokens, cfg.dim, cfg.mlp_hidden
        if decoder_tokens_per_modality is None:
            largest = max(self.modality_names, key=lambda k: self.modalities[k].vocab_size)
            decoder_tokens_per_modality = {largest: m}
        unknown = set(decoder_tokens_per_modality) - set(self.modalities)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)} in decoder_tokens_per_modality")
        if sum(decoder_tokens_per_modality.values()) != m:
            raise ValueError(f"decoder_tokens_per_modality sums to {sum(decoder_tokens_per_modality.values())}, expected {m}")
        k_mlp = 3 if cfg.gated_mlp else 2
        encoder = cfg.encoder_depth * (2 * n * 4 * d * d + k_mlp * 2 * n * d * h + 4 * n * n * d)
        self_pairs = sum(c * c for c in decoder_tokens_per_modality.values()) if cfg.decoder_sep_mask else m * m
        decoder = cfg.decoder_depth * (
            2 * m * 4 * d * d + 4 * d * self_pairs + 2 * m * d * d + 2 * n * 2 * d * d + 2 * m * d * d
            + 4 * m * n * d + k_mlp * 2 * m * d * h
        )
        heads = sum(2 * c * d * self.modalities[k].vocab_size for k, c in decoder_tokens_per_modality.items())
        forward = encoder + 2 * n * d * d + decoder + heads
        return float(3 * forward if backward else forward)

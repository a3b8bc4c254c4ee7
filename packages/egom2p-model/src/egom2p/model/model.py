"""The EgoM2P encoder-decoder (docs/original-behaviour.md#architecture), readable top to bottom.

forward: a masked batch (egom2p.core.batch) or a packed batch (egom2p.core.packing) -> token layouts
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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from egom2p.core.batch import MaskedBatch, validate_batch
from egom2p.core.checkpoints import write_checkpoint_dir
from egom2p.core.enums import AttnBackend, LossType
from egom2p.core.packing import PackedBatch
from torch import nn

from .attention import resolve_backend
from .checkpoint import check_state_dict, load_pretrained
from .config import EgoM2PConfig
from .cost import inference_rows
from .embeddings import DecoderEmbedding, EncoderEmbedding, position_table
from .inputs import (
    IGNORE_INDEX,
    TokenLayout,
    pack_layout,
    read_packed_batch,
    select_tokens,
    target_slots,
)
from .kernels.reference import AttentionMask
from .layers import AttentionLayer, DecoderBlock, EncoderBlock, layer_norm
from .losses import cross_entropy_sum, reduce_losses, scale_mod_losses
from .presets import preset_config

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


def write_pretrained(directory: str | Path, state_dict: Mapping[str, torch.Tensor], config: EgoM2PConfig) -> None:
    """Write ``model.safetensors`` (``state_dict``) and ``config.json`` (``config``) into ``directory``.

    The file-writing half of ``EgoM2P.save_pretrained``, for callers that hold a full state dict but no
    model to call it on (the trainer exporting a sharded or compiled model). The keys and shapes
    must be those of ``EgoM2P(config)`` (ValueError naming the differences otherwise, before anything is
    written), so the directory always opens with ``EgoM2P.from_pretrained``. The files are written
    atomically by :func:`egom2p.core.checkpoints.write_checkpoint_dir`.
    """
    if not isinstance(config, EgoM2PConfig):
        raise TypeError(f"config must be an EgoM2PConfig, got {type(config).__name__}")
    check_state_dict(EgoM2P, state_dict, config)
    write_checkpoint_dir(directory, state_dict, config.to_dict())


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
    Every attention layer holds it (:class:`egom2p.model.layers.AttentionLayer`); the forward does not pass it.
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
        self._resolve_backend()
        self.reset_parameters()

    def _resolve_backend(self) -> None:
        """Resolve ``config.attn_backend`` for the model's device, once, and hand it to every attention layer."""
        self.attn_backend: AttnBackend = resolve_backend(self.config.attn_backend, self.mask_token.device,
                                                         self.config.decoder_causal_mask)
        for module in self.modules():
            if isinstance(module, AttentionLayer):
                module.backend = self.attn_backend

    def _apply(self, fn, recurse: bool = True):
        # Every device move (.to, .cuda, .cpu, to_empty) goes through here: re-resolve `auto` for the new device.
        out = super()._apply(fn, recurse)
        self._resolve_backend()
        return out

    # ----------------------------------------------------------------------------------- init
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """MAE-style init of the original (docs/original-behaviour.md#initialisation).

        Linear: Xavier-uniform, with fan-out split per projection for ``qkv`` (by 3) and ``kv``
        (by 2); biases 0. LayerNorm: weight 1, bias 0. Encoder token tables, modality embeddings
        and the mask token: normal(0, init_std). Decoder token tables (= output heads): Xavier-
        uniform, bound sqrt(6 / (D + V)), which is what the trained original effectively got (quirk 3 in
        docs/original-behaviour.md#quirks).
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
        write_pretrained(directory, self.state_dict(), self.config)

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
        mask = AttentionMask.self_attention(layout.lengths, layout.samples)
        for block in self.encoder:
            x = block(x, mask)
        x = self.encoder_norm(x)
        # The embeddings are added again to the context (zero at padding, docs/original-behaviour.md#forward-pass).
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
        self_mask = AttentionMask.self_attention(self_lengths, self_segments, causal)
        cross_mask = AttentionMask(key_lengths=ctx.key_lengths, query_lengths=self_lengths, q_segments=samples,
                                   k_segments=ctx.samples)  # fmt: skip
        for block in self.decoder:
            y = block(y, context, self_mask, cross_mask)
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
        self, batch: MaskedBatch, num_encoder_tokens: int | None = None, check_vocab: bool = True, pack: bool = False
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
        packed, rows = pack_layout(layout, inference_rows(self, layout.lengths.tolist()))
        ctx = self._encode_layout(packed)
        ctx.sample_rows = rows
        return ctx

    def decode_positions(self, ctx: EncoderContext, modality: str, positions: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, k, V]`` of ``modality`` at ``positions`` (int64 ``[B, k]``).

        Queries are mask token + position + modality embedding; they attend to each other
        without restriction and to the context's valid keys (docs/original-behaviour.md#forward-pass, inference).
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
        batch: MaskedBatch | PackedBatch,
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
        Packed batch (a :class:`egom2p.core.packing.PackedBatch`, e.g. ``egom2p.data.packing.pack_batch``'s):
        the packer applied the budgets, so the budget arguments are not used; losses are those of
        the unpacked batch.
        ``loss_type`` is a :class:`egom2p.core.enums.LossType` value. ``check_vocab=False`` skips the
        token-id range check (host syncs) for batches already known to be in range: the training
        path, which then never reads the device (``mod`` and ``weighted_mod`` losses).
        """
        loss_type = LossType.parse(loss_type, "loss_type")
        if isinstance(batch, PackedBatch):
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

"""``VQVAE``: the camera and gaze tokenizers, window <-> 30 tokens, exact to the original.

The original's tokenizers: docs/original-behaviour.md#tokenizers.

Layout (the original's module names, so released weights load unchanged)::

    x (B, 60, C) -> encoder (Conv1d over time, blocks, post MLP) -> quant_proj (Conv1d 1x1 to the latent)
      -> quantize (cosine codebook) -> post_quant_proj (Conv1d 1x1 back) -> decoder -> (B, 60, C)

``tokenize`` / ``decode_tokens`` / ``forward`` work on normalised model inputs (the 9-D camera vector,
gaze ``[x, y, valid]`` in [-1, 1]); ``encode_poses`` / ``decode_poses`` / ``encode_gaze`` / ``decode_gaze``
take and return signals, converting with :mod:`egom2p.tokenizers.camera` and :mod:`egom2p.tokenizers.gaze`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from egom2p.core.checkpoints import parse_dtype
from torch import nn

from . import camera, gaze
from .checkpoint import load_pretrained, save_pretrained
from .codebook import VectorQuantizer
from .config import TokenizerConfig
from .layers import Decoder, Encoder
from .presets import tokenizer_config


def _pointwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A kernel-1 ``Conv1d`` applied to channels-last ``x`` (B, N, C): a Linear with the conv's weights."""
    return F.linear(x, conv.weight.squeeze(-1), conv.bias)


class VQVAE(nn.Module):
    """Transformer VQ-VAE tokenizer of camera trajectories (``kind="cam"``) or gaze (``kind="gaze"``).

    A fresh model starts as follows (the fixture and released weights decide only what is loaded): Linear
    weights truncated normal (std 0.02), Conv1d weights Xavier-uniform, biases 0, LayerNorm 1/0, position
    embeddings the fixed sin-cos table, codebook rows l2-normalised Kaiming-uniform (as the original).
    """

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        if not isinstance(config, TokenizerConfig):
            raise TypeError(f"config must be a TokenizerConfig, got {type(config).__name__}")
        self.config = config
        # Registration order = the original's state-dict order.
        self.encoder = Encoder(config)
        self.quant_proj = nn.Conv1d(config.dim_tokens, config.latent_dim, kernel_size=1)
        self.quantize = VectorQuantizer(config.latent_dim, config.codebook_size, config.ema_decay,
                                        config.threshold_ema_dead_code, config.commitment_weight)
        self.decoder = Decoder(config)
        self.post_quant_proj = nn.Conv1d(config.latent_dim, config.dim_tokens, kernel_size=1)
        self.apply(self._init_module)
        self.compute_dtype = torch.float32  # see set_compute_dtype

    def set_compute_dtype(self, dtype: torch.dtype | str | None) -> VQVAE:
        """Run the encoder and decoder trunks in ``dtype`` (``bfloat16``/``float16`` under autocast; ``None`` or
        ``float32``: exact). The codebook search always runs in float32. bfloat16 is about 2.5x faster on CPUs
        with AVX512-BF16 / AMX and on GPUs; a window whose latent lies near a tie between two codes can get the
        other code (docs/benchmarks.md gives the measured agreement). Returns ``self``."""
        dtype = parse_dtype(dtype) or torch.float32
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"compute dtype must be float32, bfloat16 or float16, got {dtype}")
        self.compute_dtype = dtype
        return self

    def _trunk_precision(self) -> contextlib.AbstractContextManager:
        # Only a reduced dtype opens a context: autocast(enabled=False) would switch off a caller's autocast.
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.encoder.conv.weight.device.type, dtype=self.compute_dtype)

    def _out_of_trunk(self, t: torch.Tensor) -> torch.Tensor:
        # A reduced compute dtype ends with the trunk: what leaves it is back in the weights' dtype.
        return t if self.compute_dtype == torch.float32 else t.to(self.encoder.conv.weight.dtype)

    @staticmethod
    def _init_module(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv1d):
            nn.init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))
            nn.init.zeros_(module.bias)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> VQVAE:
        """A fresh model of the preset ``name`` (:data:`~egom2p.tokenizers.presets.TOKENIZER_PRESETS`)."""
        return cls(tokenizer_config(name, **overrides))

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike | Mapping[str, torch.Tensor],
        config: TokenizerConfig | Mapping[str, Any] | None = None,
        *,
        device: torch.device | str | None = None,
        compute_dtype: torch.dtype | str | None = None,
    ) -> VQVAE:
        """Load a tokenizer in eval mode (see :func:`egom2p.tokenizers.checkpoint.load_pretrained`); weights stay
        float32, ``compute_dtype`` is :meth:`set_compute_dtype`'s."""
        return load_pretrained(cls, source, config, device=device).set_compute_dtype(compute_dtype)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (reopens with ``from_pretrained``)."""
        save_pretrained(self, directory)

    @property
    def kind(self) -> str:
        """``"cam"`` or ``"gaze"``."""
        return self.config.kind

    @property
    def num_tokens(self) -> int:
        """Tokens per window (30 for the released tokenizers)."""
        return self.config.num_tokens

    @property
    def vocab_size(self) -> int:
        """Number of codes (256 for the released tokenizers)."""
        return self.config.codebook_size

    # -- normalised model inputs -------------------------------------------------------------------------

    def _check_input(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        cfg = self.config
        x = torch.as_tensor(x)
        expected = (cfg.num_frames, cfg.input_channels)
        if x.ndim != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{cfg.kind} tokenizer input must have shape (B, {expected[0]}, {expected[1]}), "
                             f"got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{cfg.kind} tokenizer input must be floating point, got {x.dtype}")
        weight = self.encoder.conv.weight
        return x.to(device=weight.device, dtype=weight.dtype)

    def _check_tokens(self, tokens: torch.Tensor | np.ndarray) -> torch.Tensor:
        tokens = torch.as_tensor(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != self.num_tokens:
            raise ValueError(f"{self.kind} tokens must have shape (B, {self.num_tokens}), got {tuple(tokens.shape)}")
        if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise ValueError(f"{self.kind} tokens must be integers, got {tokens.dtype}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(f"{self.kind} tokens must lie in [0, {self.vocab_size}), got values in "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")
        return tokens.to(device=self.quantize.codebook.device, dtype=torch.long)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input (B, frames, C) -> pre-quantisation latents (B, tokens, latent_dim)."""
        x = self._check_input(x)
        if self.kind == "gaze":
            x = x[..., :2] * x[..., 2:3]  # invalid frames enter as zeros
        with self._trunk_precision():
            latents = _pointwise(self.quant_proj, self.encoder(x))
        return self._out_of_trunk(latents)

    def decode_latents(self, quantized: torch.Tensor) -> torch.Tensor:
        """Quantised latents (B, tokens, latent_dim) -> reconstruction (B, frames, in_channels)."""
        with self._trunk_precision():
            recon = self.decoder(_pointwise(self.post_quant_proj, quantized))
        return self._out_of_trunk(recon)

    def forward(self, x: torch.Tensor, return_tokens: bool = False) -> tuple[torch.Tensor, ...]:
        """Autoencode ``x``: ``(reconstruction, commitment_loss)`` (``+ tokens`` with ``return_tokens``).

        In training mode the codebook takes its EMA step (and replaces dead codes) and gradients reach the
        encoder through the straight-through estimator; in eval mode the loss is 0.
        """
        quantized, commitment_loss, tokens = self.quantize(self.encode(x))
        recon = self.decode_latents(quantized)
        return (recon, commitment_loss, tokens) if return_tokens else (recon, commitment_loss)

    @torch.inference_mode()
    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input (B, frames, C) -> token ids (B, tokens) int64; never changes the codebook."""
        return self.quantize.search(self.encode(x))

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (B, tokens) -> reconstruction (B, frames, in_channels) in the normalised space."""
        return self.decode_latents(self.quantize.lookup(self._check_tokens(tokens)))

    def reconstruction_loss(self, recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The training loss against the normalised input ``x``: cam MSE; gaze MSE over valid frames only
        (``sum(valid * (pred - xy)^2) / sum(valid)``)."""
        x = self._check_input(x)
        if self.kind == "cam":
            return F.mse_loss(recon, x)
        valid = x[..., 2:3]
        return (valid * (recon - x[..., :2]) ** 2).sum() / valid.sum()

    # -- signals -------------------------------------------------------------------------------------------

    def _require_kind(self, kind: str, method: str) -> None:
        if self.kind != kind:
            raise ValueError(f"{method} needs a {kind} tokenizer, this one is {self.kind!r}")

    def _check_windows(self, values: Any, tail: tuple[int, ...], what: str) -> np.ndarray:
        array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values)
        expected = (self.config.num_frames, *tail)
        if array.ndim != 2 + len(tail) or tuple(array.shape[1:]) != expected:
            raise ValueError(f"{what} must have shape (B, {', '.join(map(str, expected))}), got {tuple(array.shape)}")
        return array

    def encode_poses(self, poses: np.ndarray | torch.Tensor, basis: str | np.ndarray | None = None) -> torch.Tensor:
        """Camera-to-world poses (B, frames, 4, 4) -> tokens (B, tokens) int64.

        ``basis``: the dataset's basis change (a name of :data:`egom2p.tokenizers.camera.BASES` or a 4x4 matrix);
        the conventions are :func:`egom2p.tokenizers.camera.poses_to_model_input`'s.
        """
        self._require_kind("cam", "encode_poses")
        poses = self._check_windows(poses, (4, 4), "poses")
        return self.tokenize(torch.from_numpy(camera.poses_to_model_input(poses, basis)))

    @torch.inference_mode()
    def decode_poses(self, tokens: torch.Tensor) -> np.ndarray:
        """Tokens (B, tokens) -> float64 camera-to-world poses (B, frames, 4, 4) in the window's canonical frame
        (the first pose is the identity up to the reconstruction error)."""
        self._require_kind("cam", "decode_poses")
        return camera.model_output_to_poses(self.decode_tokens(tokens).double().cpu().numpy())

    def encode_gaze(self, pixels: np.ndarray | torch.Tensor, frame: str | gaze.GazeFrame) -> torch.Tensor:
        """Gaze pixels (B, frames, 2) of ``frame``'s original resolution (NaN where missing) -> tokens (B, tokens)."""
        self._require_kind("gaze", "encode_gaze")
        pixels = self._check_windows(pixels, (2,), "gaze pixels")
        return self.tokenize(torch.from_numpy(gaze.pixels_to_model_input(pixels, frame)))

    @torch.inference_mode()
    def decode_gaze(self, tokens: torch.Tensor, frame: str | gaze.GazeFrame) -> np.ndarray:
        """Tokens (B, tokens) -> float64 gaze pixels (B, frames, 2) in ``frame``'s original resolution."""
        self._require_kind("gaze", "decode_gaze")
        return gaze.model_output_to_pixels(self.decode_tokens(tokens).double().cpu().numpy(), frame)

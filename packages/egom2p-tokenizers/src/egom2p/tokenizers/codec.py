"""A tokenizer bound to one dataset's conventions: windows of signals <-> token ids, in batches.

:class:`WindowCodec` holds a :class:`~egom2p.tokenizers.vqvae.VQVAE` with the camera basis or the gaze frame of the
data, checks token arrays against the modality spec (naming the file or sample), and puts reconstructed camera
windows back where their originals were (:meth:`WindowCodec.decode_like`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from egom2p.core.modalities import RELEASED_MODALITIES, ModalitySpec, load_modality_specs
from egom2p.core.progress import progress as progress_bar
from egom2p.tokenizers.camera import basis_matrix
from egom2p.tokenizers.gaze import GazeFrame
from egom2p.tokenizers.vqvae import VQVAE

__all__ = ["FRAME_HELP", "WindowCodec", "modality_spec"]

FRAME_HELP = "--gaze-frame NAME, or --orig-res W H --resize-res W H [--crop W H]"


def modality_spec(kind: str, vocab_size: int, num_tokens: int) -> ModalitySpec:
    """The token modality of a ``kind`` tokenizer: the released ``tok_<kind>`` (its name and shard folder) with the
    tokenizer's own vocabulary and length."""
    released = load_modality_specs(RELEASED_MODALITIES)[f"tok_{kind}"]
    return ModalitySpec(name=released.name, vocab_size=vocab_size, length=num_tokens, folder=released.folder)


class WindowCodec:
    """``model`` with the data's conventions: ``basis`` (camera: a name of
    :data:`~egom2p.tokenizers.camera.BASES` or None) or ``frame`` (gaze, required); ``batch_size`` windows per
    forward pass; ``progress``: count the batches (:mod:`egom2p.core.progress`: a bar on a terminal, periodic lines
    in a log)."""

    def __init__(self, model: VQVAE, *, basis: str | None = None, frame: GazeFrame | None = None,
                 batch_size: int = 256, progress: bool = False) -> None:
        if model.kind == "gaze":
            if frame is None:
                raise ValueError(f"a gaze tokenizer needs the frame of the gaze pixels: {FRAME_HELP}")
            if basis is not None:
                raise ValueError(f"basis {basis!r}: a camera basis does not apply to a gaze tokenizer")
        elif frame is not None:
            raise ValueError(f"the gaze frame options ({FRAME_HELP}) apply to a gaze tokenizer; this is a camera one")
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.model = model
        self.basis = None if basis is None else basis_matrix(basis)
        self.frame = frame
        self.batch_size = batch_size
        self.progress = progress
        self.spec = modality_spec(model.kind, model.vocab_size, model.num_tokens)

    @property
    def kind(self) -> str:
        """``"cam"`` or ``"gaze"``."""
        return self.model.kind

    @property
    def num_frames(self) -> int:
        """Frames per window (60)."""
        return self.model.config.num_frames

    def _batches(self, count: int, what: str) -> Any:
        starts = range(0, count, self.batch_size)
        return progress_bar(starts, desc=what, unit="batch", enabled=None if self.progress else False, leave=False)

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """Windows of poses (N, frames, 4, 4) or gaze pixels (N, frames, 2) -> token ids (N, tokens) int64."""
        out = np.empty((len(windows), self.model.num_tokens), dtype=np.int64)
        for lo in self._batches(len(windows), "encoding"):
            batch = windows[lo:lo + self.batch_size]
            if self.kind == "cam":
                tokens = self.model.encode_poses(batch, self.basis)
            else:
                tokens = self.model.encode_gaze(batch, self.frame)
            out[lo:lo + len(batch)] = tokens.cpu().numpy()
        return out

    def decode(self, tokens: np.ndarray, dataset_axes: bool = False) -> np.ndarray:
        """Token ids (N, tokens) -> float64 signals: camera poses (N, frames, 4, 4) in each window's canonical frame
        (the first pose the identity), or gaze pixels (N, frames, 2) of the frame's resolution.

        Camera poses come in the tokenizer's axes (the basis changed); ``dataset_axes`` puts them back in the
        dataset's axes: ``B @ R @ inv(B)``, the canonical poses of the windows as the dataset gave them.
        """
        out = np.empty((len(tokens), self.num_frames, *((4, 4) if self.kind == "cam" else (2,))), dtype=np.float64)
        for lo in self._batches(len(tokens), "decoding"):
            batch = tokens[lo:lo + self.batch_size]
            if self.kind == "cam":
                out[lo:lo + len(batch)] = self.model.decode_poses(batch)
            else:
                out[lo:lo + len(batch)] = self.model.decode_gaze(batch, self.frame)
        if dataset_axes and self.kind == "cam" and self.basis is not None:
            out = self.basis @ out @ np.linalg.inv(self.basis)
        return out

    def decode_like(self, tokens: np.ndarray, originals: np.ndarray) -> np.ndarray:
        """Decode ``tokens`` into the space of the windows they were encoded from.

        Camera: each canonical reconstruction ``R`` goes back to the world through the basis ``B`` and its original
        window's first pose ``P0``: ``P0 @ B @ R @ inv(B)`` (the inverse of the encoder's basis change and
        canonicalisation). Gaze pixels need nothing more.
        """
        decoded = self.decode(tokens, dataset_axes=True)
        return decoded if self.kind == "gaze" else originals[:, :1] @ decoded

    def check_tokens(self, tokens: np.ndarray, where: str) -> np.ndarray:
        """``tokens`` ((tokens,) or (N, tokens) integer ids of the vocabulary) as (N, tokens) int64.

        Raises ``ValueError`` naming ``where`` (a file, a shard member), the row and the bad value otherwise.
        """
        tokens = np.asarray(tokens)
        n = self.spec.num_tokens
        if tokens.shape == (n,):
            batch = tokens[None]
        elif tokens.ndim == 2 and tokens.shape[1] == n:
            batch = tokens
        else:
            raise ValueError(f"{where}: expected {self.spec.name} tokens ({n},) or (N, {n}), got shape {tokens.shape}")
        if not np.issubdtype(batch.dtype, np.integer):
            raise ValueError(f"{where}: {self.spec.name} tokens have dtype {batch.dtype}, expected integer token ids")
        bad = ((batch < 0) | (batch >= self.spec.vocab_size)).any(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            place = "" if tokens.ndim == 1 else f" row {row}"
            raise ValueError(f"{where}{place}: {self.spec.check_tokens(batch[row])}")
        return batch.astype(np.int64, copy=False)

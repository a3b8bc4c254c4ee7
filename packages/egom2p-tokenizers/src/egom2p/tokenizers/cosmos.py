"""The Cosmos video tokenizer of EgoM2P's RGB and depth tokens: NVIDIA's TorchScript encoder and decoder.

EgoM2P does not train a video tokenizer: it uses Cosmos-0.1-Tokenizer-DV4x8x8 as released, two TorchScript files
(``encoder.jit``, ``decoder.jit``; NVIDIA Open Model License). This module loads them from a folder or from the
Hub id's local cache and runs them with the original's exact pre- and post-processing
(:mod:`egom2p.tokenizers.video`). Only ``torch.jit.load`` reads the files: no pickle.

    tok = CosmosVideoTokenizer.from_pretrained("path/to/Cosmos-0.1-Tokenizer-DV4x8x8")
    ids = tok.encode(frames)          # uint8 (B, 16, 256, 256, 3) -> int64 (B, 5, 32, 32)
    frames = tok.decode(ids)          # -> uint8 (B, 16, 256, 256, 3)
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from egom2p.core.checkpoint_integrity import file_sha256

from .video import (
    CLIP_FRAMES,
    FRAME_SIZE,
    VIDEO_VOCAB_SIZE,
    check_frames,
    clip_padding,
    depth_from_frames,
    depth_to_frames,
    frames_from_tensor,
    frames_to_tensor,
    pad_clips,
)

__all__ = ["COSMOS_FILES", "COSMOS_HUB_ID", "CosmosVideoTokenizer"]

COSMOS_HUB_ID = "nvidia/Cosmos-0.1-Tokenizer-DV4x8x8"
COSMOS_FILES = ("encoder.jit", "decoder.jit")
_WHERE_TO_GET = (f"download {' and '.join(COSMOS_FILES)} of https://huggingface.co/{COSMOS_HUB_ID} (NVIDIA Open "
                 f"Model License) into one folder and pass that folder, or fetch them into the Hugging Face cache "
                 f"with `huggingface-cli download {COSMOS_HUB_ID}` and pass the hub id")
_INSTALL_HINT = "pip install 'egom2p-tokenizers[hub]'"


def _find_files(source: str | os.PathLike) -> Path:
    """The folder holding the two TorchScript files: ``source`` itself, or the Hub id's snapshot."""
    from egom2p.core import hub

    path = Path(source).expanduser()
    if not path.exists() and hub.is_hub_id(str(source)):
        path = hub.download_checkpoint(str(source), install_hint=_INSTALL_HINT, files=COSMOS_FILES)
    if path.is_file():
        path = path.parent  # one of the two files was named: its folder holds both
    if not path.is_dir():
        raise FileNotFoundError(f"{source}: no such folder; {_WHERE_TO_GET}")
    missing = [name for name in COSMOS_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: missing {', '.join(missing)}; {_WHERE_TO_GET}")
    return path


def _load_script(path: Path, device: torch.device) -> torch.jit.ScriptModule:
    try:
        with warnings.catch_warnings():  # torch calls TorchScript deprecated; Cosmos ships nothing else
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as err:  # not a TorchScript archive (e.g. a pickled checkpoint)
        first = str(err).strip().split("\n", 1)[0][:200]
        raise ValueError(f"{path}: not a TorchScript file ({first})") from None
    return module.eval()


class CosmosVideoTokenizer:
    """Cosmos DV4x8x8: uint8 clips <-> (t, h, w) ids in [0, 64,000), as EgoM2P uses it.

    ``encoder`` and ``decoder`` are modules with the Cosmos TorchScript interface: the encoder takes
    (B, 3, T, H, W) in [-1, 1] and returns the ids (B, t, h, w) (or a tuple whose first item they are), the decoder
    takes the ids and returns (B, 3, T', H', W') in [-1, 1]. ``dtype`` defaults to bf16 on a GPU and fp32 on the
    CPU, as the original runs them.
    """

    def __init__(self, encoder: torch.nn.Module, decoder: torch.nn.Module, device: torch.device | str = "cpu",
                 dtype: torch.dtype | None = None, digest: str | None = None) -> None:
        self.digest = digest  # SHA-256 of the two files (from_pretrained): names the weights in a run's identity
        self.device = torch.device(device)
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.encoder = encoder.to(self.device, self.dtype).eval()
        self.decoder = decoder.to(self.device, self.dtype).eval()

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike = COSMOS_HUB_ID, device: torch.device | str = "cpu",
                        dtype: torch.dtype | None = None) -> CosmosVideoTokenizer:
        """Load ``encoder.jit`` and ``decoder.jit`` from a folder (or one of the two files), or from a Hub id
        (``nvidia/Cosmos-0.1-Tokenizer-DV4x8x8``) through the Hugging Face cache. A missing file raises
        FileNotFoundError saying where to get it; a file that is not TorchScript, ValueError naming it."""
        folder = _find_files(source)
        device = torch.device(device)
        encoder, decoder = (_load_script(folder / name, device) for name in COSMOS_FILES)
        digest = hashlib.sha256("".join(file_sha256(folder / name) for name in COSMOS_FILES).encode()).hexdigest()
        return cls(encoder, decoder, device=device, dtype=dtype, digest=digest)

    @torch.no_grad()
    def encode(self, frames: np.ndarray, batch_size: int = 4) -> np.ndarray:
        """uint8 clips (B, T, H, W, 3) or one clip (T, H, W, 3) -> int64 ids (B, t, h, w) (or (t, h, w))."""
        single = np.ndim(frames) == 4
        frames = check_frames(frames)
        padded, _ = pad_clips(frames)
        out = []
        for start in range(0, len(padded), batch_size):
            result = self.encoder(frames_to_tensor(padded[start:start + batch_size], self.dtype, self.device))
            ids = result[0] if isinstance(result, (tuple, list)) else result
            out.append(ids.to(torch.int64).cpu().numpy())
        ids = np.concatenate(out)
        return ids[0] if single else ids

    @torch.no_grad()
    def decode(self, ids: np.ndarray, num_frames: int = CLIP_FRAMES, size: tuple[int, int] = (FRAME_SIZE, FRAME_SIZE),
               batch_size: int = 4) -> np.ndarray:
        """ids (B, t, h, w) or (t, h, w) -> uint8 clips (B, num_frames, H, W, 3) (or one clip), the padding that
        a clip of ``num_frames`` frames of ``size`` (H, W) got before encoding cropped away."""
        ids = np.asarray(ids)
        single = ids.ndim == 3
        ids = ids[None] if single else ids
        if ids.ndim != 4 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"video ids: expected integers of shape (t, h, w) or (B, t, h, w), got "
                             f"{ids.dtype} {tuple(ids.shape)}")
        if ids.size and (ids.min() < 0 or ids.max() >= VIDEO_VOCAB_SIZE):
            raise ValueError(f"video ids: values must lie in [0, {VIDEO_VOCAB_SIZE}), got {ids.min()}..{ids.max()}")
        padding = clip_padding(num_frames, *size)
        out = []
        for start in range(0, len(ids), batch_size):
            video = self.decoder(torch.from_numpy(ids[start:start + batch_size].astype(np.int64)).to(self.device))
            out.append(padding.crop(frames_from_tensor(video)))
        frames = np.concatenate(out)
        return frames[0] if single else frames

    def encode_depth(self, depth: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """One depth clip (T, H, W) in any units -> ids (t, h, w) and the clip's (min, max) (see video module)."""
        frames, depth_range = depth_to_frames(depth)
        return self.encode(frames), depth_range

    def decode_depth(self, ids: np.ndarray, depth_range: tuple[float, float] | None = None,
                     num_frames: int = CLIP_FRAMES, size: tuple[int, int] = (FRAME_SIZE, FRAME_SIZE)) -> np.ndarray:
        """ids (t, h, w) -> depth (T, H, W) float32 in [0, 1], or in the clip's units given its (min, max)."""
        return depth_from_frames(self.decode(ids, num_frames, size), depth_range)

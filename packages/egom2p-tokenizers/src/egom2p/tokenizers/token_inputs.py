"""Token ids to decode: a token file, or every sample of a set of shards (core's format, local or ``s3://``).

A source is a shard pattern when every name its braces expand to is a ``.tar`` (core's one rule,
:func:`egom2p.core.sources.is_shard_pattern`); a ``[folder,...]`` list must name the tokenizer's folder (``cam`` /
``gaze``), which is the one read. Anything else is a token file (:func:`.signal_files.read_token_file`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from egom2p.core.layout import expand_folders, expand_shard_pattern
from egom2p.core.progress import progress as progress_bar
from egom2p.core.shards import decode_tokens, read_tar_members
from egom2p.core.sources import is_shard_pattern
from egom2p.tokenizers.codec import WindowCodec
from egom2p.tokenizers.signal_files import read_token_file

__all__ = ["TokenInput", "is_shard_pattern", "read_token_input"]


@dataclass(eq=False)
class TokenInput:
    """Token ids (N, tokens) int64; ``keys``: the shard sample keys (None for a file); ``single``: a file of one
    window without a batch dimension."""

    tokens: np.ndarray
    keys: list[str] | None = None
    single: bool = False


def _shard_tars(pattern: str, folder: str) -> list[str]:
    tars = []
    for url in expand_shard_pattern(pattern):
        per_folder = expand_folders(url)
        if "" in per_folder:
            tars.append(per_folder[""])
        elif folder in per_folder:
            tars.append(per_folder[folder])
        elif len(per_folder) == 1:  # one folder named: a modality this tokenizer serves under another name (hand)
            tars.append(next(iter(per_folder.values())))
        else:
            raise ValueError(f"--input {pattern}: the folder list {sorted(per_folder)} lacks this tokenizer's folder "
                             f"{folder!r}; name the one folder to read")
    return tars


def read_token_input(source: str, codec: WindowCodec) -> TokenInput:
    """The tokens of a token file or shard pattern, checked against ``codec``'s modality (shape, dtype, vocabulary);
    errors name the file or the shard and sample."""
    if not is_shard_pattern(source):
        tokens = read_token_file(source)
        return TokenInput(codec.check_tokens(tokens, source), single=tokens.ndim == 1)
    keys: list[str] = []
    rows: list[np.ndarray] = []
    n = codec.spec.num_tokens
    tars = _shard_tars(source, codec.spec.folder)
    for tar in progress_bar(tars, desc="reading shards", unit="shard", enabled=None if len(tars) > 1 else False,
                            leave=False):
        for key, ext, data in read_tar_members(tar):
            where = f"{tar}: sample {key}"
            tokens = decode_tokens(f"{key}.{ext}", data)
            if tokens.shape != (n,):
                raise ValueError(f"{where}: expected {codec.spec.name} tokens ({n},), got shape {tokens.shape}")
            rows.append(codec.check_tokens(tokens, where)[0])
            keys.append(key)
    if not rows:
        raise ValueError(f"--input {source}: the shards hold no sample")
    return TokenInput(np.stack(rows), keys)

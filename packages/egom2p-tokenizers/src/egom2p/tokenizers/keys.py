"""The sample key of a 2 s window: the one rule that lines up a clip's shards across modalities.

A sample's key names the recording and where in it the window starts::

    <recording stem>_<start frame at 30 fps, at least 6 digits>      e.g.  P01_cooking_000120

- The recording stem is the recording's file name up to its first dot (``P01_cooking.tum`` ->
  ``P01_cooking``), the same rule as a tar member's key (:func:`egom2p.core.layout.sample_key`), so a
  stem never holds a dot.
- The start frame counts 30 fps frames from the recording's first sample (its first timestamp is frame 0),
  whatever the source's own rate: a window starting 4 s in is ``_000120``. A video clip, a camera track and
  a gaze track of the same recording that start at the same instant therefore give the same key for the
  same 2 s, and their shards zip by key (docs/original-behaviour.md#shard-layout).

Every writer of window shards (``egom2p-tokenize encode`` today, video clips later) builds keys with
:func:`window_key`; nothing else formats them.
"""

from __future__ import annotations

import os
import re

from egom2p.core.layout import sample_key

__all__ = ["FPS", "is_sample_key", "parse_window_key", "recording_stem", "start_frame", "window_key"]

FPS = 30  # the frame rate that start frames count in, for every modality

_KEY = re.compile(r"^(?P<stem>.+)_(?P<start>\d{6,})$")
# A stem lands in tar member names and shard patterns: no path separators, pattern brackets or braces.
_FORBIDDEN = set("/\\[]{},\n\t")


def is_sample_key(text: str) -> bool:
    """Whether ``text`` can be (or start) a sample key: not empty, no dot (a member name's key ends at its first dot),
    none of ``/ \\ [ ] { } ,`` or line breaks."""
    return bool(text) and "." not in text and not _FORBIDDEN & set(text)


def recording_stem(path: str | os.PathLike) -> str:
    """The stem of a recording file: its name up to the first dot (``a/P01.v2.npz`` -> ``P01``).

    Raises ``ValueError`` naming ``path`` when the stem is empty or holds a character a key cannot hold.
    """
    stem = sample_key(os.fspath(path).replace(os.sep, "/"))[0]
    if not stem or _FORBIDDEN & set(stem):
        raise ValueError(f"{os.fspath(path)}: the file name gives the recording stem {stem!r}, which cannot start a "
                         "sample key (rename the file: no leading dot, none of / \\ [ ] { } , or line breaks)")
    return stem


def start_frame(seconds: float) -> int:
    """The 30 fps frame index of an instant ``seconds`` after the recording's first sample (rounded)."""
    if not seconds >= 0:
        raise ValueError(f"a window cannot start before the recording's first sample, got {seconds} s")
    return int(round(seconds * FPS))


def window_key(stem: str, start: int) -> str:
    """The key of the window of recording ``stem`` that starts at 30 fps frame ``start``: ``P01_000120``."""
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise ValueError(f"a window's start frame must be an integer >= 0, got {start!r}")
    if not is_sample_key(stem):
        raise ValueError(f"recording stem {stem!r} cannot start a sample key (see recording_stem)")
    return f"{stem}_{start:06d}"


def parse_window_key(key: str) -> tuple[str, int]:
    """``(stem, start frame)`` of a key made by :func:`window_key`; ``ValueError`` naming ``key`` otherwise."""
    match = _KEY.match(key)
    if match is None:
        raise ValueError(f"sample key {key!r} is not <recording stem>_<start frame, 6+ digits>")
    return match["stem"], int(match["start"])

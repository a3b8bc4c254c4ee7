"""The one rule for relative paths in configs, shared by every config reader.

A relative path written in a config file resolves against the file's *project root*: the folder
that holds the ``configs/`` folder the file lives in (the repository root for the configs of a checkout),
or the file's own folder when it is not under a ``configs/`` folder. A relative path given on the
command line resolves against the working directory. Absolute paths, URLs (``s3://...``) and shell
sources (``pipe:cmd ...``, read through webdataset's opener) are kept as they are. So a shipped config works from any working directory.
"""

from __future__ import annotations

import os

__all__ = ["config_base_dir", "resolve_path"]


def config_base_dir(config_file: str | os.PathLike) -> str:
    """The folder that relative paths in ``config_file`` resolve against (see the module docstring)."""
    directory = os.path.dirname(os.path.abspath(os.fspath(config_file)))
    probe = directory
    while True:
        if os.path.basename(probe) == "configs":
            return os.path.dirname(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            return directory
        probe = parent


def resolve_path(path: str, base_dir: str | os.PathLike) -> str:
    """``path`` made absolute against ``base_dir``; absolute paths, ``~`` paths, URLs and ``pipe:`` sources unchanged."""
    if not path or "://" in path or path.startswith("pipe:"):
        return path
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(os.fspath(base_dir), path))

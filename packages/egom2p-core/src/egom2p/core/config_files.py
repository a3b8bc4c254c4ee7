"""The one reader of config files (modality, data, alphas and training YAML or JSON): files are data, not programs.

Every config file goes through :func:`read_config_file`, and every YAML value typed on a command line through
:func:`parse_yaml`. Both use a ``SafeLoader`` (no Python objects) that also refuses what a safe load still lets
through, each with one line naming the file and the line:

- a key given twice in one mapping (YAML keeps the last one silently; a merge key ``<<`` may still be overridden);
- aliases that expand the document beyond :data:`MAX_ALIAS_NODES` nodes (a "billion laughs" file: it is counted
  while composing, before anything is built, so it is refused in milliseconds and without memory blow-up),
  and an alias inside its own anchor (a recursive structure no reader can walk);
- nesting deeper than Python's recursion allows.

:func:`read_config_file` also refuses, in one line naming the path, what is not a readable text file: a missing
file, a folder, a device or pipe, a symlink loop or a dangling symlink, a path that goes through a file as if it
were a folder, a file over :data:`MAX_CONFIG_BYTES`, and a binary file (a NUL byte or invalid UTF-8, with its line).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

__all__ = ["MAX_ALIAS_NODES", "MAX_CONFIG_BYTES", "parse_yaml", "read_config_file"]

# Aliases may add this many nodes to a document (sharing a dataset entry a few hundred times stays far below).
MAX_ALIAS_NODES = 100_000
# The largest config file read (the shipped ones are a few KB; a data config with thousands of datasets is < 1 MB).
MAX_CONFIG_BYTES = 16 * 2**20
# The control characters YAML forbids (tab, line feed and carriage return are text): their presence means binary.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class _DataLoader(yaml.SafeLoader):
    """A ``SafeLoader`` that counts alias expansion while composing and refuses duplicate keys while constructing."""

    def __init__(self, text: str, where: str):
        super().__init__(text)
        self.where = where
        self.alias_nodes = 0  # nodes the aliases seen so far add to the document
        self.open_anchors: set[str] = set()  # anchors whose node is still being composed
        self.sizes: dict[int, int] = {}  # id(node) -> nodes in its expansion (nodes stay alive in self.anchors)

    def _fail(self, mark: yaml.Mark, message: str) -> ValueError:
        return ValueError(f"{self.where}: line {mark.line + 1}: {message}")

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        if isinstance(event, yaml.AliasEvent):
            if anchor in self.open_anchors:
                raise self._fail(event.start_mark, f"alias *{anchor} refers to its own anchor (a recursive structure)")
            node = super().compose_node(parent, index)
            self.alias_nodes += self._size(node)
            if self.alias_nodes > MAX_ALIAS_NODES:
                raise self._fail(event.start_mark, f"aliases expand the document beyond {MAX_ALIAS_NODES} nodes "
                                                   f"(at *{anchor}); a config file must not multiply itself")
            return node
        if anchor is None:
            return super().compose_node(parent, index)
        self.open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self.open_anchors.discard(anchor)

    def _size(self, node: yaml.Node) -> int:
        """Nodes in the expansion of ``node``, memoised per node so shared sub-trees are counted in O(distinct)."""
        known = self.sizes.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._size(k) + self._size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._size(child) for child in node.value)
        else:
            size = 1
        self.sizes[id(node)] = size
        return size

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    seen = key in first_line
                except TypeError:  # an unhashable key: SafeConstructor says so with its own error
                    continue
                if seen:
                    raise self._fail(key_node.start_mark, f"duplicate key {key!r} (first at line {first_line[key]})")
                first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, where: str) -> Any:
    """The data of YAML (or JSON) ``text``; a one-line ``ValueError`` starting with ``where`` for anything refused."""
    loader = _DataLoader(text, where)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{where}: not valid YAML{line}: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise ValueError(f"{where}: nested too deeply to be a config file") from None
    finally:
        loader.dispose()


def _first_file_parent(path: Path) -> Path | None:
    """The first parent of ``path`` that exists and is not a folder (``a/file.yaml/x.yaml``), or None."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def _refuse_unreadable(where: str, err: OSError) -> Exception:
    """The one-line error for a config path that cannot be opened as a file."""
    path = Path(where)
    if err.errno == errno.ELOOP:
        return ValueError(f"{where}: a symlink loop (too many levels of symbolic links), not a config file")
    if err.errno == errno.ENOTDIR:
        blocker = _first_file_parent(path)
        return ValueError(f"{where}: {blocker or path.parent} is a file, not a folder")
    if path.is_symlink():
        return FileNotFoundError(f"config file not found: {where} is a symlink to {os.readlink(where)}, which is missing")
    if isinstance(err, FileNotFoundError):
        return FileNotFoundError(f"config file not found: {where}")
    return ValueError(f"{where}: cannot read as a config file ({err.strerror or type(err).__name__})")


def _text(where: str, data: bytes) -> str:
    """``data`` as UTF-8 text; a binary file (invalid UTF-8, or a control character YAML does not allow) is refused
    with the line of its first offending byte."""
    control = _CONTROL.search(data)
    bad = [control.start()] if control else []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad.append(exc.start)
    if not bad:
        return text
    first = min(bad)
    line = data.count(b"\n", 0, first) + 1
    raise ValueError(f"{where}: line {line}: a binary file (byte {data[first]:#04x} at offset {first}), not a text "
                     "config file")


def read_config_file(path: str | os.PathLike) -> Any:
    """Parse a YAML (or JSON) config file with :func:`parse_yaml`; every refusal is one line naming the file.

    Raises ``FileNotFoundError`` for a missing file (or a dangling symlink) and ``ValueError`` for everything else
    refused (see the module docstring).
    """
    where = os.fspath(path)
    try:
        info = os.stat(where)  # follows symlinks: a loop or a dangling link fails here
        if stat.S_ISDIR(info.st_mode):
            raise ValueError(f"{where} is a folder, not a config file")
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{where} is not a regular file (a device, pipe or socket), not a config file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ValueError(f"{where}: {info.st_size} bytes; a config file is at most {MAX_CONFIG_BYTES} bytes")
        with open(where, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)  # the file may have grown since the stat
    except ValueError:
        raise
    except OSError as err:
        raise _refuse_unreadable(where, err) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ValueError(f"{where}: more than {MAX_CONFIG_BYTES} bytes; a config file is at most that")
    return parse_yaml(_text(where, data), where)

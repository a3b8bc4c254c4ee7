"""How a dataset's shard folders are written: the one rule of every writer (``egom2p-data write``,
``egom2p-tokenize encode``). No torch needed.

A write touches the shard folders ``root/<folder>/<dataset>[/<subdir>]`` of the modality folders it writes; the
other folders of the dataset (another tool may write them) are left as they are. Its mode says what happens to
shards already there:

- ``new`` (the default): a shard folder that already holds a shard is refused, in one line naming it.
- ``overwrite``: the written folders are replaced as a whole; the old shards are removed.
- ``append``: the new shards continue the numbering after the last existing one; a key already in the dataset is
  refused, and so is a dataset whose other folders would be left without the new shards' partners.

The new shards are first written aside (:meth:`DatasetWrite.staging`: ``root/<folder>/.<dataset>.egom2p-new``, on
the shard folder's filesystem and outside any folder a reader lists), then :meth:`DatasetWrite.commit` records the
decision in a journal (``root/<folder>/.<dataset>.egom2p-write.json``) and moves them in: ``overwrite`` renames each
old shard folder aside, then each staged one in its place (never old and new folders side by side), then deletes
the old ones; ``new`` and ``append`` move the staged files in, shard index by shard index. A crash before the
journal leaves the dataset as it was plus staged folders that the next write removes; a crash after it leaves a
journal that the next write of the dataset reads to finish the moves. Both say so as a warning.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from egom2p.core.atomic import fsync_dir, write_atomic
from egom2p.core.layout import sample_key

__all__ = ["SHARD_NAME", "DatasetWrite", "WriteMode", "begin_write", "existing_shards", "recover_writes",
           "refuse_existing", "shard_name"]

WriteMode = Literal["new", "overwrite", "append"]
SHARD_NAME = re.compile(r"^shard-(\d{6,})\.tar$")
_STAGED, _OLD, _JOURNAL = "egom2p-new", "egom2p-old", "egom2p-write.json"


def shard_name(index: int) -> str:
    """The file name of shard ``index``: ``shard-000003.tar``."""
    return f"shard-{index:06d}.tar"


def existing_shards(directory: str | os.PathLike) -> list[Path]:
    """The ``.tar`` files at any depth below ``directory`` (what a reader of the dataset would find), sorted."""
    directory = Path(directory)
    return sorted(directory.rglob("*.tar")) if directory.is_dir() else []


def refuse_existing(directory: str | os.PathLike, count: int, whose: str = "", append: bool = True) -> ValueError:
    """The one-line error of a write into ``directory`` that already holds ``count`` shard files (of ``whose``)."""
    of = f" of {whose}" if whose else ""
    how = "pass --overwrite to replace them, --append to add to them," if append else "pass --overwrite to replace them,"
    return ValueError(f"{directory} already holds {count} shard file(s){of}; {how} or choose another --dataset or --out")


def _aside(root: Path, folder: str, dataset: str, subdir: str | None, kind: str) -> Path:
    """Where shard folder ``root/folder/dataset[/subdir]`` is staged (``kind`` egom2p-new) or kept while swapped out
    (egom2p-old): a hidden sibling of ``root/folder/dataset``, so a reader of the dataset never lists it."""
    return root / folder / f".{dataset}.{kind}" / (subdir or "")


def _remove(path: Path, stop: Path) -> None:
    """Delete the folder ``path`` and its parents that are left empty, up to (not including) ``stop``."""
    shutil.rmtree(path, ignore_errors=True)
    for parent in path.parents:
        if parent == stop or not parent.is_relative_to(stop):
            break
        try:
            parent.rmdir()
        except OSError:  # not empty (or already gone): the rest of the chain stays
            break


@dataclass
class DatasetWrite:
    """One write of a dataset's shard folders, staged aside until :meth:`commit` (see the module docstring)."""

    root: Path
    dataset: str
    subdir: str | None
    folders: list[str]
    mode: WriteMode
    first_index: int = 0  # the index of the first new shard (after the last existing one with ``append``)

    def target(self, folder: str) -> Path:
        """The shard folder ``root/<folder>/<dataset>[/<subdir>]``."""
        return self.root / folder / self.dataset / (self.subdir or "")

    def staging(self, folder: str) -> Path:
        """Where this write puts ``folder``'s new shards until :meth:`commit`."""
        return _aside(self.root, folder, self.dataset, self.subdir, _STAGED)

    def existing_keys(self) -> dict[str, Path]:
        """Sample key -> the first existing shard holding it, over the written folders in name order (what
        ``append`` must not repeat).

        Raises ``ValueError`` naming a shard that cannot be read."""
        keys: dict[str, Path] = {}
        for folder in self.folders:
            for shard in existing_shards(self.target(folder)):
                try:
                    with tarfile.open(shard) as tar:
                        names = [m.name for m in tar.getmembers() if m.isfile()]
                except (OSError, tarfile.TarError) as exc:
                    raise ValueError(f"--append: cannot read the existing shard {shard} ({exc})") from None
                for name in names:
                    keys.setdefault(sample_key(name)[0], shard)
        return keys

    def abort(self) -> None:
        """Remove the staged shards of a write that failed before :meth:`commit` (the dataset stays as it was)."""
        for folder in self.folders:
            _remove(self.staging(folder), self.root / folder)

    def commit(self) -> None:
        """Make the staged shards the dataset's (durable: the journal is written first, so a crash is finished by
        the next write)."""
        for folder in self.folders:
            self.staging(folder).mkdir(parents=True, exist_ok=True)
            fsync_dir(self.staging(folder))
        record = {"mode": self.mode, "dataset": self.dataset, "subdir": self.subdir, "folders": self.folders}
        journal = self._journal()
        text = json.dumps(record, indent=2) + "\n"
        write_atomic(journal, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        fsync_dir(journal.parent)
        self._finish(journal)

    def _journal(self) -> Path:
        return self.root / self.folders[0] / f".{self.dataset}.{_JOURNAL}"

    def _finish(self, journal: Path) -> None:
        """Move the staged shards in as the journal says; every step may be done again after a crash."""
        if self.mode == "overwrite":
            for folder in self.folders:  # every old folder aside first: old and new never show side by side
                if self.staging(folder).is_dir() and self.target(folder).exists():
                    old = _aside(self.root, folder, self.dataset, self.subdir, _OLD)
                    old.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(self.target(folder), old)
            for folder in self.folders:
                if self.staging(folder).is_dir():
                    self.target(folder).parent.mkdir(parents=True, exist_ok=True)
                    os.rename(self.staging(folder), self.target(folder))
                    fsync_dir(self.target(folder).parent)
                    _remove(self.staging(folder), self.root / folder)  # its emptied parents, with a subdir
            for folder in self.folders:
                _remove(_aside(self.root, folder, self.dataset, self.subdir, _OLD), self.root / folder)
        else:
            staged = {folder: self.staging(folder) for folder in self.folders if self.staging(folder).is_dir()}
            names = sorted({p.name for directory in staged.values() for p in directory.iterdir()})
            for name in names:  # shard by shard: all folders of one index, then the next
                for folder, directory in staged.items():
                    if (directory / name).exists():
                        self.target(folder).mkdir(parents=True, exist_ok=True)
                        os.rename(directory / name, self.target(folder) / name)
            for folder, directory in staged.items():
                fsync_dir(self.target(folder))
                _remove(directory, self.root / folder)
        journal.unlink()
        fsync_dir(journal.parent)


def recover_writes(root: str | os.PathLike, dataset: str, folders: Iterable[str], *, subdir: str | None = None,
                   keep_staged: bool = False) -> None:
    """Finish the committed writes of ``dataset`` that a crash interrupted (the journals naming one of ``folders``),
    then remove what uncommitted writes staged for ``folders`` (unless ``keep_staged``: a caller that resumes them);
    a warning for each. :func:`begin_write` does this first; a writer that writes in place calls it itself."""
    write = DatasetWrite(Path(root), dataset, subdir or None, sorted(set(folders)), "new")
    if not write.root.is_dir():
        return
    for directory in sorted(p for p in write.root.iterdir() if p.is_dir()):
        journal = directory / f".{write.dataset}.{_JOURNAL}"
        if not journal.is_file():
            continue
        try:
            record = json.loads(journal.read_text(encoding="utf-8"))
            earlier = DatasetWrite(write.root, write.dataset, record["subdir"], list(record["folders"]), record["mode"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{journal}: unreadable journal of an interrupted write ({exc}); delete it and check "
                             f"the shard folders of {write.dataset}") from None
        if earlier.subdir == write.subdir and set(earlier.folders) & set(write.folders):
            earlier._finish(journal)
            warnings.warn(f"finished moving in the shards of an interrupted write of {write.dataset} "
                          f"({earlier.mode}: {', '.join(earlier.folders)}) that {journal} recorded", stacklevel=2)
    if keep_staged:
        return
    for folder in write.folders:
        if write.staging(folder).exists():
            _remove(write.staging(folder), write.root / folder)
            warnings.warn(f"removed {write.staging(folder)}, the staged shards of an unfinished write", stacklevel=2)


def _other_folders_with_shards(write: DatasetWrite) -> list[Path]:
    return [d / write.dataset / (write.subdir or "") for d in sorted(write.root.iterdir())
            if d.is_dir() and d.name not in write.folders and existing_shards(d / write.dataset / (write.subdir or ""))]


def begin_write(root: str | os.PathLike, dataset: str, folders: Iterable[str], *, subdir: str | None = None,
                mode: WriteMode = "new", append_offered: bool = True, keep_staged: bool = False,
                own_files: Iterable[str] = ()) -> DatasetWrite:
    """Start writing ``folders`` of ``dataset`` under ``root`` in ``mode``; write the shards into
    :meth:`DatasetWrite.staging`, named from :attr:`DatasetWrite.first_index` on, then call :meth:`DatasetWrite.commit`
    (or :meth:`DatasetWrite.abort` on failure).

    Finishes or cleans up an interrupted earlier write first (a warning each), then applies the mode's rule: raises
    ``ValueError`` in one line naming the folder (``new``: one holding shards; ``overwrite``: one holding a file
    other than its flat shard files; ``append``: the same, or another folder of the dataset holding shards).
    ``append_offered``: whether the refusal may suggest ``--append``. ``keep_staged``: leave what an unfinished
    write staged in place, for a caller that resumes it. ``own_files``: names of the writer's own files that a
    shard folder may hold besides its shards (replaced with them).
    """
    if mode not in ("new", "overwrite", "append"):
        raise ValueError(f"write mode must be new, overwrite or append, got {mode!r}")
    write = DatasetWrite(Path(root), dataset, subdir or None, sorted(set(folders)), mode)
    own = set(own_files)
    if not write.folders:
        raise ValueError(f"no modality folders to write for dataset {dataset}")
    recover_writes(root, dataset, write.folders, subdir=subdir, keep_staged=keep_staged)
    last = -1
    for folder in write.folders:
        target = write.target(folder)
        shards = existing_shards(target)
        if mode == "new" and shards:
            raise refuse_existing(target, len(shards), append=append_offered)
        if mode != "new" and target.is_dir():
            foreign = [p for p in sorted(target.rglob("*")) if not p.is_dir() and
                       not (p.parent == target and (SHARD_NAME.match(p.name) or p.name in own))]
            if foreign:
                raise ValueError(f"--{mode}: {foreign[0]} is not a shard file of {target} (shard-NNNNNN.tar); "
                                 "move it away first")
        last = max([last, *(int(SHARD_NAME.match(p.name)[1]) for p in shards)])
    if mode == "append":
        others = _other_folders_with_shards(write) if write.root.is_dir() else []
        if others and last >= 0:
            raise ValueError(f"--append: {others[0]} holds shards of {dataset} that this write would leave without "
                             f"partners; write its folder too, or write a new --dataset")
        write.first_index = last + 1
    return write

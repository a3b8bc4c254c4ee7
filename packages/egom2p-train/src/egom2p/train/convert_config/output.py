"""Checking a translation with our config loader, writing its files and the lines the command prints."""

from __future__ import annotations

import copy
import dataclasses
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from egom2p.core.paths import config_base_dir
from egom2p.data.config import load_data_config
from egom2p.train.config import ConfigError, TrainConfig, load_config
from egom2p.train.convert_config.result import ConversionError, Translation

PROG = "egom2p-convert config"
MARKER = "# Translated by egom2p-convert config"  # first line of what we write: only such files are overwritten


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys as nested sections, in the order of our tree."""
    order = [f.name for f in dataclasses.fields(TrainConfig)]
    tree: dict[str, Any] = {}
    for key in sorted(flat, key=lambda k: order.index(k.split(".")[0]) if k.split(".")[0] in order else len(order)):
        node = tree
        *sections, leaf = key.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = flat[key]
    return tree


def render(t: Translation, out_dir: Path) -> dict[Path, str]:
    """The files of the translation in ``out_dir``: train.yaml, data.yaml and the alphas copies (path -> text)."""
    out_dir = Path(os.path.abspath(out_dir))
    files: dict[Path, str] = {}
    data_file, train_file = out_dir / "data.yaml", out_dir / "train.yaml"
    data_base, train_base = config_base_dir(data_file), config_base_dir(train_file)
    data = copy.deepcopy(t.data)
    for split in data.values():
        for entry in ((split or {}).get("datasets") or {}).values() if isinstance(split, Mapping) else ():
            if isinstance(entry, dict) and entry.get("alphas_config") in t.alphas:
                entry["alphas_config"] = os.path.relpath(out_dir / entry["alphas_config"], data_base)
    for name, source in t.alphas.items():
        files[out_dir / name] = f"{MARKER} from {source} (the same format)\n" + source.read_text()
    header = f"{MARKER} from {t.sources['main']}\n"
    files[data_file] = f"{MARKER} from {t.sources['data']}\n" + _dump(data)
    tree = {"data": os.path.relpath(data_file, train_base), **_nest(t.train)}
    comments = "".join(f"# {line}\n" for line in report_lines(t))
    files[train_file] = header + comments + _dump(tree)
    return files


class _Dumper(yaml.SafeDumper):
    """Block mappings, inline lists (domains, betas, weights read best on one line)."""


_Dumper.add_representer(list, lambda dumper, value: dumper.represent_sequence("tag:yaml.org,2002:seq", value,
                                                                              flow_style=True))


def _dump(tree: Mapping[str, Any]) -> str:
    """YAML in the given key order (dataset order matters: train.weights follow it)."""
    return yaml.dump(tree, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def report_lines(t: Translation) -> list[str]:
    """The not-carried keys under one heading per file, then the notes (what the command prints)."""
    lines: list[str] = []
    current = None
    for s in t.skipped:
        if s.source != current:
            lines.append(f"not carried from {s.source} (key: value: why):")
            current = s.source
        lines.append(f"  {s.line()}")
    return lines + [f"note: {note}" for note in t.notes]


def _explain(err: ConfigError, t: Translation, checked: Path) -> ConversionError:
    """Our loader's error as one line naming the original file and key the value came from."""
    text = str(err).replace(f" in {checked / 'train.yaml'}", "").replace(str(checked / "data.yaml"),
                                                                          str(t.sources["data"]))
    original = t.origin.get(err.key or "")
    if original is not None:
        return ConversionError(f"{t.sources['main']}: key '{original}': {text}")
    if (err.key or "").startswith("data."):  # a dataset the model cannot take: the data config's
        return ConversionError(f"{t.sources['data']}: {text}")
    return ConversionError(text)


def check(t: Translation, world_size: int | None = None) -> dict[str, Any] | None:
    """Load the translation with our config loader (and derive its schedule at ``world_size``) in a scratch folder.

    Returns the ``dry_run_report`` at ``world_size`` (None without it); raises :class:`ConversionError`.
    """
    from egom2p.train.schedule import dry_run_report

    with tempfile.TemporaryDirectory(prefix="egom2p-convert-") as scratch:
        folder = Path(scratch)
        for path, text in render(t, folder).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        try:
            load_data_config(folder / "data.yaml", where=str(t.sources["data"]))
        except (ValueError, FileNotFoundError) as err:
            raise ConversionError(str(err).replace(str(folder), str(t.sources["data"].parent))) from None
        try:
            cfg = load_config(folder / "train.yaml")
            return dry_run_report(cfg, world_size) if world_size is not None else None
        except ConfigError as err:
            raise _explain(err, t, folder) from None


def write_translation(t: Translation, out_dir: str | os.PathLike) -> list[Path]:
    """Write the files of ``t`` into ``out_dir``; an existing file we did not write is never overwritten."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConversionError(f"--out {out}: is a file; give a folder (created if needed)")
    files = render(t, out)
    for path in files:
        if path.exists() and not path.read_text(errors="replace").startswith(MARKER):
            raise ConversionError(f"{path}: exists and was not written by {PROG}; remove it or choose another --out")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)


def summary(t: Translation, written: Sequence[Path], report: Mapping[str, Any] | None) -> str:
    """The one-line summary the command ends with."""
    train = next(p for p in written if p.name == "train.yaml")
    alphas = len(t.alphas)
    line = (f"wrote {train}, {train.parent / 'data.yaml'} and {alphas} alphas file{'s' if alphas != 1 else ''}: "
            f"{len(t.carried_keys)} keys carried, {len(t.skipped)} not carried ({len(t.differing)} change the run)")
    if report is not None:
        line += (f"; at {report['world_size']} GPUs: global batch {report['global_batch_size']}, peak lr "
                 f"{report['peak_lr']:.4g}, {report['total_steps']} steps (warmup {report['warmup_steps']})")
    return line

"""The original's data config and the alphas files it names, in our form (docs/original-behaviour.md#data-config).

Our data config keeps the original's layout: each dataset entry's keys are carried, checked against the values
ours supports, or reported as not carried; a val ``data_path`` that is a root folder becomes ``data_root``. The
alphas files (our format is the original's) are found, validated and copied under ``alphas/``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from egom2p.core.config_files import read_config_file
from egom2p.core.sources import is_shard_pattern
from egom2p.data.alphas import load_alphas_config
from egom2p.data.config import CHECKED_KEYS, DATASET_KEYS, NO_EFFECT_KEYS, TRAIN_ONLY_KEYS
from egom2p.train.convert_config.original import candidates, domains, find
from egom2p.train.convert_config.result import ConversionError, Skipped


def _data_path(value: Any, notes: list[str], key: str) -> Any:
    """A relative data path made absolute against the working directory, as the original reads it."""
    if isinstance(value, str) and value and "://" not in value and not os.path.isabs(value):
        absolute = os.path.abspath(value)
        notes.append(f"{key}: {value}: relative; the original reads it from its working directory: {absolute}")
        return absolute
    return value


def _dataset(entry: Any, key: str, src: str, is_train: bool, has_train: bool, alphas: Mapping[str, str],
             skipped: list[Skipped], notes: list[str]) -> Any:
    """One dataset entry of the original in our form; the keys ours refuses or does not need are reported."""
    if not isinstance(entry, Mapping):
        return entry  # our validator names it
    out: dict[str, Any] = {}
    with_alphas_file = entry.get("alphas_config") is not None
    for k, value in entry.items():
        k = str(k)
        dotted = f"{key}.{k}"
        if k in CHECKED_KEYS:
            expected, why = CHECKED_KEYS[k]
            if is_train and value != expected:
                raise ConversionError(f"{src}: key '{dotted}': {value!r}: only {expected!r} is supported ({why})")
            why = {"type": "the only dataset type ours has", "use_wds": "ours always reads webdataset token shards"}
            skipped.append(Skipped(src, dotted, value, f"{why.get(k, 'the only value ours has')} (checked, not needed)"
                                   if is_train else "the original's validation ignores it"))
        elif k in NO_EFFECT_KEYS:
            skipped.append(Skipped(src, dotted, value, NO_EFFECT_KEYS[k]))
        elif not is_train and has_train and k in TRAIN_ONLY_KEYS:
            skipped.append(Skipped(src, dotted, value, "the original's validation takes it from the train entry "
                                   "and ignores this one"))
        elif k in ("input_alphas", "target_alphas") and with_alphas_file and value is not None:
            skipped.append(Skipped(src, dotted, value, "ignored next to alphas_config, as in the original"))
        elif k in ("in_domains", "out_domains", "enforce_domains"):
            out[k] = domains(value) if k != "enforce_domains" else value
        elif k == "alphas_config":
            out[k] = alphas.get(value, value) if isinstance(value, str) else value
        elif k == "data_path":
            path = _data_path(value, notes, dotted)
            if not is_train and isinstance(path, str) and path and not is_shard_pattern(path):
                out["data_root"] = path
                notes.append(f"{dotted}: {value}: the original reads a val data_path as a root folder: written as "
                             f"{key}.data_root")
            else:
                out[k] = path
        elif k in DATASET_KEYS:
            out[k] = value
        else:
            skipped.append(Skipped(src, dotted, value, "not a key of the original's data config nor of ours"))
    return out


def translate_split(raw: Any, split: str, src: str, train_names: set[str], alphas: Mapping[str, str],
                    skipped: list[Skipped], notes: list[str]) -> Any:
    """``train:`` or ``val:`` of the original data config in our form."""
    if not isinstance(raw, Mapping):
        return raw  # our validator names it
    out: dict[str, Any] = {}
    for k, value in raw.items():
        k = str(k)
        if k == "datasets" and isinstance(value, Mapping):
            out[k] = {name: _dataset(entry, f"{split}.datasets.{name}", src, split == "train", name in train_names,
                                     alphas, skipped, notes) for name, entry in value.items()}
        elif (split == "train" and k == "weights") or k == "datasets":
            out[k] = value
        else:
            skipped.append(Skipped(src, f"{split}.{k}", value, "not a key of the original's data config nor of ours"))
    return out


def alphas_files(raw: Mapping[str, Any], data_path: Path, main: Path, alphas_dir: Path | None) -> dict[str, Path]:
    """Every alphas_config the datasets name -> the file found (``--alphas-dir`` first when given). A val entry's
    counts only without a train entry of its name: the original masks validation with the train entry's."""
    found: dict[str, Path] = {}
    entries: dict[str, Any] = {}  # dotted key -> dataset entry
    for split in ("train", "val"):
        section = raw.get(split)
        datasets = section.get("datasets") if isinstance(section, Mapping) else None
        for name, entry in datasets.items() if isinstance(datasets, Mapping) else ():
            if split == "train" or f"train.datasets.{name}" not in entries:
                entries[f"{split}.datasets.{name}"] = entry
    for key, entry in entries.items():
        given = entry.get("alphas_config") if isinstance(entry, Mapping) else None
        if not isinstance(given, str) or not given or given in found:
            continue
        first = [alphas_dir / Path(given).name] if alphas_dir is not None else []
        found[given] = find(f"{key}.alphas_config", given, first + candidates(given, main.parent, data_path.parent),
                             "--alphas-dir DIR", data_path)
    return found


def copy_names(files: Mapping[str, Path]) -> dict[str, str]:
    """Each original alphas path -> its copy's path in the output folder (``alphas/<file name>``, made unique)."""
    names: dict[str, str] = {}
    by_file: dict[Path, str] = {}
    for given, path in files.items():
        real = path.resolve()
        if real not in by_file:
            stem, suffix, n = path.stem, path.suffix or ".yaml", 1
            name = f"alphas/{stem}{suffix}"
            while name in by_file.values():
                n += 1
                name = f"alphas/{stem}-{n}{suffix}"
            by_file[real] = name
        names[given] = by_file[real]
    return names


def check_alphas(path: Path, skipped: list[Skipped]) -> None:
    """Validate an alphas file with our loader; its ``keep`` entries (sequence modalities only) are reported."""
    try:
        load_alphas_config(path)
    except (ValueError, FileNotFoundError) as err:
        raise ConversionError(str(err)) from None
    raw = read_config_file(path)
    mixture = raw.get("alphas_mixture", raw) if isinstance(raw, Mapping) else {}
    for mod, entry in mixture.items() if isinstance(mixture, Mapping) else ():
        if isinstance(entry, Mapping) and "keep" in entry:
            skipped.append(Skipped(path.name, f"alphas_mixture.{mod}.keep", entry["keep"],
                                   "no effect: the original reads it for sequence modalities, EgoM2P has none"))


def modalities(data: Mapping[str, Any]) -> set[str]:
    """The union of the training datasets' domains (the original builds its model for these)."""
    names: set[str] = set()
    for entry in ((data.get("train") or {}).get("datasets") or {}).values():
        if isinstance(entry, Mapping):
            for k in ("in_domains", "out_domains"):
                if isinstance(entry.get(k), list):
                    names.update(v for v in entry[k] if isinstance(v, str))
    return names


def merge_dataset_lines(skipped: list[Skipped], data: Mapping[str, Any]) -> list[Skipped]:
    """One line for a key that several datasets of a split report with the same value and reason."""
    groups: dict[tuple[str, str, str, str, str], list[str]] = {}
    values: dict[tuple[str, str, str, str, str], Any] = {}
    singles: list[tuple[tuple[str, str, str, str, str], Skipped]] = []
    for s in skipped:
        parts = s.key.split(".")
        if len(parts) == 4 and parts[1] == "datasets":
            group = (s.source, parts[0], parts[3], repr(s.value), s.why)
            if group not in groups:
                singles.append((group, s))
            groups.setdefault(group, []).append(parts[2])
            values[group] = s.value
        else:
            singles.append(((s.source, s.key, "", "", ""), s))
    merged: list[Skipped] = []
    for group, s in singles:
        if group not in groups:
            merged.append(s)
            continue
        names, split = groups[group], group[1]
        every = set((data.get(split) or {}).get("datasets") or {}) == set(names) and len(names) > 1
        who = "*" if every else names[0] if len(names) == 1 else "{" + ",".join(names) + "}"
        merged.append(Skipped(s.source, f"{split}.datasets.{who}.{group[2]}", values[group], s.why))
    return merged

"""Data configs in the original's layout (SPEC 5.1), loaded into validated dataclasses.

::

    train:
      datasets:
        egogen:
          type: multimodal
          in_domains: tok_rgb-tok_depth-tok_cam        # or a list
          out_domains: [tok_rgb, tok_depth, tok_cam]
          alphas_config: configs/alphas/mix_mod4_all2all_uni.yaml
          num_input_tokens: 2048
          num_target_tokens: 2048
          data_path: 's3://bucket/[rgb,depth,cam]/egogen/token/shard-{000000..000040}.tar'
      weights: [1.0]
      max_bad_fraction: 0.1                             # ours: tolerated share of bad samples
    val:
      datasets:
        egogen: {data_path: ...}                         # other keys fall back to the train entry

Relative paths (``data_path``, ``alphas_config``) are resolved against ``base_dir``: by default the
directory that holds the ``configs/`` folder the file lives in (the repository root), else the file's folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from egom2p.data.modalities import _read_config_text

__all__ = ["DatasetConfig", "DataConfig", "load_data_config"]

# Keys of the original that have no effect here (4M leftovers, SPEC quirk 14) are accepted and ignored.
_IGNORED_KEYS = {"type", "use_wds", "main_augment_domain", "aligned_captions", "tok_train_aug", "wds_shuffle_buffer_tar",
                 "wds_shuffle_buffer_repeat"}
_DATASET_KEYS = {"in_domains", "out_domains", "input_alphas", "target_alphas", "alphas_config", "min_input_tokens",
                 "min_target_tokens", "num_input_tokens", "num_target_tokens", "data_path", "wds_n_repeats",
                 "modality_name_map", "enforce_domains"} | _IGNORED_KEYS


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset of the mixture (or of validation)."""

    name: str
    data_path: str
    in_domains: tuple[str, ...]
    out_domains: tuple[str, ...]
    alphas_config: str | None = None
    input_alphas: str | None = None
    target_alphas: str | None = None
    num_input_tokens: int | None = None
    num_target_tokens: int | None = None
    min_input_tokens: int | None = None
    min_target_tokens: int | None = None
    wds_n_repeats: int = 1
    modality_name_map: dict[str, str] = field(default_factory=dict)
    enforce_domains: bool = False

    @property
    def modalities(self) -> tuple[str, ...]:
        """The dataset's modalities: the sorted union of its input and output domains."""
        return tuple(sorted(set(self.in_domains) | set(self.out_domains)))


@dataclass(frozen=True)
class DataConfig:
    """A validated data config: training mixture, weights and validation sets."""

    train: dict[str, DatasetConfig]
    weights: tuple[float, ...]
    val: dict[str, DatasetConfig]
    max_bad_fraction: float = 0.1
    source: str = "<dict>"

    @property
    def modalities(self) -> tuple[str, ...]:
        """Sorted union of all training datasets' modalities (the global modality list)."""
        return tuple(sorted({m for d in self.train.values() for m in d.modalities}))


def _fail(where: str, key: str, problem: str) -> ValueError:
    return ValueError(f"{where}: '{key}' {problem}")


def _domains(value: Any, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [v for v in value.split("-") if v]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise _fail(where, key, f"must be a hyphen-separated string or a list of names, got {value!r}")
    if not items:
        raise _fail(where, key, "is empty")
    return tuple(items)


def _opt_int(value: Any, key: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(where, key, f"must be a non-negative integer or null, got {value!r}")
    return value


def _opt_alphas(value: Any, key: str, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "-".join(str(float(v)) for v in value)
    raise _fail(where, key, f"must be a number, an 'a1-a2-...' string or a list, got {value!r}")


def _resolve(path: str, base_dir: str) -> str:
    if "://" in path or os.path.isabs(path):
        return path
    return os.path.join(base_dir, path)


def _parse_dataset(name: str, raw: Any, where: str, base_dir: str, fallback: DatasetConfig | None) -> DatasetConfig:
    prefix = f"{where}: dataset '{name}'"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{prefix} must be a mapping")
    unknown = set(raw) - _DATASET_KEYS
    if unknown:
        raise ValueError(f"{prefix} has unknown key(s) {sorted(unknown)}")
    key = f"datasets.{name}"
    if fallback is not None:
        values: dict[str, Any] = {}
    else:
        for required in ("data_path", "in_domains", "out_domains"):
            if required not in raw:
                raise _fail(where, f"{key}.{required}", "is missing")
        values = {}
    if "data_path" in raw:
        if not isinstance(raw["data_path"], str) or not raw["data_path"]:
            raise _fail(where, f"{key}.data_path", f"must be a non-empty string, got {raw['data_path']!r}")
        values["data_path"] = _resolve(raw["data_path"], base_dir)
    for k in ("in_domains", "out_domains"):
        if k in raw:
            values[k] = _domains(raw[k], f"{key}.{k}", where)
    if raw.get("alphas_config") is not None:
        if not isinstance(raw["alphas_config"], str):
            raise _fail(where, f"{key}.alphas_config", f"must be a path string, got {raw['alphas_config']!r}")
        values["alphas_config"] = _resolve(raw["alphas_config"], base_dir)
    for k in ("input_alphas", "target_alphas"):
        if k in raw:
            values[k] = _opt_alphas(raw[k], f"{key}.{k}", where)
    for k in ("num_input_tokens", "num_target_tokens", "min_input_tokens", "min_target_tokens"):
        if k in raw:
            values[k] = _opt_int(raw[k], f"{key}.{k}", where)
    if "wds_n_repeats" in raw:
        n = raw["wds_n_repeats"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise _fail(where, f"{key}.wds_n_repeats", f"must be an integer >= 1, got {n!r}")
        values["wds_n_repeats"] = n
    if "modality_name_map" in raw and raw["modality_name_map"] is not None:
        m = raw["modality_name_map"]
        if not isinstance(m, Mapping) or not all(isinstance(a, str) and isinstance(b, str) for a, b in m.items()):
            raise _fail(where, f"{key}.modality_name_map", f"must map folder names to modality names, got {m!r}")
        values["modality_name_map"] = dict(m)
    if "enforce_domains" in raw:
        if not isinstance(raw["enforce_domains"], bool):
            raise _fail(where, f"{key}.enforce_domains", f"must be true or false, got {raw['enforce_domains']!r}")
        values["enforce_domains"] = raw["enforce_domains"]
    if fallback is not None:
        return replace(fallback, name=name, **values)
    cfg = DatasetConfig(name=name, **values)
    if cfg.alphas_config is None and (cfg.input_alphas is None or cfg.target_alphas is None):
        raise ValueError(f"{prefix} needs 'alphas_config' or both 'input_alphas' and 'target_alphas'")
    return cfg


def _default_base_dir(path: str) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    probe = directory
    while True:
        if os.path.basename(probe) == "configs":
            return os.path.dirname(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            return directory
        probe = parent


def load_data_config(
    path_or_dict: str | os.PathLike | Mapping[str, Any], base_dir: str | os.PathLike | None = None
) -> DataConfig:
    """Load and validate a data config (file or mapping); errors name the file and the bad key."""
    if isinstance(path_or_dict, Mapping):
        raw, where = path_or_dict, "<data config dict>"
        base = os.fspath(base_dir) if base_dir is not None else os.getcwd()
    else:
        where = os.fspath(path_or_dict)
        raw = _read_config_text(where)
        base = os.fspath(base_dir) if base_dir is not None else _default_base_dir(where)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping with 'train' (and optionally 'val')")
    unknown = set(raw) - {"train", "val"}
    if unknown:
        raise ValueError(f"{where}: unknown top-level key(s) {sorted(unknown)}")
    train = raw.get("train")
    if not isinstance(train, Mapping):
        raise _fail(where, "train", "must be a mapping with 'datasets'")
    unknown = set(train) - {"datasets", "weights", "max_bad_fraction"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) under 'train': {sorted(unknown)}")
    datasets = train.get("datasets")
    if not isinstance(datasets, Mapping) or not datasets:
        raise _fail(where, "train.datasets", "must be a non-empty mapping")
    train_sets = {n: _parse_dataset(n, d, where, base, None) for n, d in datasets.items()}
    weights = train.get("weights", [1.0] * len(train_sets))
    if (not isinstance(weights, (list, tuple)) or len(weights) != len(train_sets)
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights) or sum(weights) <= 0):
        raise _fail(where, "train.weights", f"must be {len(train_sets)} non-negative numbers with a positive sum, got {weights!r}")
    frac = train.get("max_bad_fraction", 0.1)
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 <= frac <= 1:
        raise _fail(where, "train.max_bad_fraction", f"must be a number in [0, 1], got {frac!r}")
    val_sets: dict[str, DatasetConfig] = {}
    val = raw.get("val")
    if val is not None:
        if not isinstance(val, Mapping) or set(val) - {"datasets"}:
            raise _fail(where, "val", "must be a mapping with only 'datasets'")
        vd = val.get("datasets") or {}
        if not isinstance(vd, Mapping):
            raise _fail(where, "val.datasets", "must be a mapping")
        for n, d in vd.items():
            val_sets[n] = _parse_dataset(n, d, where, base, train_sets.get(n))
    return DataConfig(train=train_sets, weights=tuple(float(w) for w in weights), val=val_sets,
                      max_bad_fraction=float(frac), source=where)

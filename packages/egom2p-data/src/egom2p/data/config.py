"""Data configs in the original's layout (docs/original-behaviour.md#data-config), loaded into validated dataclasses.

::

    train:
      num_input_tokens: 2048          # the token budgets of every dataset (encoder / decoder tokens per sample)
      num_target_tokens: 2048
      min_input_tokens: null          # optional: budgets drawn uniformly in [min, num] (null: always num)
      datasets:
        egogen:
          type: multimodal                               # the only type (checked)
          in_domains: tok_rgb-tok_depth-tok_cam          # or a list
          out_domains: [tok_rgb, tok_depth, tok_cam]
          alphas_config: mix_mod4_all2all_uni            # a file or shipped preset; or input_alphas / target_alphas
          num_input_tokens: 1024                         # optional: this dataset's own budget
          min_input_tokens: 512
          data_path: 's3://bucket/[rgb,depth,cam]/egogen/token/shard-{000000..000040}.tar'
          wds_n_repeats: 4                               # each sample 4 times in a row, then ...
          wds_shuffle_buffer_tar: 1000                   # ... shuffle buffers as the original's (default 1000)
          wds_shuffle_buffer_repeat: 1000
      weights: [1.0]
      max_bad_fraction: 0.1                              # ours: tolerated share of bad samples
      s3_retry_seconds: 300                              # ours: how long an S3 outage is waited out
                                                         # (null: $EGOM2P_S3_RETRY_SECONDS, else 300)
    val:
      datasets:
        egogen: {data_root: 's3://bucket/val'}           # other keys fall back to the train entry

A dataset's shards are named by exactly one of two keys (:mod:`egom2p.core.sources` resolves both):
``data_path``, a shard pattern as above, or ``data_root``, a root folder under which they are
``<root>/<folder>/<dataset name>/**.tar`` (validation also reads the original's per-sample files
``<root>/<folder>/<dataset name>/<key>.npz`` there). The original's val ``data_path`` is such a root: a
``data_path`` that is no shard pattern is an error saying to use ``data_root``. A val entry without
either takes its train entry's.

Keys keep the original's meanings (``pretrain_utils.py``); where this package deliberately differs, the
config is rejected with a message that says so:

* Budgets: a dataset's own ``num_*_tokens`` / ``min_*_tokens``, else ``train:``'s (the original's main
  config). A val entry does the same with its own keys; as in the original it does not inherit the budgets
  of its train entry. :attr:`DataConfig.max_input_tokens` / ``max_target_tokens`` are the model's forward
  budgets; a budget missing everywhere is an error (the original's code default, 128, is not used).
* ``input_alphas`` / ``target_alphas``: ``"a"`` or ``"a1-a2-..."``, one concentration per *sorted* in / out
  domain (:func:`~egom2p.data.alphas.per_modality_alphas`); lists and count mismatches are rejected. Both
  are needed without ``alphas_config`` (the original splits targets evenly when ``target_alphas`` is
  absent and crashes on null) and rejected next to one (the original ignores them).
* A val entry of a training dataset is masked with the train entry's alphas and read once, in order
  (the original ignores its :data:`TRAIN_ONLY_KEYS`): setting them there is an error.
* :data:`CHECKED_KEYS` accept only the released value; :data:`NO_EFFECT_KEYS` are accepted and logged as
  having no effect, with the reason.

Relative paths (:data:`PATH_KEYS`) follow :mod:`egom2p.core.paths`; they are made absolute once, when the
config is read (:func:`read_data_tree`). ``alphas_config`` and the data config itself may also be the name of a
config egom2p-data ships (``mix_mod4_all2all_uni``; ``demo``), by :func:`egom2p.core.presets.resolve_preset`. The trainer embeds a data config as a file or mapping plus dotted
overrides (:func:`override_data_key`); :class:`DataConfig` keeps the mapping it was built from
(:meth:`DataConfig.to_dict`), which the trainer saves and compares on resume.
"""

from __future__ import annotations

import copy
import difflib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from egom2p.core.config_files import read_config_file
from egom2p.core.errors import SourceError
from egom2p.core.layout import domain_list, folder_modalities
from egom2p.core.paths import resolve_path
from egom2p.core.presets import resolve_preset
from egom2p.core.sources import check_shard_pattern, resolve_source
from egom2p.data.alphas import parse_alphas_string, per_modality_alphas

if TYPE_CHECKING:
    from egom2p.core.modalities import ModalitySpec

__all__ = [
    "CHECKED_KEYS",
    "DATASET_KEYS",
    "NO_EFFECT_KEYS",
    "PATH_KEYS",
    "SOURCE_KEYS",
    "TOP_KEYS",
    "TRAIN_KEYS",
    "TRAIN_ONLY_KEYS",
    "VAL_KEYS",
    "DataConfig",
    "DataKeyError",
    "DatasetConfig",
    "data_config_from_tree",
    "data_config_keys",
    "load_data_config",
    "override_data_key",
    "read_data_tree",
]

logger = logging.getLogger("egom2p.data")

TOP_KEYS = ("train", "val")
TRAIN_KEYS = ("datasets", "weights", "max_bad_fraction", "s3_retry_seconds", "num_input_tokens", "num_target_tokens",
              "min_input_tokens", "min_target_tokens")
VAL_KEYS = ("datasets",)
DATASET_KEYS = (
    "data_path", "data_root", "in_domains", "out_domains", "alphas_config", "input_alphas", "target_alphas",
    "num_input_tokens", "num_target_tokens", "min_input_tokens", "min_target_tokens",
    "wds_n_repeats", "wds_shuffle_buffer_tar", "wds_shuffle_buffer_repeat", "modality_name_map", "enforce_domains",
)
#: Keys a val entry of a training dataset takes from its train entry only.
TRAIN_ONLY_KEYS = ("alphas_config", "input_alphas", "target_alphas", "enforce_domains",
                   "wds_n_repeats", "wds_shuffle_buffer_tar", "wds_shuffle_buffer_repeat")
_STREAM_KEYS = ("wds_n_repeats", "wds_shuffle_buffer_tar", "wds_shuffle_buffer_repeat")
#: Original keys that select one of its code paths: only the released value exists here (train entries).
CHECKED_KEYS = {
    "type": ("multimodal", "the original's other type, 'huggingface', is a 4M text-dataset path"),
    "use_wds": (True, "training reads token shards; the original's use_wds: false path reads a folder of "
                      "files per sample (convert it with `egom2p-data write --from-dir`)"),
}
#: Original keys accepted without effect, with the reason (the original ignores them for EgoM2P too).
NO_EFFECT_KEYS = {
    "main_augment_domain": "the original never augments pre-tokenized data (its augmentation code is commented out)",
    "tok_train_aug": "the original never augments pre-tokenized data (its augmentation code is commented out)",
    "aligned_captions": "a 4M caption option; EgoM2P has no caption modality",
}
#: The two ways of naming a dataset's shards: a shard pattern, or a root folder (module docstring).
SOURCE_KEYS = ("data_path", "data_root")
PATH_KEYS = (*SOURCE_KEYS, "alphas_config")
_BUDGETS = (("min_input_tokens", "num_input_tokens"), ("min_target_tokens", "num_target_tokens"))
DEFAULT_SHUFFLE_BUFFER = 1000  # the original's default for both wds_shuffle_buffer_* keys


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset of the mixture (or of validation), with resolved token budgets."""

    name: str
    in_domains: tuple[str, ...]
    out_domains: tuple[str, ...]
    num_input_tokens: int
    num_target_tokens: int
    data_path: str | None = None  # a shard pattern ...
    data_root: str | None = None  # ... or a root folder: exactly one is set
    min_input_tokens: int | None = None  # None: the budget is always num_input_tokens
    min_target_tokens: int | None = None
    alphas_config: str | None = None
    input_alphas: str | None = None
    target_alphas: str | None = None
    wds_n_repeats: int = 1
    wds_shuffle_buffer_tar: int = DEFAULT_SHUFFLE_BUFFER
    wds_shuffle_buffer_repeat: int = DEFAULT_SHUFFLE_BUFFER
    modality_name_map: dict[str, str] = field(default_factory=dict)
    enforce_domains: bool = False

    @property
    def modalities(self) -> tuple[str, ...]:
        """The dataset's modalities: the sorted union of its input and output domains."""
        return tuple(sorted(set(self.in_domains) | set(self.out_domains)))

    @property
    def source_key(self) -> str:
        """The key that names the shards: ``data_path`` or ``data_root``."""
        return "data_path" if self.data_path is not None else "data_root"

    @property
    def source(self) -> str:
        """The shard pattern or root folder, whichever is set (for messages)."""
        return str(self.data_path if self.data_path is not None else self.data_root)

    def folder_modalities(self, specs: Mapping[str, ModalitySpec]) -> dict[str, str]:
        """Shard folder -> modality name (:func:`egom2p.core.layout.folder_modalities`: each spec's folder, then
        ``modality_name_map``)."""
        return folder_modalities(self.modalities, specs, self.modality_name_map)

    def own_folders(self, specs: Mapping[str, ModalitySpec]) -> list[str]:
        """The folders that feed the dataset's modalities, in the order of the modality names."""
        by_folder = self.folder_modalities(specs)
        return sorted((f for f, m in by_folder.items() if m in self.modalities), key=by_folder.__getitem__)

    def shard_urls(self, specs: Mapping[str, ModalitySpec] | None = None, files: bool = False) -> list[str]:
        """The dataset's shard URLs (:func:`egom2p.core.sources.resolve_source`): its ``data_path`` pattern
        expanded, or the tars under its ``data_root`` in the folders of its modalities (given the modality
        ``specs``; else every folder of a local root); ``[]`` for a local root of per-sample files when ``files``."""
        folders = None if specs is None else self.own_folders(specs)
        return resolve_source(self.data_path, self.data_root, self.name, folders, policy="union", files=files)


@dataclass(frozen=True)
class DataConfig:
    """A validated data config: training mixture, weights and validation sets."""

    train: dict[str, DatasetConfig]
    weights: tuple[float, ...]
    val: dict[str, DatasetConfig]
    max_bad_fraction: float = 0.1
    s3_retry_seconds: float | None = None  # None: $EGOM2P_S3_RETRY_SECONDS, else 300 (egom2p.core.s3)
    source: str = field(default="<data config>", compare=False)
    # The mapping it was built from, paths absolute: what a run saves and a resume compares key by key.
    tree: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The config as the mapping it was read from (paths absolute): loading it gives this config again."""
        return copy.deepcopy(dict(self.tree))

    @property
    def modalities(self) -> tuple[str, ...]:
        """Sorted union of all training datasets' modalities (the global modality list)."""
        return tuple(sorted({m for d in self.train.values() for m in d.modalities}))

    @property
    def max_input_tokens(self) -> int:
        """The largest input budget of the training datasets: the model's encoder token budget."""
        return max(d.num_input_tokens for d in self.train.values())

    @property
    def max_target_tokens(self) -> int:
        """The largest target budget of the training datasets: the model's decoder token budget."""
        return max(d.num_target_tokens for d in self.train.values())


def _fail(where: str, key: str, problem: str) -> ValueError:
    return ValueError(f"{where}: '{key}' {problem}")


class DataKeyError(ValueError):
    """A key the data config does not have, at dotted ``key``, with the closest known key (``close``), else the
    keys known there (``known``); ``no_sub_keys`` names a value given sub-keys, ``dataset`` an unknown dataset."""

    def __init__(self, key: str, where: str = "", close: str | None = None, known: Sequence[str] = (),
                 no_sub_keys: str | None = None, dataset: str | None = None) -> None:
        self.key, self.close, self.known, self.no_sub_keys, self.dataset = key, close, tuple(known), no_sub_keys, dataset
        what = f"unknown dataset '{dataset}' in '{key}'" if dataset is not None else f"'{key}' is not a known key"
        super().__init__(f"{where}: {what}; {self.hint()}" if where else f"{what}; {self.hint()}")

    def hint(self, prefix: str = "") -> str:
        """What to write instead, its keys written with ``prefix`` in front (the trainer's ``data.``)."""
        if self.no_sub_keys is not None:
            return f"'{prefix}{self.no_sub_keys}' has no sub-keys"
        if self.close is not None:
            return f"did you mean '{'' if self.dataset is not None else prefix}{self.close}'?"
        return f"known keys: {', '.join(self.known)}"


def _closest(word: str, allowed: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(word, list(allowed), n=1)
    return close[0] if close else None


def _check_keys(raw: Mapping[Any, Any], allowed: Sequence[str], prefix: str, where: str) -> None:
    """Reject the first unknown key, naming its dotted path and the closest known key."""
    for key in raw:
        if key not in allowed:
            raise DataKeyError(f"{prefix}.{key}" if prefix else str(key), where, _closest(str(key), allowed), allowed)


def _domains(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not (isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value))):
        raise _fail(where, key, f"must be a hyphen-separated string or a list of names, got {value!r}")
    items = domain_list(value)
    if not items:
        raise _fail(where, key, "is empty")
    return tuple(items)


def _count(value: Any, key: str, where: str, minimum: int) -> int | None:
    """An integer >= ``minimum``, or None for null / unset."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(where, key, f"must be an integer >= {minimum} (or null), got {value!r}")
    return value


def _opt_alphas(value: Any, key: str, where: str) -> str | None:
    """A per-dataset alphas value in the original's form (a number or an ``"a1-a2-..."`` string), as a string."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        raise _fail(where, key, f"is a list ({value!r}): the original takes 'a' or 'a1-a2-...', one value per sorted "
                                "domain; mixture components belong in an alphas_config file")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _fail(where, key, f"must be a number or an 'a1-a2-...' string, got {value!r}")
    try:
        parse_alphas_string(value)
    except ValueError as exc:
        raise _fail(where, key, str(exc)) from None
    return str(value)


def _path(value: Any, key: str, where: str) -> str:
    """A path value (made absolute when the config was read, :func:`read_data_tree`)."""
    if not isinstance(value, str) or not value:
        raise _fail(where, key, f"must be a non-empty path string, got {value!r}")
    return value


def _source(raw: Mapping[str, Any], key: str, where: str, inherits: bool) -> dict[str, str | None]:
    """The entry's ``data_path`` (a shard pattern) or ``data_root``: exactly one, or none for a val entry that
    takes its train entry's (``inherits``); null counts as unset."""
    given = [k for k in SOURCE_KEYS if raw.get(k) is not None]
    if len(given) == 2:
        raise _fail(where, f"{key}.data_root", "is set next to 'data_path': give one (data_path: a shard pattern; "
                                               "data_root: a root folder holding <folder>/<dataset name>/)")
    if not given:
        if inherits:
            return {}
        raise _fail(where, f"{key}.data_path", "is missing: set data_path (a shard pattern) or data_root (a root folder)")
    value = _path(raw[given[0]], f"{key}.{given[0]}", where)
    if given[0] == "data_path":
        try:
            check_shard_pattern(value)
        except SourceError as err:
            raise ValueError(f"{where}: '{key}.data_path': {err}") from None
    return {"data_path": None, "data_root": None, given[0]: value}


def _original_only(raw: Mapping[str, Any], key: str, where: str, is_train: bool) -> None:
    """Check :data:`CHECKED_KEYS` (train entries) and log :data:`NO_EFFECT_KEYS`."""
    for k, (value, why) in CHECKED_KEYS.items():
        if is_train and k in raw and raw[k] != value:
            raise _fail(where, f"{key}.{k}", f"is {raw[k]!r}: only {value!r} is supported ({why})")
    for k, why in NO_EFFECT_KEYS.items():
        if k in raw:
            logger.info("%s: '%s.%s' has no effect: %s", where, key, k, why)


def _check_val_entry(raw: Mapping[str, Any], key: str, where: str, fallback: DatasetConfig | None) -> None:
    """Reject the keys the original ignores on a val entry (see the module docstring)."""
    own = TRAIN_ONLY_KEYS if fallback is not None else _STREAM_KEYS
    for k in own:
        if raw.get(k) is not None:
            why = ("validation reads each sample once, in order" if k in _STREAM_KEYS
                   else "validation is masked with the train entry's alphas")
            raise _fail(where, f"{key}.{k}", f"has no effect on a val entry ({why}, as in the original); "
                                            + ("set it under 'train.datasets'" if fallback is not None else "remove it"))


def _alphas(cfg: DatasetConfig, key: str, where: str) -> None:
    """The alphas of a resolved entry: an alphas_config, or both strings with one value per sorted domain."""
    strings = [k for k in ("input_alphas", "target_alphas") if getattr(cfg, k) is not None]
    if cfg.alphas_config is not None:
        if strings:
            raise _fail(where, f"{key}.{strings[0]}", "has no effect next to 'alphas_config' (the original ignores it): "
                                                      "remove one of them")
        return
    if len(strings) < 2:
        raise _fail(where, key, "needs 'alphas_config' or both 'input_alphas' and 'target_alphas' (a missing one is "
                                "all zeros in the original, an even split; null crashes it)")
    for k, domains in (("input_alphas", cfg.in_domains), ("target_alphas", cfg.out_domains)):
        try:
            per_modality_alphas(getattr(cfg, k), domains, f"'{key}.{k}'")
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None


def _parse_dataset(
    name: str, raw: Any, key: str, where: str, fallback: DatasetConfig | None,
    defaults: Mapping[str, int | None], is_train: bool,
) -> DatasetConfig:
    """One dataset entry at dotted ``key``; a val entry with a train ``fallback`` only overrides it.

    ``defaults`` holds ``train:``'s budgets (the original's main config), which fill the budget keys an
    entry does not set itself (val entries included).
    """
    if not isinstance(raw, Mapping):
        raise _fail(where, key, f"must be a mapping, got {type(raw).__name__}")
    _check_keys(raw, DATASET_KEYS + tuple(CHECKED_KEYS) + tuple(NO_EFFECT_KEYS), key, where)
    _original_only(raw, key, where, is_train)
    if not is_train:
        _check_val_entry(raw, key, where, fallback)
    values: dict[str, Any] = _source(raw, key, where, inherits=fallback is not None)
    if fallback is None:
        for required in ("in_domains", "out_domains"):
            if required not in raw:
                raise _fail(where, f"{key}.{required}", "is missing")
    if raw.get("alphas_config") is not None:
        values["alphas_config"] = _path(raw["alphas_config"], f"{key}.alphas_config", where)
    for k in ("in_domains", "out_domains"):
        if k in raw:
            values[k] = _domains(raw[k], f"{key}.{k}", where)
    for k in ("input_alphas", "target_alphas"):
        if k in raw:
            values[k] = _opt_alphas(raw[k], f"{key}.{k}", where)
    for low, high in _BUDGETS:
        # Present, even null, it wins: null means "always num", as dataset_config.get(low, main) in the original.
        values[low] = _count(raw[low], f"{key}.{low}", where, minimum=0) if low in raw else defaults[low]
        budget = _count(raw.get(high), f"{key}.{high}", where, minimum=1)
        values[high] = budget if budget is not None else defaults[high]
        if values[high] is None:
            raise _fail(where, f"{key}.{high}", f"is missing: set it here or 'train.{high}'")
    if "wds_n_repeats" in raw:
        values["wds_n_repeats"] = _count(raw["wds_n_repeats"], f"{key}.wds_n_repeats", where, minimum=1) or 1
    for k in ("wds_shuffle_buffer_tar", "wds_shuffle_buffer_repeat"):
        if k in raw:
            size = _count(raw[k], f"{key}.{k}", where, minimum=0)
            values[k] = DEFAULT_SHUFFLE_BUFFER if size is None else size
    if raw.get("modality_name_map") is not None:
        m = raw["modality_name_map"]
        if not isinstance(m, Mapping) or not all(isinstance(a, str) and isinstance(b, str) for a, b in m.items()):
            raise _fail(where, f"{key}.modality_name_map", f"must map folder names to modality names, got {m!r}")
        values["modality_name_map"] = dict(m)
    if "enforce_domains" in raw:
        if not isinstance(raw["enforce_domains"], bool):
            raise _fail(where, f"{key}.enforce_domains", f"must be true or false, got {raw['enforce_domains']!r}")
        values["enforce_domains"] = raw["enforce_domains"]
    cfg = replace(fallback, name=name, **values) if fallback is not None else DatasetConfig(name=name, **values)
    _alphas(cfg, key, where)
    for low, high in _BUDGETS:
        if getattr(cfg, low) is not None and getattr(cfg, low) > getattr(cfg, high):
            raise _fail(where, f"{key}.{low}", f"is {getattr(cfg, low)}, more than {high} = {getattr(cfg, high)}")
    return cfg


def _datasets(raw: Any, key: str, where: str, required: bool) -> Mapping[str, Any]:
    if raw is None and not required:
        return {}
    if not isinstance(raw, Mapping) or (required and not raw):
        raise _fail(where, key, "must be a non-empty mapping of dataset name -> settings")
    bad = [n for n in raw if not isinstance(n, str) or not n or "/" in n]
    if bad:
        raise _fail(where, key, f"has invalid dataset names {bad} (non-empty strings without '/')")
    return raw


def _name(source: str | os.PathLike | Mapping[str, Any], where: str | None) -> str:
    return where or ("<data config>" if isinstance(source, Mapping) else os.fspath(source))


def _resolve_entry(entry: Any, base: str) -> None:
    """Make the path keys of one dataset entry absolute against ``base``, in place (other values: validation's);
    an ``alphas_config`` that names no file may name a shipped alphas preset."""
    if isinstance(entry, dict):
        for k in PATH_KEYS:
            value = entry.get(k)
            if not isinstance(value, str):
                continue
            if k == "alphas_config":
                try:
                    entry[k] = resolve_preset("alphas", value, base).path
                    continue
                except FileNotFoundError:
                    pass  # kept as a path: where the file is read, its error names it and the presets
            entry[k] = resolve_path(value, base)


def _resolve_split(split: Any, base: str) -> None:
    datasets = split.get("datasets") if isinstance(split, Mapping) else None
    if isinstance(datasets, Mapping):
        for entry in datasets.values():
            _resolve_entry(entry, base)


def read_data_tree(
    source: str | os.PathLike | Mapping[str, Any], base_dir: str | os.PathLike | None = None, where: str | None = None,
) -> dict[str, Any]:
    """A data config file's mapping (or a copy of ``source``), the path keys of its dataset entries made absolute.

    Relative paths resolve against ``base_dir``, default the file's project root
    (:func:`egom2p.core.paths.config_base_dir`) or, for a mapping or a shipped data config named by ``source``
    (``"demo"``), the working directory. The one place the data config's paths are resolved; values of the wrong
    type are left for validation to name.
    """
    if isinstance(source, Mapping):
        raw: Any = source
        base = os.fspath(base_dir) if base_dir is not None else os.getcwd()
    else:
        found = resolve_preset("data", source)  # a file, or the name of a shipped data config
        raw = read_config_file(found.path)
        base = os.fspath(base_dir) if base_dir is not None else found.base_dir
    if not isinstance(raw, Mapping):
        raise ValueError(f"{_name(source, where)}: expected a mapping with 'train' (and optionally 'val'), "
                         f"got {type(raw).__name__}")
    tree = copy.deepcopy(dict(raw))
    for split in tree.values():
        _resolve_split(split, base)
    return tree


def data_config_keys() -> list[str]:
    """Every dotted key of a data config (``train.weights``, ``val.datasets.<name>.data_root``), sorted."""
    keys = [f"train.{k}" for k in TRAIN_KEYS if k != "datasets"] + [f"val.{k}" for k in VAL_KEYS if k != "datasets"]
    keys += [f"{split}.datasets.<name>.{k}" for split in TOP_KEYS for k in _entry_keys(split)]
    return sorted(keys)


def _entry_keys(split: str) -> tuple[str, ...]:
    """Keys of a dataset entry: a val entry takes the stream and alphas keys from its train entry."""
    return DATASET_KEYS if split == "train" else tuple(k for k in DATASET_KEYS if k not in TRAIN_ONLY_KEYS)


def _check_override(parts: list[str], tree: Mapping[str, Any]) -> None:
    """Raise :class:`DataKeyError` for an override key (split in ``parts``) the data config does not have."""
    key = ".".join(parts)
    if parts[0] not in TOP_KEYS:
        raise DataKeyError(key, close=_closest(parts[0], TOP_KEYS), known=TOP_KEYS)
    split_keys = TRAIN_KEYS if parts[0] == "train" else VAL_KEYS
    if len(parts) < 2 or parts[1] not in split_keys:
        close = _closest(parts[1] if len(parts) > 1 else "", split_keys)
        raise DataKeyError(key, close=f"{parts[0]}.{close}" if close else None, known=split_keys)
    if parts[1] != "datasets":
        if len(parts) > 2:
            raise DataKeyError(key, no_sub_keys=".".join(parts[:2]))
        return
    if len(parts) < 3:
        return  # the whole datasets mapping
    known = set((tree.get(parts[0]) or {}).get("datasets") or {})
    if parts[0] == "val":  # a val entry may be added for any training dataset
        known |= set(((tree.get("train") or {}).get("datasets")) or {})
    if len(parts) > 3 and parts[2] not in known:
        raise DataKeyError(key, close=_closest(parts[2], sorted(known)), known=sorted(known), dataset=parts[2])
    allowed = _entry_keys(parts[0])
    if len(parts) == 4 and parts[3] not in allowed:
        close = _closest(parts[3], allowed)
        raise DataKeyError(key, close=".".join([*parts[:3], close]) if close else None, known=allowed)
    if len(parts) > 4:
        raise DataKeyError(key, no_sub_keys=".".join(parts[:4]))


def override_data_key(tree: dict[str, Any], key: str, value: Any, base_dir: str | os.PathLike) -> None:
    """Set the dotted ``key`` of a data tree (``train.weights``, ``val.datasets.egogen.data_root``) to ``value``,
    in place, its paths made absolute against ``base_dir``.

    A dataset entry's ``data_path`` or ``data_root`` replaces the other one (the override names the entry's
    source). Raises :class:`DataKeyError` for a key the data config does not have, and for a dataset that
    neither split names (a val entry may be added for any training dataset).
    """
    parts = key.split(".")
    _check_override(parts, tree)
    node: Any = tree
    for depth, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise DataKeyError(key, no_sub_keys=".".join(parts[: depth + 1]))
    node[parts[-1]] = value = copy.deepcopy(value)
    # Only the value just set can be relative: the rest was resolved when it was read.
    base = os.fspath(base_dir)
    if len(parts) == 4:
        if parts[3] in SOURCE_KEYS:
            node.pop(SOURCE_KEYS[1 - SOURCE_KEYS.index(parts[3])], None)
        if parts[3] in PATH_KEYS:  # resolved as in a file: an alphas_config may name a shipped preset
            entry = {parts[3]: value}
            _resolve_entry(entry, base)
            node[parts[3]] = entry[parts[3]]
    elif len(parts) == 3:
        _resolve_entry(value, base)
    elif len(parts) == 2:
        _resolve_split({"datasets": value}, base)
    else:
        _resolve_split(value, base)


def load_data_config(
    source: str | os.PathLike | Mapping[str, Any], base_dir: str | os.PathLike | None = None, where: str | None = None,
) -> DataConfig:
    """Load and validate a data config file or mapping; errors name the source and the dotted key.

    ``base_dir`` overrides where relative paths resolve (default: the file's project root, see
    :func:`egom2p.core.paths.config_base_dir`; the working directory for a mapping). ``where`` names the
    source in errors, e.g. ``"configs/train/my-run.yaml: data"`` for a mapping taken from another file.
    """
    return data_config_from_tree(read_data_tree(source, base_dir, where), _name(source, where))


def data_config_from_tree(tree: Mapping[str, Any], where: str = "<data config>") -> DataConfig:
    """Validate a tree of :func:`read_data_tree` (after any :func:`override_data_key`) into a :class:`DataConfig`
    that keeps a copy of it; errors name ``where`` and the dotted key."""
    name, raw = where, tree
    _check_keys(raw, TOP_KEYS, "", name)
    train = raw.get("train")
    if not isinstance(train, Mapping):
        raise _fail(name, "train", "must be a mapping with 'datasets'")
    _check_keys(train, TRAIN_KEYS, "train", name)
    defaults = {high: _count(train.get(high), f"train.{high}", name, minimum=1) for _, high in _BUDGETS}
    defaults.update({low: _count(train.get(low), f"train.{low}", name, minimum=0) for low, _ in _BUDGETS})
    datasets = _datasets(train.get("datasets"), "train.datasets", name, required=True)
    train_sets = {n: _parse_dataset(n, d, f"train.datasets.{n}", name, None, defaults, True)
                  for n, d in datasets.items()}
    weights = train.get("weights", [1.0] * len(train_sets))
    if (not isinstance(weights, (list, tuple)) or len(weights) != len(train_sets)
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights) or sum(weights) <= 0):
        raise _fail(name, "train.weights", f"must be {len(train_sets)} non-negative numbers with a positive sum, got {weights!r}")
    frac = train.get("max_bad_fraction", 0.1)
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 <= frac <= 1:
        raise _fail(name, "train.max_bad_fraction", f"must be a number in [0, 1], got {frac!r}")
    retry = train.get("s3_retry_seconds")
    if retry is not None and (isinstance(retry, bool) or not isinstance(retry, (int, float)) or not retry >= 0):
        raise _fail(name, "train.s3_retry_seconds", f"must be a number of seconds >= 0 (or null), got {retry!r}")
    config = DataConfig(train=train_sets, weights=tuple(float(w) for w in weights), val={},
                        max_bad_fraction=float(frac), s3_retry_seconds=None if retry is None else float(retry),
                        source=name, tree=copy.deepcopy(dict(raw)))
    val = raw.get("val")
    if val is None:
        return config
    if not isinstance(val, Mapping):
        raise _fail(name, "val", "must be a mapping with 'datasets'")
    _check_keys(val, VAL_KEYS, "val", name)
    val_sets = {}
    for n, d in _datasets(val.get("datasets"), "val.datasets", name, required=False).items():
        key = f"val.datasets.{n}"
        val_sets[n] = cfg = _parse_dataset(n, d, key, name, train_sets.get(n), defaults, False)
        # Validation batches go through the model with the training budgets: they must fit.
        for high, most in (("num_input_tokens", config.max_input_tokens), ("num_target_tokens", config.max_target_tokens)):
            if getattr(cfg, high) > most:
                raise _fail(name, f"{key}.{high}", f"is {getattr(cfg, high)}, more than the largest training budget {most}")
    return replace(config, val=val_sets)

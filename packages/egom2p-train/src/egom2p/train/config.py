"""The training configuration: one tree of small dataclasses (lingua style).

Dataclass defaults, then a YAML file, then dotted ``key=value`` overrides (``optim.blr=1e-3``,
``model.dim=384``, ``data.train.num_input_tokens=32``); every key of the tree, the data config
included, is reachable and none has a shadow elsewhere. Key names follow the original EgoM2P trainer
where one exists (``blr``, ``total_tokens``, ``warmup_tokens``, ...). Everything is validated once
at start-up, so a typo fails in the first second with the full dotted key and where it came from.

The top-level ``recipe`` picks what is trained (:mod:`egom2p.train.recipe`): ``egom2p`` (default) reads
the sections ``model`` (a preset plus every ``EgoM2PConfig`` field) and ``data`` (the data config of
:mod:`egom2p.data.config`: a data YAML path, which is included, or an inline mapping; token budgets
live there and only there); ``tokenizer`` reads ``tokenizer`` (a preset plus every ``TokenizerConfig``
field) and ``tokenizer_data`` (the windows). A section or key of the other recipe is refused when set.
Shared by both: ``loader``, ``optim``, ``schedule``, ``checkpoint``, ``metrics``, and the run keys at the
top level.

Relative paths follow :mod:`egom2p.core.paths`: a path written in a config file resolves against
that file's project root, a path given on the command line against the working directory. They are
resolved when read, so the rest of the trainer only sees absolute paths and the saved
``config.yaml`` reproduces the run from any directory. The config file, ``model.modalities``, ``data`` and a
data config's ``alphas_config`` also take the name of a config the wheels ship (``--config demo-cpu``,
``model.modalities=tiny``, ``data=demo``; :mod:`egom2p.core.presets`); an existing file wins over a name.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from egom2p.core.config_files import parse_yaml, read_config_file
from egom2p.core.enums import AttnBackend, LossType
from egom2p.core.paths import resolve_path
from egom2p.core.presets import preset_names, resolve_preset
from egom2p.data.config import (
    DataConfig,
    DataKeyError,
    data_config_from_tree,
    data_config_keys,
    override_data_key,
    read_data_tree,
)
from egom2p.model import EgoM2PConfig, preset_config
from egom2p.tokenizers.camera import BASES
from egom2p.tokenizers.config import TokenizerConfig
from egom2p.tokenizers.gaze import GAZE_FRAMES, GazeFrame
from egom2p.tokenizers.presets import tokenizer_config
from egom2p.train.lora import LORA_BLOCKS, LORA_TARGETS

DTYPES = ("bfloat16", "float16", "float32")
DEVICES = ("auto", "cpu", "cuda")
RECIPES = ("egom2p", "tokenizer")
# The keys only one recipe reads (a section, or one key of a shared section): set under the other, refused.
RECIPE_KEYS = {
    "egom2p": ("model", "data", "loss_type", "loader.pack", "loader.pack_rows", "loader.pack_multiple",
               "loader.num_workers", "finetune"),
    "tokenizer": ("tokenizer", "tokenizer_data"),
}


class ConfigError(ValueError):
    """A configuration key is unknown, has the wrong type or an impossible value."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def _model_section() -> type:
    """``model``: a preset name plus every ``EgoM2PConfig`` field, derived from it so the two never drift.

    A field left unset (null) takes the preset's value; after loading, every field holds the value
    the run uses (the resolved tree).
    """
    hints = typing.get_type_hints(EgoM2PConfig)
    fields: list[tuple[str, Any, Any]] = [("preset", str, field(default="egom2p-base"))]
    for f in dataclasses.fields(EgoM2PConfig):
        # modalities: a modality-file path or an inline mapping name -> {vocab_size, grid|length}
        tp = str | dict[str, Any] if f.name == "modalities" else hints[f.name]
        fields.append((f.name, tp | None, field(default=None)))
    cls = dataclasses.make_dataclass("ModelConfig", fields, namespace={"__doc__": _model_section.__doc__})
    cls.__module__ = __name__
    return cls


ModelConfig = _model_section()


def _tokenizer_section() -> type:
    """``tokenizer``: a preset name (``egom2p.tokenizers.presets``) plus every ``TokenizerConfig`` field.

    A field left unset (null) takes the preset's value; after loading, every field holds the value the run
    uses (the resolved tree).
    """
    hints = typing.get_type_hints(TokenizerConfig)
    fields: list[tuple[str, Any, Any]] = [("preset", str, field(default="cam-released"))]
    fields += [(f.name, hints[f.name] | None, field(default=None)) for f in dataclasses.fields(TokenizerConfig)]
    cls = dataclasses.make_dataclass("TokenizerSection", fields, namespace={"__doc__": _tokenizer_section.__doc__})
    cls.__module__ = __name__
    return cls


TokenizerSection = _tokenizer_section()


@dataclass
class TokenizerDataConfig:
    """The windows the tokenizer recipe trains and validates on (read by ``egom2p.train.recipes.window_sources``).

    A source is a path or ``{synthetic: {windows: N, seed: S}}`` (``egom2p.tokenizers.synthetic``). A path
    is a window array ``.npy`` ((N, 60, 4, 4) camera poses or (N, 60, 2) gaze pixels), a camera or gaze track
    file (``.npz``, TUM / ``t x y`` text, or an ``.npy`` track with ``fps``), or a folder of track files;
    tracks are resampled to 30 fps and cut into windows every ``stride`` frames.
    """

    train: list[str | dict[str, Any]] = field(default_factory=list)  # training sources (at least one)
    val: list[str | dict[str, Any]] = field(default_factory=list)  # validation sources (none: no validation)
    basis: str | None = None  # camera: the dataset basis (egom2p.tokenizers.camera.BASES); null: none
    gaze_frame: str | dict[str, Any] | None = None  # gaze (required): a GAZE_FRAMES name or {orig_res, resize_res, crop}
    stride: int = 10  # frames between the starts of windows cut from tracks
    fps: float | None = None  # frame rate of .npy tracks, which carry no times


@dataclass
class LoaderConfig:
    """The training data loader of each rank."""

    batch_size: int = 256  # per-GPU micro batch; global batch = batch_size x accum_iter x world size
    num_workers: int = 10  # data loader worker processes per rank
    # Packing (egom2p.data.packing): each batch's selected tokens in `pack_rows` shared rows whose widths are
    # multiples of `pack_multiple`, so padding is not computed; the loss is that of the unpacked batch.
    pack: bool = True  # ours: pack each batch before the forward
    pack_rows: int | None = None  # ours: packed rows per micro batch; null: the cheapest for the attention backend
    # (egom2p.train.packing: one row with the Triton kernel, a few shorter rows with dense sdpa)
    pack_multiple: int = 256  # ours: packed row widths are rounded up to a multiple of this (few static shapes)


@dataclass
class OptimConfig:
    """AdamW (docs/original-behaviour.md#optimizer) and the LR rule lr = blr x global batch / 256."""

    blr: float = 1e-4  # base LR; lr = blr x global batch / 256
    min_blr: float = 0.0  # base LR at the end of the cosine
    weight_decay: float = 0.05  # AdamW decay (norms and biases exempt)
    opt_betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # AdamW betas
    opt_eps: float = 1e-8  # AdamW eps
    clip_grad: float | None = None  # global grad-norm clip (null: no clipping)


@dataclass
class ScheduleConfig:
    """Run length and LR curve; epochs and warmup are derived from tokens when those are > 0."""

    epoch_size: int | None = None  # samples per nominal "epoch" over all GPUs (required)
    epochs: int = 100  # run length when total_tokens <= 0
    warmup_epochs: float = 10  # warmup length when warmup_tokens <= 0
    total_tokens: float = -1  # billions of (input + target budget) tokens; <= 0: use epochs
    warmup_tokens: float = -1  # billions; <= 0: use warmup_epochs
    # The recipe's samples per optimizer step over all GPUs: accum_iter = global_batch_size / (batch_size x world
    # size), so the LR, warmup and run length do not change with the number of GPUs.
    global_batch_size: int | None = None
    accum_iter: int | None = None  # micro-batches per optimizer step; null: derived from global_batch_size (else 1)
    max_steps: int | None = None  # stop after N optimizer steps (the LR schedule is unchanged)


@dataclass
class CheckpointConfig:
    """Step-directory checkpoints under ``output_dir/checkpoints/``."""

    auto_resume: bool = True  # continue from the newest checkpoint in output_dir
    save_ckpt_freq: int = 20  # epochs between checkpoints
    every_steps: int | None = None  # ours: steps between checkpoints; overrides save_ckpt_freq when set
    keep_last_k: int = 3  # ours: checkpoints kept
    s3_save_dir: str | None = None  # s3://bucket/prefix: each checkpoint is also uploaded there
    async_save: bool = True  # ours: periodic checkpoints written by a background thread; the last one synchronously
    # Weights to start from when there is nothing to resume (the original's fine-tuning): a step
    # directory, a run directory (its newest step) or the released .pth; optimizer and step start fresh.
    init_from: str | None = None


@dataclass
class LoraSection:
    """LoRA adapters (``peft``, the ``[lora]`` extra) on the blocks' linear layers; rank 0: none.

    Only the adapters (and the embeddings of modalities the pretrained weights lack) train; the step directory
    keeps them in ``adapter.safetensors`` beside the unchanged base weights, and every reader merges them.
    """

    rank: int = 0  # ours: adapter rank r; 0: no LoRA
    alpha: float = 16.0  # ours: the adapter's output is scaled by alpha / rank
    dropout: float = 0.0  # ours: dropout on the adapter's input
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))  # ours: qkv q kv proj fc1 fc2 fc3
    blocks: list[str] = field(default_factory=lambda: list(LORA_BLOCKS))  # ours: encoder and/or decoder


@dataclass
class FinetuneConfig:
    """The original's staged fine-tuning (a frozen warm-up that trains only embeddings), and LoRA
    (:mod:`egom2p.train.finetune`)."""

    frozen_model_epochs: int = 0  # warm-up epochs in which the blocks are frozen (0: none)
    frozen_model_tokens: float = 0.0  # or the warm-up in billions of tokens (rounded up to whole epochs)
    frozen_model_blr: float | None = None  # the warm-up's constant base LR (x global batch / 256); null: optim.blr
    # modalities whose embeddings the warm-up also freezes (the original's hyphenated string, as a list)
    frozen_embedding_domain: list[str] = field(default_factory=list)
    lora: LoraSection = field(default_factory=LoraSection)


@dataclass
class MetricsConfig:
    """Metrics lines, validation and wandb."""

    log_every_steps: int = 10  # ours: steps between metrics lines
    eval_freq: int = 10  # epochs between validations
    val_every_steps: int | None = None  # ours: steps between validations; overrides eval_freq when set
    log_wandb: bool = False  # also log to wandb (rank 0)
    wandb_project: str | None = None  # wandb project
    wandb_entity: str | None = None  # wandb entity (team)
    wandb_run_name: str | None = None  # wandb run name


@dataclass
class ResumeConfig:
    """What a resume may find changed (``RESUME_TRAINED_KEYS`` below says which changes need to be listed)."""

    # ours: dotted keys or prefixes (data.train.datasets, model) whose change since the checkpoint is accepted,
    # although it alters what is trained; every change is logged either way
    allow_changes: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    """Every knob of a training run. Defaults are the original trainer's code defaults."""

    recipe: str = "egom2p"  # ours: what is trained: egom2p | tokenizer (egom2p.train.recipe)
    output_dir: str = ""  # run directory: checkpoints/step-N/, metrics.jsonl, config.yaml
    seed: int = 0  # weights from seed; data and RNG per rank from seed + rank
    dtype: str = "bfloat16"  # autocast dtype; parameters stay float32
    device: str = "auto"  # ours: auto | cpu | cuda
    compile: bool = False  # ours: torch.compile the model
    activation_checkpointing: bool = False  # ours: recompute block activations in backward
    fsdp: bool = False  # ours: FSDP2 fully_shard instead of DDP
    loss_type: str = "mod"  # mod | token | mod_present (docs/original-behaviour.md#losses)
    max_bad_steps: int = 5  # ours: stop after K non-finite steps in a row
    check_memory: bool = True  # ours: refuse to start when the memory estimate exceeds what the device has free
    eval_only: bool = False  # validate the resumed (or init_from) weights once and exit without training
    model: ModelConfig = field(default_factory=ModelConfig)  # type: ignore[valid-type]
    # The data config (egom2p.data.config owns it): a data YAML path or an inline mapping, plus data.* overrides,
    # read and validated once; to_dict() and config.yaml hold its mapping, paths absolute.
    data: DataConfig | None = None
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    resume: ResumeConfig = field(default_factory=ResumeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    # The tokenizer recipe's model and windows.
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)  # type: ignore[valid-type]
    tokenizer_data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML-able data (what ``output_dir/config.yaml`` holds): the keys of its recipe."""
        tree = dataclasses.asdict(dataclasses.replace(self, data=None))  # the data config saves its own mapping
        tree["data"] = self.data.to_dict() if self.data is not None else None
        for other, keys in RECIPE_KEYS.items():
            if other != self.recipe:
                for key in keys:
                    section, _, leaf = key.rpartition(".")
                    (tree[section] if section else tree).pop(leaf, None)
        return tree

    def model_config(self) -> EgoM2PConfig:
        """The architecture the ``model`` section describes."""
        return _model_config(self.model)

    def tokenizer_config(self) -> TokenizerConfig:
        """The tokenizer the ``tokenizer`` section describes."""
        return _tokenizer_config(self.tokenizer)

    def data_config(self) -> DataConfig:
        """The validated data config of the ``data`` section."""
        if self.data is None:
            raise ConfigError("config key 'data': must be set (a data yaml or preset name, or a mapping)", "data")
        return self.data


# Keys whose string values are filesystem paths, resolved when read (the data config resolves its own).
_PATH_KEYS = ("output_dir", "checkpoint.init_from")
# Keys whose string values are a file or the name of a shipped config of that kind (egom2p.core.presets).
_PRESET_KEYS = {"model.modalities": "modalities"}
# Keys holding lists of sources whose path entries resolve like _PATH_KEYS.
_SOURCE_KEYS = ("tokenizer_data.train", "tokenizer_data.val")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def config_keys() -> list[str]:
    """Every dotted key of the tree, sorted; dataset names in the data subtree appear as ``<name>``."""
    keys: list[str] = []

    def walk(cls: type, prefix: str) -> None:
        for name, tp in _hints(cls).items():
            if _is_section(tp):
                walk(tp, f"{prefix}{name}.")
            else:
                keys.append(prefix + name)

    walk(TrainConfig, "")
    return sorted(keys + [f"data.{k}" for k in data_config_keys()])


# ------------------------------------------------------------------ what a resume may find changed
# Every key takes the class of its longest prefix listed here; a key under neither list fails
# test_every_config_key_is_classified, so a new key is classified when it is added.
# Trained: the change alters what is trained (the data sources, datasets, budgets, domains, masking and weights, the
# seed the data streams are drawn from, the modalities, the architecture, the objective): a resume refuses it unless
# resume.allow_changes lists it. Run: the optimizer, the run length, checkpoints, logging, validation data, loader
# workers and how the same model is computed: the change is logged and the run continues with it.
RESUME_TRAINED_KEYS = ("recipe", "seed", "loss_type", "model", "data", "tokenizer", "tokenizer_data", "finetune")
RESUME_RUN_KEYS = ("output_dir", "dtype", "device", "compile", "activation_checkpointing", "fsdp", "max_bad_steps",
                   "check_memory", "eval_only", "loader", "optim", "schedule", "checkpoint", "metrics", "resume",
                   "model.attn_backend", "model.fused_loss", "model.fused_loss_chunk_size",
                   "data.train.max_bad_fraction", "data.train.s3_retry_seconds", "data.val", "tokenizer_data.val")


class _Unset:
    """The value of a key that one of two compared configs does not have."""

    def __repr__(self) -> str:
        return "(unset)"


UNSET = _Unset()


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(f"{prefix}.")


def changes_what_is_trained(key: str) -> bool:
    """Whether a change of dotted ``key`` alters what is trained: the class of its longest prefix in
    ``RESUME_TRAINED_KEYS`` / ``RESUME_RUN_KEYS``; a key under neither (one an older version saved) counts as trained."""
    matches = [(len(prefix), trained) for trained, prefixes in ((True, RESUME_TRAINED_KEYS), (False, RESUME_RUN_KEYS))
               for prefix in prefixes if _under(key, prefix)]
    return max(matches)[1] if matches else True


def change_allowed(key: str, allowed: Sequence[str]) -> bool:
    """Whether ``resume.allow_changes`` (``allowed``) lists dotted ``key`` or a section above it."""
    return any(_under(key, entry) for entry in allowed)


def _plain(value: Any) -> Any:
    """Tuples as lists, so a tree read back from YAML compares equal to the one in memory."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Every value that differs between two config trees (``TrainConfig.to_dict()``): ``(dotted key, old, new)``
    in the new tree's order; mappings are compared key by key, a key one side lacks has ``UNSET`` there."""
    changes: list[tuple[str, Any, Any]] = []
    for key in [*new, *(k for k in old if k not in new)]:
        dotted = f"{prefix}{key}"
        before, after = old.get(key, UNSET), new.get(key, UNSET)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            changes += config_changes(before, after, f"{dotted}.")
        elif _plain(before) != _plain(after):
            changes.append((dotted, before, after))
    return changes


def _names_a_key(entry: str) -> bool:
    """Whether ``entry`` (of ``resume.allow_changes``) is a config key or a section (a dataset name for ``<name>``)."""
    parts = entry.split(".")
    return any(len(parts) <= len(key) and all(k in ("<name>", p) for p, k in zip(parts, key))
               for key in (k.split(".") for k in config_keys()))


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _exactly(kind: type) -> Callable[[Any], Any]:
    """A converter accepting values of ``kind`` as they are (a bool is never a number)."""

    def convert(value: Any) -> Any:
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            return value
        raise ValueError(value)

    return convert


def _to_int(value: Any) -> int:
    """An int, or a float with an integral value (1e6 written in YAML)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return _exactly(int)(value)


def _to_float(value: Any) -> float:
    """An int or float, or a number written as a string (YAML 1.1 reads "1e-4" as a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(value)
    return float(value)


# The scalar annotations: a converter returning the accepted value or raising ValueError.
_SCALARS: dict[Any, Callable[[Any], Any]] = {bool: _exactly(bool), int: _to_int, float: _to_float, str: _exactly(str)}


def _coerce(key: str, value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; accept ints for floats and YAML-ish strings."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = ConfigError(f"config key '{key}'{where}: expected {_type_name(tp)}, got {value!r}", key)
    if origin in (typing.Union, types.UnionType):  # X | None, str | dict
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
            raise bad
        for inner in (a for a in args if a is not type(None)):
            try:
                return _coerce(key, value, inner, where)
            except ConfigError:
                continue
        raise bad
    if tp in _SCALARS:
        try:
            return _SCALARS[tp](value)
        except ValueError:
            raise bad from None
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_coerce(f"{key}[{i}]", v, args[0], where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise bad
        return copy.deepcopy(dict(value))
    raise TypeError(f"unsupported config annotation {tp!r} for '{key}'")


# Keys of the earlier flat config whose names did not survive in the tree: the hint points to the new key.
_RENAMED = {"data_config": "data", "model_overrides": "model"}


def _suggest(key: str) -> str:
    """`` (did you mean 'x'?)`` for an unknown dotted key: same leaf name first, then the closest key."""
    if key.split(".")[0] in _RENAMED:
        return f" (did you mean '{_RENAMED[key.split('.')[0]]}'?)"
    known = config_keys()
    leaf = key.rpartition(".")[2]
    same_leaf = sorted((k for k in known if k.rpartition(".")[2] == leaf), key=len)
    close = same_leaf[:1] or difflib.get_close_matches(key, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unknown(key: str, where: str, hint: str | None = None) -> ConfigError:
    return ConfigError(f"unknown config key '{key}'{where}{_suggest(key) if hint is None else hint}", key)


class _Builder:
    """Collects values from the file and the overrides into a nested dict, remembering each key's source."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}  # dotted key -> " in FILE" / " (command-line override 'k=v')"
        self.data: dict[str, Any] | None = None
        self.data_where = ""  # the data config's origin, for data errors
        self.data_overrides: list[str] = []  # data keys set after it was read

    # ------------------------------------------------------------------ the dataclass sections
    def set(self, key: str, raw: Any, where: str, base: str) -> None:
        """Set one dotted key (or a whole section given as a mapping), type-checked, paths resolved."""
        parts = key.split(".")
        if parts[0] == "data":
            self._set_data(parts[1:], raw, where, base)
            return
        cls, node = TrainConfig, self.values
        for i, part in enumerate(parts):
            here = ".".join(parts[: i + 1])
            hints = _hints(cls)
            if part not in hints:
                raise _unknown(key, where)
            tp = hints[part]
            last = i == len(parts) - 1
            if _is_section(tp):
                if not last:
                    cls, node = tp, node.setdefault(part, {})
                    continue
                if not isinstance(raw, Mapping):
                    first = next(iter(_hints(tp)))
                    raise ConfigError(f"config key '{here}'{where} is a section, not a value: set its keys, "
                                      f"e.g. '{here}.{first}'", here)
                for sub, value in raw.items():
                    self.set(f"{here}.{sub}", value, where, base)
                return
            if not last:
                raise _unknown(key, where, f" ('{here}' has no sub-keys)")
            value = _coerce(key, raw, tp, where)
            if key in _PRESET_KEYS and isinstance(value, str):
                try:
                    value = resolve_preset(_PRESET_KEYS[key], value, base).path
                except FileNotFoundError as err:
                    raise ConfigError(f"config key '{key}'{where}: {err}", key) from None
            elif key in _PATH_KEYS and isinstance(value, str):
                value = resolve_path(value, base)
            if key in _SOURCE_KEYS:
                value = [resolve_path(v, base) if isinstance(v, str) else v for v in value]
            node[part] = value
            self.sources[key] = where

    # ------------------------------------------------------------------ the data subtree
    def _set_data(self, parts: list[str], raw: Any, where: str, base: str) -> None:
        """``data: <file or mapping>`` reads the data config (:func:`egom2p.data.config.read_data_tree`); a dotted
        ``data.*`` key overrides one of its keys (:func:`egom2p.data.config.override_data_key`)."""
        if not parts:  # data: <file or preset name> or data: {train: ..., val: ...}
            if not (isinstance(raw, str) and raw) and not isinstance(raw, Mapping):
                raise ConfigError(f"config key 'data'{where}: expected a data yaml path or a mapping, got {raw!r}", "data")
            try:
                if isinstance(raw, str):  # a file, or the name of a shipped data config
                    found = resolve_preset("data", raw, base)
                    source: Any = found.path
                    self.data_where, base_dir = found.path, found.base_dir
                else:
                    source, self.data_where, base_dir = raw, f"config key 'data'{where}", base
                self.data = read_data_tree(source, base_dir)
            except (FileNotFoundError, ValueError) as err:
                raise ConfigError(f"config key 'data'{where}: {err}", "data") from None
            self.sources["data"] = where
            return
        key = "data." + ".".join(parts)
        if self.data is None:
            raise ConfigError(f"config key '{key}'{where}: set 'data' (a data yaml or a mapping) first", key)
        try:
            override_data_key(self.data, ".".join(parts), raw, base)
        except DataKeyError as err:
            if err.dataset is not None:
                raise ConfigError(f"unknown dataset '{err.dataset}' in config key '{key}'{where} ({err.hint()})",
                                  key) from None
            raise _unknown(key, where, f" ({err.hint('data.')})") from None
        self.sources[key] = where
        self.data_overrides.append(key)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value`` and read the value as YAML (``optim.blr=1e-4``, ``optim.opt_betas=[0.9,0.99]``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        looks_like_file = (text.endswith((".yaml", ".yml", ".json")) or os.path.isfile(text)
                           or text in preset_names("train"))
        hint = f" (a config file is given with --config: --config {text})" if looks_like_file else ""
        raise ConfigError(f"override {text!r} is not of the form key=value{hint}")
    try:
        parsed = parse_yaml(value, f"override {text!r}") if value.strip() else ""
    except ValueError as err:  # not YAML, or a duplicate key / alias bomb: refused like in a file
        raise ConfigError(str(err)) from None
    return key.strip(), parsed


def _build(cls: type, values: Mapping[str, Any]) -> Any:
    hints = _hints(cls)
    return cls(**{k: _build(hints[k], v) if _is_section(hints[k]) else v for k, v in values.items()})


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Build the validated config: defaults, then the YAML file ``path`` (or shipped preset name), then ``key=value``
    overrides.

    Raises ``ConfigError`` naming the offending dotted key and the file or override it came from,
    for unknown keys, wrong types and impossible values (data keys included).
    """
    builder = _Builder()
    if path is not None:
        try:
            found = resolve_preset("train", path)  # a file, or the name of a shipped config
            raw = read_config_file(found.path)
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(str(err)) from None
        where = f" in {found.path}"
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"config file {found.path} must hold a mapping of keys, got {type(raw).__name__}")
        for key, value in raw.items():
            builder.set(str(key), value, where, found.base_dir)
    for text in overrides:
        key, value = parse_override(text)
        builder.set(key, value, f" (command-line override '{text}')", os.getcwd())
    cfg = _build(TrainConfig, builder.values)
    _refuse_other_recipes(cfg.recipe, builder.sources)
    data_where = builder.data_where
    if builder.data_overrides:
        data_where += f" (after overrides of {', '.join(builder.data_overrides)})"
    try:
        if builder.data is not None:
            try:
                cfg.data = data_config_from_tree(builder.data, data_where)
            except (ValueError, FileNotFoundError) as err:
                raise ConfigError(str(err), "data") from None
        validate_config(cfg)
    except ConfigError as err:
        source = "" if err.key == "data" else builder.sources.get(err.key or "", "")  # data errors name their origin
        raise ConfigError(f"{err}{source}", err.key) from None
    return cfg


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}': {message}", key)


def _require_finite(section: Any, prefix: str = "") -> None:
    """Every float of the config tree (lists of floats included) is a finite number: an infinite or NaN learning
    rate, decay or token budget makes training meaningless (zero and negatives are the range checks' job)."""
    for f in dataclasses.fields(section):
        key, value = prefix + f.name, getattr(section, f.name)
        if isinstance(value, DataConfig):
            continue  # validated by egom2p.data.config
        if dataclasses.is_dataclass(value):
            _require_finite(value, f"{key}.")
        for number in value if isinstance(value, list) else [value]:
            if isinstance(number, float):
                _require(math.isfinite(number), key, f"must be a finite number, got {value}")


def _refuse_other_recipes(recipe: str, sources: Mapping[str, str]) -> None:
    """A key set in the file or an override that only another recipe reads is an error naming it and its source."""
    _require(recipe in RECIPES, "recipe", f"{recipe!r} is not one of {list(RECIPES)}")
    for other, keys in RECIPE_KEYS.items():
        if other == recipe:
            continue
        for key, where in sources.items():
            if any(key == k or key.startswith(f"{k}.") for k in keys):
                raise ConfigError(f"config key '{key}'{where} belongs to recipe '{other}', but this config has recipe "
                                  f"'{recipe}': remove it, or set recipe: {other}", key)


def _model_config(section: Any) -> EgoM2PConfig:
    explicit = {k: v for k, v in dataclasses.asdict(section).items() if k != "preset" and v is not None}
    try:
        return preset_config(section.preset, **explicit)
    except FileNotFoundError as err:
        raise ConfigError(f"config key 'model.modalities': {err}", "model.modalities") from None
    except ValueError as err:
        message = str(err)
        if message.startswith("unknown preset"):
            key = "model.preset"
        else:  # EgoM2PConfig names the field first ("dim must be ...") or the modality file
            first = message.split(" ", 1)[0].strip(":'\"")
            key = f"model.{first}" if first in explicit or first in _hints(EgoM2PConfig) else "model"
            if key == "model" and "modalit" in message:
                key = "model.modalities"
        raise ConfigError(f"config key '{key}': {message}", key) from None


def _fill_model(section: Any) -> None:
    """Write the preset's value into every unset model field, so the saved tree is the one the run used."""
    resolved = _model_config(section)
    for f in dataclasses.fields(EgoM2PConfig):
        if getattr(section, f.name) is None:
            value = getattr(resolved, f.name)
            if f.name == "modalities":
                value = {name: spec.to_dict() for name, spec in value.items()}
            setattr(section, f.name, value)


def validate_config(cfg: TrainConfig) -> None:
    """Reject impossible values with an error naming the dotted key; fill the model (or tokenizer) section's
    unset fields."""
    _require(cfg.recipe in RECIPES, "recipe", f"{cfg.recipe!r} is not one of {list(RECIPES)}")
    _require(cfg.dtype in DTYPES, "dtype", f"{cfg.dtype!r} is not one of {DTYPES}")
    _require(cfg.device in DEVICES, "device", f"{cfg.device!r} is not one of {DEVICES}")
    for key, enum in (("loss_type", LossType), ("model.attn_backend", AttnBackend)):
        section, _, leaf = key.rpartition(".")
        value = getattr(getattr(cfg, section) if section else cfg, leaf)
        _require(value is None or value in enum.values(), key, f"{value!r} is not one of {list(enum.values())}")
    sch, opt, ckpt, met = cfg.schedule, cfg.optim, cfg.checkpoint, cfg.metrics
    for key, value in (("loader.batch_size", cfg.loader.batch_size), ("loader.pack_multiple", cfg.loader.pack_multiple),
                       ("checkpoint.keep_last_k", ckpt.keep_last_k), ("checkpoint.save_ckpt_freq", ckpt.save_ckpt_freq),
                       ("metrics.log_every_steps", met.log_every_steps), ("metrics.eval_freq", met.eval_freq),
                       ("max_bad_steps", cfg.max_bad_steps)):
        _require(value > 0, key, f"must be > 0, got {value}")
    for key, value in (("loader.pack_rows", cfg.loader.pack_rows), ("schedule.max_steps", sch.max_steps),
                       ("checkpoint.every_steps", ckpt.every_steps),
                       ("metrics.val_every_steps", met.val_every_steps), ("schedule.epoch_size", sch.epoch_size),
                       ("schedule.global_batch_size", sch.global_batch_size), ("schedule.accum_iter", sch.accum_iter)):
        _require(value is None or value > 0, key, f"must be > 0 (or null), got {value}")
    _require(cfg.loader.num_workers >= 0, "loader.num_workers", f"must be >= 0, got {cfg.loader.num_workers}")
    _require_finite(cfg)
    _require(opt.blr > 0, "optim.blr", f"must be > 0, got {opt.blr}")
    _require(0 <= opt.min_blr <= opt.blr, "optim.min_blr", f"must be in [0, blr={opt.blr}], got {opt.min_blr}")
    _require(opt.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {opt.weight_decay}")
    _require(len(opt.opt_betas) == 2 and all(0 <= b < 1 for b in opt.opt_betas), "optim.opt_betas",
             f"must be two numbers in [0, 1), got {opt.opt_betas}")
    _require(opt.opt_eps > 0, "optim.opt_eps", f"must be > 0, got {opt.opt_eps}")
    _require(opt.clip_grad is None or opt.clip_grad > 0, "optim.clip_grad", f"must be > 0 (or null), got {opt.clip_grad}")
    if sch.total_tokens > 0:
        _require(sch.warmup_tokens < sch.total_tokens, "schedule.warmup_tokens",
                 f"warmup ({sch.warmup_tokens}B) must be shorter than total_tokens ({sch.total_tokens}B)")
    else:
        _require(sch.epochs > 0, "schedule.epochs", f"must be > 0 when total_tokens is not set, got {sch.epochs}")
    if sch.warmup_tokens <= 0:
        _require(sch.warmup_epochs >= 0, "schedule.warmup_epochs", f"must be >= 0, got {sch.warmup_epochs}")
        if sch.total_tokens <= 0:
            _require(sch.warmup_epochs < sch.epochs, "schedule.warmup_epochs",
                     f"warmup ({sch.warmup_epochs} epochs) must be shorter than epochs ({sch.epochs})")
    _require(bool(cfg.output_dir), "output_dir", "must be set")
    for entry in cfg.resume.allow_changes:
        _require(_names_a_key(entry), "resume.allow_changes", f"{entry!r} is not a config key or section{_suggest(entry)}")
    _require(ckpt.s3_save_dir is None or ckpt.s3_save_dir.startswith("s3://"), "checkpoint.s3_save_dir",
             f"must start with s3://, got {ckpt.s3_save_dir!r}")
    if cfg.recipe == "tokenizer":
        _validate_tokenizer(cfg)
        return
    _require(sch.epoch_size is not None, "schedule.epoch_size", "must be set (samples per epoch over all GPUs)")
    data_cfg = cfg.data_config()
    _fill_model(cfg.model)
    _check_budgets(data_cfg, cfg.model_config())
    _validate_finetune(cfg)


def _validate_finetune(cfg: TrainConfig) -> None:
    """The ``finetune`` section: one warm-up length, known modalities, a LoRA that has weights to adapt."""
    ft, lora = cfg.finetune, cfg.finetune.lora
    _require(ft.frozen_model_epochs >= 0, "finetune.frozen_model_epochs", f"must be >= 0, got {ft.frozen_model_epochs}")
    _require(ft.frozen_model_tokens >= 0, "finetune.frozen_model_tokens", f"must be >= 0, got {ft.frozen_model_tokens}")
    _require(not (ft.frozen_model_epochs > 0 and ft.frozen_model_tokens > 0), "finetune.frozen_model_tokens",
             "set the warm-up in epochs or in tokens, not both (finetune.frozen_model_epochs is set too)")
    _require(ft.frozen_model_blr is None or ft.frozen_model_blr > 0, "finetune.frozen_model_blr",
             f"must be > 0 (or null: optim.blr), got {ft.frozen_model_blr}")
    known = sorted(cfg.model_config().modalities)
    for name in ft.frozen_embedding_domain:
        _require(name in known, "finetune.frozen_embedding_domain", f"{name!r} is not a modality of the model {known}")
    _require(lora.rank >= 0, "finetune.lora.rank", f"must be >= 0 (0: no LoRA), got {lora.rank}")
    if lora.rank == 0:
        return
    _require(bool(cfg.checkpoint.init_from), "finetune.lora.rank",
             "LoRA adapts pretrained weights: set checkpoint.init_from")
    _require(lora.alpha > 0, "finetune.lora.alpha", f"must be > 0, got {lora.alpha}")
    _require(0 <= lora.dropout < 1, "finetune.lora.dropout", f"must be in [0, 1), got {lora.dropout}")
    for key, values, allowed in (("target_modules", lora.target_modules, LORA_TARGETS), ("blocks", lora.blocks, LORA_BLOCKS)):
        _require(bool(values) and set(values) <= set(allowed), f"finetune.lora.{key}",
                 f"must be a non-empty list of {list(allowed)}, got {values}")
    _require(not cfg.fsdp, "finetune.lora.rank", "LoRA trains with DDP (its trainable part is small); set fsdp: false")


def _tokenizer_config(section: Any) -> TokenizerConfig:
    explicit = {k: v for k, v in dataclasses.asdict(section).items() if k != "preset" and v is not None}
    try:
        return tokenizer_config(section.preset, **explicit)
    except ValueError as err:
        message = str(err)
        # TokenizerConfig names the field first ("TokenizerConfig.dim_tokens (...) must be ...").
        name = message.removeprefix("TokenizerConfig.").split(" ", 1)[0]
        key = ("tokenizer.preset" if message.startswith("unknown tokenizer preset")
               else f"tokenizer.{name}" if name in _hints(TokenizerConfig) else "tokenizer")
        raise ConfigError(f"config key '{key}': {message}", key) from None


def _validate_tokenizer(cfg: TrainConfig) -> None:
    """The tokenizer recipe's sections: the tokenizer (filled in from its preset) and the window sources."""
    _require(not cfg.fsdp, "fsdp", "the tokenizer recipe trains with DDP (the model is small); set fsdp: false")
    _require(not cfg.activation_checkpointing, "activation_checkpointing",
             "not supported by the tokenizer recipe; set activation_checkpointing: false")
    resolved = _tokenizer_config(cfg.tokenizer)
    for name, value in resolved.to_dict().items():
        setattr(cfg.tokenizer, name, value)
    data = cfg.tokenizer_data
    _require(bool(data.train), "tokenizer_data.train", "must list at least one source of training windows "
             "(a window .npy, a track file or folder, or {synthetic: {windows: N, seed: S}})")
    for split in ("train", "val"):
        for index, source in enumerate(getattr(data, split)):
            _check_source(f"tokenizer_data.{split}", index, source)
    _require(data.stride > 0, "tokenizer_data.stride", f"must be > 0, got {data.stride}")
    _require(data.fps is None or data.fps > 0, "tokenizer_data.fps", f"must be > 0 (or null), got {data.fps}")
    if resolved.kind == "cam":
        _require(data.basis is None or data.basis in BASES, "tokenizer_data.basis",
                 f"{data.basis!r} is not one of {sorted(BASES)}")
        _require(data.gaze_frame is None, "tokenizer_data.gaze_frame", "is for gaze tokenizers; this one is 'cam'")
    else:
        _require(data.basis is None, "tokenizer_data.basis", "is for camera tokenizers; this one is 'gaze'")
        _require(data.gaze_frame is not None, "tokenizer_data.gaze_frame",
                 f"must be set for a gaze tokenizer: one of {sorted(GAZE_FRAMES)} or {{orig_res, resize_res, crop}}")
        gaze_frame_of(data)


def _check_source(key: str, index: int, source: Any) -> None:
    """A source is a path or ``{synthetic: {windows: N > 0, seed: S}}``, nothing else."""
    if isinstance(source, str):
        _require(bool(source), key, f"source {index} is an empty path")
        return
    expected = "a path or {synthetic: {windows: N, seed: S}}"
    _require(isinstance(source, Mapping) and set(source) == {"synthetic"}, key,
             f"source {index} must be {expected}, got {source!r}")
    spec = source["synthetic"]
    _require(isinstance(spec, Mapping) and set(spec) == {"windows", "seed"}, key,
             f"source {index}: synthetic needs exactly the keys windows and seed, got {spec!r}")
    for name, low in (("windows", 1), ("seed", 0)):
        value = spec[name]
        _require(isinstance(value, int) and not isinstance(value, bool) and value >= low, key,
                 f"source {index}: synthetic.{name} must be an integer >= {low}, got {value!r}")


def gaze_frame_of(data: TokenizerDataConfig) -> GazeFrame:
    """The ``tokenizer_data.gaze_frame`` as a ``GazeFrame`` (a preset name or its three sizes)."""
    frame = data.gaze_frame
    if isinstance(frame, str):
        _require(frame in GAZE_FRAMES, "tokenizer_data.gaze_frame", f"{frame!r} is not one of {sorted(GAZE_FRAMES)}")
        return GAZE_FRAMES[frame]
    fields = ("orig_res", "resize_res", "crop")
    _require(isinstance(frame, Mapping) and set(frame) <= set(fields) and {"orig_res", "resize_res"} <= set(frame),
             "tokenizer_data.gaze_frame", f"must be a preset name or {{orig_res, resize_res, crop}}, got {frame!r}")
    try:
        return GazeFrame(**frame)
    except ValueError as err:
        raise ConfigError(f"config key 'tokenizer_data.gaze_frame': {err}", "tokenizer_data.gaze_frame") from None


def _check_budgets(data_cfg: DataConfig, model_cfg: EgoM2PConfig) -> None:
    """Every dataset's modalities exist in the model, and its budgets fit the tokens its domains hold
    (a larger budget would silently count padding as tokens)."""
    specs = model_cfg.modalities
    for name, dataset in data_cfg.train.items():
        unknown = sorted((set(dataset.in_domains) | set(dataset.out_domains)) - set(specs))
        _require(not unknown, f"data.train.datasets.{name}", f"uses modalities {unknown} the model does not have "
                 f"(model.modalities: {sorted(specs)})")
        for side, domains, budget in (("input", dataset.in_domains, dataset.num_input_tokens),
                                      ("target", dataset.out_domains, dataset.num_target_tokens)):
            available = sum(specs[m].num_tokens for m in domains)
            _require(budget <= available, f"data.train.num_{side}_tokens",
                     f"dataset '{name}' asks for {budget} {side} tokens per sample but its {side} domains "
                     f"{list(domains)} hold only {available}; lower the budget (data.train.num_{side}_tokens or "
                     f"data.train.datasets.{name}.num_{side}_tokens)")


def config_to_yaml(cfg: TrainConfig) -> str:
    """The resolved tree as YAML (what ``--print-config`` prints and ``config.yaml`` holds)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def save_resolved_config(cfg: TrainConfig, output_dir: str | Path) -> Path:
    """Write ``output_dir/config.yaml``; loading it with ``load_config`` reproduces ``cfg``."""
    out = Path(output_dir) / "config.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(config_to_yaml(cfg))
    return out

"""Training configuration: dataclass defaults -> YAML file -> dotted ``key=value`` overrides.

Key names follow the original EgoM2P trainer where one exists (``blr``, ``total_tokens``,
``num_input_tokens``, ...); our additions are documented on the fields. Everything is validated
once at start-up so that a typo fails in the first second, not after an hour of data loading.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DTYPES = ("bfloat16", "float16", "float32")
LOSS_TYPES = ("mod", "token", "mod_present")
DEVICES = ("auto", "cpu", "cuda")
ATTN_BACKENDS = ("auto", "reference", "sdpa", "triton")


class ConfigError(ValueError):
    """A configuration key is unknown, has the wrong type or an impossible value."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


@dataclass
class TrainConfig:
    """Every knob of a training run. Defaults are the original trainer's code defaults."""

    # --- model
    model: str = "egom2p-base"  # preset (egom2p-tiny|base|large) or registry name
    modalities: str = "configs/modalities/egom2p.yaml"  # modality yaml
    model_overrides: dict[str, Any] = field(default_factory=dict)  # EgoM2PConfig fields, e.g. dim: 48
    attn_backend: str = "auto"  # ours: reference | sdpa | triton | auto
    fused_loss: bool = False  # ours: chunked linear + cross-entropy head
    loss_type: str = "mod"  # mod | token | mod_present (SPEC 3)
    # --- data
    data_config: str = ""  # data yaml (SPEC 5.1), e.g. configs/data/demo.yaml
    num_input_tokens: int = 128  # encoder token budget per sample
    num_target_tokens: int = 128  # decoder token budget per sample
    min_input_tokens: int | None = None  # lower end of a random budget (unset: fixed)
    min_target_tokens: int | None = None  # lower end of a random budget (unset: fixed)
    batch_size: int = 256  # per GPU
    accum_iter: int = 1  # micro-batches per optimizer step
    num_workers: int = 10  # data loader worker processes per rank
    epoch_size: int | None = None  # samples per nominal "epoch" over all GPUs
    # --- length (epochs/warmup_epochs are derived from tokens when total_tokens/warmup_tokens > 0)
    epochs: int = 100  # run length when total_tokens <= 0
    warmup_epochs: float = 10  # warmup length when warmup_tokens <= 0
    total_tokens: float = -1  # billions of (input + target budget) tokens; <= 0: use epochs
    warmup_tokens: float = -1  # billions; <= 0: use warmup_epochs
    max_steps: int | None = None  # stop after N optimizer steps (the LR schedule is unchanged)
    # --- optimizer
    blr: float = 1e-4  # base LR; lr = blr x global batch / 256
    min_blr: float = 0.0  # base LR at the end of the cosine
    weight_decay: float = 0.05  # AdamW decay (norms and biases exempt)
    opt_betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # AdamW betas
    opt_eps: float = 1e-8  # AdamW eps
    clip_grad: float | None = None  # global grad-norm clip (null: no clipping)
    # --- precision and speed
    dtype: str = "bfloat16"  # autocast dtype; parameters stay float32
    device: str = "auto"  # ours: auto | cpu | cuda
    compile: bool = False  # ours: torch.compile the model
    activation_checkpointing: bool = False  # ours: recompute block activations in backward
    fsdp: bool = False  # ours: FSDP2 fully_shard instead of DDP
    # --- checkpoints
    output_dir: str = ""  # run directory: checkpoints, metrics, config.yaml, final/
    auto_resume: bool = True  # continue from the newest checkpoint in output_dir
    save_ckpt_freq: int = 20  # epochs between checkpoints
    checkpoint_every_steps: int | None = None  # ours: overrides save_ckpt_freq when set
    keep_last_k: int = 3  # ours: checkpoints kept
    s3_save_dir: str | None = None  # s3://bucket/prefix for checkpoint uploads
    # --- evaluation and logging
    eval_freq: int = 10  # epochs between validations
    val_every_steps: int | None = None  # ours: overrides eval_freq when set
    log_every_steps: int = 10  # ours: steps between metrics lines
    log_wandb: bool = False  # also log to wandb (rank 0)
    wandb_project: str | None = None  # wandb project
    wandb_entity: str | None = None  # wandb entity (team)
    wandb_run_name: str | None = None  # wandb run name
    # --- misc
    seed: int = 0  # weights from seed; data and RNG per rank from seed + rank
    max_bad_steps: int = 5  # ours: stop after K non-finite steps in a row

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML-able data (what ``output_dir/config.yaml`` holds)."""
        return dataclasses.asdict(self)


_FIELD_TYPES = typing.get_type_hints(TrainConfig)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(key: str, value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; accept ints for floats and YAML-ish strings."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):  # X | None
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(key, value, inner, where)
    bad = ConfigError(f"config key '{key}'{where}: expected {_type_name(tp)}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # 1e6 written in YAML
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_coerce(f"{key}[{i}]", v, args[0], where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    raise TypeError(f"unsupported config annotation {tp!r} for '{key}'")


def _unknown_key_error(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(_FIELD_TYPES), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"unknown config key '{key}'{where}{hint}")


def _apply(values: dict[str, Any], sources: dict[str, str], key: str, raw: Any, where: str) -> None:
    """Set one (possibly dotted, ``model_overrides.dim``) key into ``values``, type-checked."""
    top, _, rest = key.partition(".")
    sources[top] = where
    if top not in _FIELD_TYPES:
        raise _unknown_key_error(top, where)
    if rest:
        if typing.get_origin(_FIELD_TYPES[top]) is not dict:
            raise ConfigError(f"config key '{key}'{where}: '{top}' has no sub-keys")
        values.setdefault(top, {})[rest] = raw
        return
    values[top] = _coerce(top, raw, _FIELD_TYPES[top], where)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value`` and read the value as YAML (``lr=1e-4``, ``opt_betas=[0.9,0.99]``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key=value")
    return key.strip(), yaml.safe_load(value) if value.strip() else ""


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Build the validated config: defaults, then the YAML file ``path``, then ``key=value`` overrides.

    Raises ``ConfigError`` naming the offending key (and file) for unknown keys, wrong types and
    impossible values.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}  # key -> where its value came from, for error messages
    if path is not None:
        where = f" in {path}"
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
        for key, raw in data.items():
            _apply(values, sources, str(key), raw, where)
    for text in overrides:
        key, raw = parse_override(text)
        _apply(values, sources, key, raw, f" (command-line override '{text}')")
    cfg = TrainConfig(**values)
    try:
        validate_config(cfg)
    except ConfigError as err:
        raise ConfigError(f"{err}{sources.get(err.key or '', '')}", err.key) from None
    return cfg


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}': {message}", key)


def validate_config(cfg: TrainConfig) -> None:
    """Reject impossible values with an error naming the key."""
    _require(cfg.dtype in DTYPES, "dtype", f"{cfg.dtype!r} is not one of {DTYPES}")
    _require(cfg.loss_type in LOSS_TYPES, "loss_type", f"{cfg.loss_type!r} is not one of {LOSS_TYPES}")
    _require(cfg.device in DEVICES, "device", f"{cfg.device!r} is not one of {DEVICES}")
    _require(cfg.attn_backend in ATTN_BACKENDS, "attn_backend", f"{cfg.attn_backend!r} is not one of {ATTN_BACKENDS}")
    for key in ("batch_size", "accum_iter", "num_input_tokens", "num_target_tokens", "keep_last_k",
                "log_every_steps", "save_ckpt_freq", "eval_freq", "max_bad_steps"):
        _require(getattr(cfg, key) > 0, key, f"must be > 0, got {getattr(cfg, key)}")
    for key in ("max_steps", "checkpoint_every_steps", "val_every_steps", "epoch_size"):
        value = getattr(cfg, key)
        _require(value is None or value > 0, key, f"must be > 0 (or null), got {value}")
    _require(cfg.epoch_size is not None, "epoch_size", "must be set (samples per epoch over all GPUs)")
    _require(cfg.num_workers >= 0, "num_workers", f"must be >= 0, got {cfg.num_workers}")
    for key, budget in (("min_input_tokens", cfg.num_input_tokens), ("min_target_tokens", cfg.num_target_tokens)):
        value = getattr(cfg, key)
        _require(value is None or 0 <= value <= budget, key, f"must be in [0, {budget}], got {value}")
    _require(cfg.blr > 0, "blr", f"must be > 0, got {cfg.blr}")
    _require(0 <= cfg.min_blr <= cfg.blr, "min_blr", f"must be in [0, blr={cfg.blr}], got {cfg.min_blr}")
    _require(cfg.weight_decay >= 0, "weight_decay", f"must be >= 0, got {cfg.weight_decay}")
    _require(len(cfg.opt_betas) == 2 and all(0 <= b < 1 for b in cfg.opt_betas), "opt_betas",
             f"must be two numbers in [0, 1), got {cfg.opt_betas}")
    _require(cfg.opt_eps > 0, "opt_eps", f"must be > 0, got {cfg.opt_eps}")
    _require(cfg.clip_grad is None or cfg.clip_grad > 0, "clip_grad", f"must be > 0 (or null), got {cfg.clip_grad}")
    if cfg.total_tokens > 0:
        _require(cfg.warmup_tokens < cfg.total_tokens, "warmup_tokens",
                 f"warmup ({cfg.warmup_tokens}B) must be shorter than total_tokens ({cfg.total_tokens}B)")
    else:
        _require(cfg.epochs > 0, "epochs", f"must be > 0 when total_tokens is not set, got {cfg.epochs}")
    if cfg.warmup_tokens <= 0:
        _require(cfg.warmup_epochs >= 0, "warmup_epochs", f"must be >= 0, got {cfg.warmup_epochs}")
        if cfg.total_tokens <= 0:
            _require(cfg.warmup_epochs < cfg.epochs, "warmup_epochs",
                     f"warmup ({cfg.warmup_epochs} epochs) must be shorter than epochs ({cfg.epochs})")
    _require(bool(cfg.output_dir), "output_dir", "must be set")
    _require(bool(cfg.data_config), "data_config", "must be set (a data yaml, see configs/data/)")
    _require(cfg.s3_save_dir is None or cfg.s3_save_dir.startswith("s3://"), "s3_save_dir",
             f"must start with s3://, got {cfg.s3_save_dir!r}")


def save_resolved_config(cfg: TrainConfig, output_dir: str | Path) -> Path:
    """Write ``output_dir/config.yaml``; loading it with ``load_config`` reproduces ``cfg``."""
    out = Path(output_dir) / "config.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return out

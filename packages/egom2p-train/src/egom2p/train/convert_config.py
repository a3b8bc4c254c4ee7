"""``egom2p-convert config ORIGINAL.yaml --out DIR``: the original EgoM2P's training configs in our layout.

The original trainer reads one flat YAML of argparse defaults (SPEC 6.1, 6.2) whose ``data_config`` names a data
config (SPEC 5.1) whose datasets name alphas configs (SPEC 4.1). :func:`translate` reads the three and gives our
train config tree, our data config and copies of the alphas files (our format is the original's), with the
same meaning: every original key is either carried to its key in our tree (values converted: hyphen strings
to lists, ``'auto'`` run names expanded, the original's code default written where ours differs) or reported
as not carried, one line ``key: value: why``; a line whose reason starts with ``differs:`` marks a setting our
trainer cannot reproduce. Keys neither trainer knows are reported too, never dropped.

The original's global batch is ``batch_size x accum_iter x GPUs``: it changes with the GPU count. With
``--world-size N`` (the GPU count of the original run) it becomes ``schedule.global_batch_size``, and our
trainer derives ``accum_iter`` on any GPU count; without it ``accum_iter`` is carried and the global batch
keeps growing with the GPU count, as in the original.

The result is checked by loading it with :func:`egom2p.train.config.load_config` (and, with ``--world-size``,
by deriving the schedule) before anything is written; a mistake is one line naming the original file and key.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import tempfile
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from egom2p.core.cli import CliParser, positive_int, run_cli
from egom2p.core.config_files import read_config_file
from egom2p.core.modalities import RELEASED_MODALITIES
from egom2p.core.paths import config_base_dir
from egom2p.data.alphas import load_alphas_config
from egom2p.data.config import CHECKED_KEYS, DATASET_KEYS, NO_EFFECT_KEYS, TRAIN_ONLY_KEYS, load_data_config
from egom2p.model.presets import PRESETS
from egom2p.train.config import ConfigError, TrainConfig, load_config

__all__ = ["ConversionError", "Translation", "main", "translate", "write_translation"]

PROG = "egom2p-convert config"
MARKER = "# Translated by egom2p-convert config"  # first line of what we write: only such files are overwritten
DIFFERS = "differs: "  # prefix of a reason whose setting our trainer cannot reproduce

# The original trainer's argparse defaults (run_training_egom2p.py, SPEC 6.2): a key the file does not set has
# this value there, so it is translated like a set one (where ours differs, the original's value is written).
ORIGINAL_DEFAULTS: dict[str, Any] = {
    "run_name": "auto", "batch_size": 256, "epochs": 100, "total_tokens": -1, "accum_iter": 1, "save_ckpt_freq": 20,
    "model": "egom2p_base_12e_12d_swiglu_nobias", "patch_size": 16, "input_size": 224, "num_register_tokens": 0,
    "dtype": "bfloat16", "num_input_tokens": 128, "num_target_tokens": 128, "min_input_tokens": None,
    "min_target_tokens": None, "loss_type": "mod", "finetune": "", "opt": "adamw", "opt_eps": 1e-8,
    "opt_betas": [0.9, 0.95], "compute_grad_norm": True, "clip_grad": None, "skip_grad": None, "momentum": 0.9,
    "weight_decay": 0.05, "weight_decay_end": None, "blr": 1e-4, "min_blr": 0.0, "frozen_model_blr": -1,
    "scheduler": "cosine", "warmup_epochs": 10, "warmup_steps": -1, "warmup_tokens": -1, "cooldown_epochs": 10,
    "cooldown_steps": -1, "cooldown_tokens": -1, "frozen_model_epochs": 0, "frozen_model_tokens": 0,
    "frozen_embedding_domain": None, "data_config": "", "epoch_size": None, "s3_endpoint": "",
    "s3_data_endpoint": None, "s3_multipart_chunksize_mb": 512, "s3_multipart_threshold_mb": 512,
    "s3_max_io_queue": 100, "text_tokenizer_path": "egom2p/utils/tokenizer/trained/text_tokenizer_4m_wordpiece_30k.json",
    "eval_freq": 10, "dist_eval": True, "fixed_eval": True, "fixed_eval_input_tokens": 128,
    "fixed_eval_target_tokens": 128, "fixed_eval_batch_size": 32, "eval": False, "output_dir": "", "device": "cuda",
    "seed": 0, "resume": "", "auto_resume": True, "start_epoch": 0, "num_workers": 10, "pin_mem": True,
    "find_unused_params": False, "rlimit": 4096, "print_all": False, "show_user_warnings": False, "s3_save_dir": "",
    "dist_url": "env://", "log_wandb": False, "wandb_project": None, "wandb_entity": None, "wandb_run_name": "auto",
}

# Original keys carried unchanged to one key of ours.
DIRECT = {
    "seed": "seed", "loss_type": "loss_type", "eval": "eval_only", "batch_size": "loader.batch_size",
    "num_workers": "loader.num_workers", "blr": "optim.blr", "min_blr": "optim.min_blr",
    "weight_decay": "optim.weight_decay", "opt_eps": "optim.opt_eps", "opt_betas": "optim.opt_betas",
    "clip_grad": "optim.clip_grad", "epoch_size": "schedule.epoch_size", "save_ckpt_freq": "checkpoint.save_ckpt_freq",
    "auto_resume": "checkpoint.auto_resume", "eval_freq": "metrics.eval_freq", "log_wandb": "metrics.log_wandb",
    "wandb_project": "metrics.wandb_project", "wandb_entity": "metrics.wandb_entity",
}

_S3_ENV = "ours reads the S3 endpoint from the environment, not the config: export EGOM2P_S3_ENDPOINT_URL=<it> " \
          "(or AWS_ENDPOINT_URL) before training"
_FIXED_EVAL = ("ours has no fixed-budget evaluation: each validation masks every val dataset with its training alphas "
               "and budgets under a fixed seed, so the masks are the same at every validation")
# Original keys never carried, with the reason; a value of None here means "any value".
IGNORED: dict[str, str] = {
    "patch_size": "unused by EgoM2P (a 4M image option)",
    "input_size": "unused by EgoM2P (a 4M image option)",
    "text_tokenizer_path": "ours needs no text tokenizer (the original loads one only to build its masking)",
    "compute_grad_norm": "ours always computes and logs the gradient norm",
    "dist_eval": "ours always splits validation over the ranks, every sample read once",
    "fixed_eval_input_tokens": "used only by the original's fixed-budget evaluation, which ours does not have",
    "fixed_eval_target_tokens": "used only by the original's fixed-budget evaluation, which ours does not have",
    "fixed_eval_batch_size": "used only by the original's fixed-budget evaluation, which ours does not have",
    "s3_multipart_chunksize_mb": "ours reads each shard object whole; boto3's transfer settings come from its environment",
    "s3_multipart_threshold_mb": "ours reads each shard object whole; boto3's transfer settings come from its environment",
    "s3_max_io_queue": "ours reads each shard object whole; boto3's transfer settings come from its environment",
    "pin_mem": "our loader decides pinning itself",
    "find_unused_params": "every parameter of our model gets a gradient; DDP runs without the search",
    "rlimit": "our trainer leaves the open-files limit alone (raise it with ulimit -n if your shards need it)",
    "print_all": "our logs come from rank 0",
    "show_user_warnings": "ours prints each warning as one line",
    "dist_url": "ours starts from torchrun's environment (env://) only",
}


class ConversionError(ValueError):
    """An original config cannot be translated: a missing file or a key with an impossible value."""


@dataclass
class Skipped:
    """One original key (or one key of several datasets) that is not carried."""

    source: str  # the file's name
    key: str  # dotted key in that file; ``*`` / ``{a,b}`` for several datasets
    value: Any
    why: str

    def line(self) -> str:
        """``key: value: why``."""
        return f"{self.key}: {self.value!r}: {self.why}"


@dataclass
class Translation:
    """Our configs for one original main config; paths of ``data`` alphas are relative to the output folder."""

    train: dict[str, Any]  # dotted key -> value (without ``data``, written as the data.yaml path)
    data: dict[str, Any]  # our data config mapping
    alphas: dict[str, Path]  # copy's path relative to the output folder -> the original alphas file
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)  # our dotted key -> the original key it came from
    carried_keys: set[str] = field(default_factory=set)  # the main config's keys carried to ours
    sources: dict[str, Path] = field(default_factory=dict)  # "main" / "data" -> the files read

    @property
    def differing(self) -> list[Skipped]:
        """The not-carried keys our trainer cannot reproduce."""
        return [s for s in self.skipped if s.why.startswith(DIFFERS)]


# ------------------------------------------------------------------ small helpers


def _fail(where: Path | str, key: str, value: Any, problem: str) -> ConversionError:
    return ConversionError(f"{where}: key '{key}': {value!r}: {problem}")


def _number(where: Path, key: str, value: Any, integer: bool = False) -> float | int:
    """``value`` as a number (YAML 1.1 reads ``1e-4`` as a string, which the original would have used as one)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(where, key, value, f"expected {'an integer' if integer else 'a number'}")
    if integer:
        if not float(value).is_integer():
            raise _fail(where, key, value, "expected an integer")
        return int(value)
    return value


def _domains(value: Any) -> Any:
    """The original's hyphen-separated domain string as our list (anything else is left to our validator)."""
    return [v for v in value.split("-") if v] if isinstance(value, str) else value


def _our_default(dotted: str) -> Any:
    """Our default of a dotted train key (data keys have none)."""
    node: Any = TrainConfig()
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(node) or not hasattr(node, part):
            return None
        node = getattr(node, part)
    return node


def _finetune_keys() -> set[str]:
    """The keys of our ``finetune`` section (empty where this egom2p-train has none yet)."""
    section = typing.get_type_hints(TrainConfig).get("finetune")
    return {f.name for f in dataclasses.fields(section)} if dataclasses.is_dataclass(section) else set()


class _Out:
    """What the translation of the main config collects."""

    def __init__(self, main: Path, present: set[str]):
        self.main, self.present = main, present
        self.carried: dict[str, Any] = {}
        self.origin: dict[str, str] = {}
        self.used: set[str] = set()  # the file's keys that reached a key of ours
        self.skipped: list[Skipped] = []
        self.notes: list[str] = []

    def carry(self, ours: str, value: Any, *originals: str) -> None:
        """Set our ``ours`` from original keys; a value the file did not set that equals our default is left out."""
        self.origin[ours] = originals[0]  # kept either way: our validator's errors name the original key
        if not any(k in self.present for k in originals) and value == _our_default(ours):
            return
        self.carried[ours] = value
        self.used.update(k for k in originals if k in self.present)

    def skip(self, key: str, value: Any, why: str, matters: bool = False) -> None:
        """Report ``key`` as not carried; for a key the file does not set only when its default ``matters``."""
        if key in self.present or matters:
            self.skipped.append(Skipped(self.main.name, key if key in self.present else f"{key} (default)", value, why))


# ------------------------------------------------------------------ the main config, group by group


def _run_names(args: Mapping[str, Any], out: _Out) -> str:
    """run_name / output_dir / wandb_run_name / s3_save_dir with the original's ``'auto'`` rules (SPEC 6.1)."""
    run_name = args["run_name"]
    if run_name == "auto":
        parts = Path(out.main).parts
        if "cfgs" in parts and len(parts) > parts.index("cfgs") + 2:
            run_name = str(Path(*parts[parts.index("cfgs") + 2:]).with_suffix("").as_posix())
        else:
            run_name = out.main.stem
            out.notes.append(f"run_name: auto: the original names a run after its config's path below cfgs/<dir>/; "
                             f"{out.main} is not under cfgs/, so the run name is its file name '{run_name}'")
    elif not isinstance(run_name, str) or not run_name:
        raise _fail(out.main, "run_name", run_name, "expected 'auto' or a name")
    output_dir = args["output_dir"]
    if not isinstance(output_dir, str):
        raise _fail(out.main, "output_dir", output_dir, "expected a path")
    if output_dir:
        output_dir = output_dir.replace("auto", run_name)
        if not os.path.isabs(output_dir) and "://" not in output_dir:
            output_dir = os.path.abspath(output_dir)  # the original resolves it against its working directory
        out.carry("output_dir", output_dir, "output_dir", "run_name")
    else:
        out.carry("output_dir", f"runs/{run_name.rsplit('/', 1)[-1]}", "output_dir")
        out.notes.append(f"output_dir: '': the original then saves nothing; ours needs a run directory: "
                         f"runs/{run_name.rsplit('/', 1)[-1]} (next to train.yaml)")
    wandb = args["wandb_run_name"]
    if wandb == "auto":
        wandb = run_name.split("/", 1)[1] if "/" in run_name else run_name
    out.carry("metrics.wandb_run_name", wandb, "wandb_run_name", "run_name")
    s3_dir = args["s3_save_dir"]
    if isinstance(s3_dir, str) and s3_dir:
        out.carry("checkpoint.s3_save_dir", s3_dir.replace("auto", run_name), "s3_save_dir", "run_name")
    elif s3_dir in ("", None):
        out.skip("s3_save_dir", s3_dir, "not set: checkpoints stay local, as in ours")
    else:
        out.carry("checkpoint.s3_save_dir", s3_dir, "s3_save_dir")  # our validator names the key
    return run_name


def _model(args: Mapping[str, Any], out: _Out, preset: str | None) -> None:
    """``model`` (a registry name of the original; all of them are our presets), dtype, device, registers."""
    name = args["model"] if isinstance(args["model"], str) else repr(args["model"])
    if preset is not None:
        if preset not in PRESETS:
            raise ConversionError(f"--model-preset {preset!r}: not one of our presets {sorted(PRESETS)}")
        if preset != name:
            out.skip("model", name, f"replaced by --model-preset {preset}")
        out.carry("model.preset", preset, "model")
    elif name in PRESETS:
        out.carry("model.preset", name, "model")
    else:
        raise _fail(out.main, "model", name, f"not an architecture we know; pass --model-preset (one of {sorted(PRESETS)})")
    dtypes = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
    dtype = args["dtype"]
    out.carry("dtype", dtypes.get(dtype, dtype) if isinstance(dtype, str) else dtype, "dtype")
    device = args["device"]
    if "device" in out.present:
        if device in ("cuda", "cpu"):
            out.carry("device", device, "device")
        else:
            out.skip("device", device, "ours runs each rank on its local GPU (device: auto | cuda | cpu)")
    registers = _number(out.main, "num_register_tokens", args["num_register_tokens"], integer=True)
    out.skip("num_register_tokens", registers,
             f"{DIFFERS}our model has no register tokens" if registers else "our model has none either")


def _batch(args: Mapping[str, Any], out: _Out, world_size: int | None) -> None:
    """batch_size (per GPU), accum_iter and, with ``--world-size``, the global batch."""
    batch = _number(out.main, "batch_size", args["batch_size"], integer=True)
    accum = _number(out.main, "accum_iter", args["accum_iter"], integer=True)
    if batch < 1:
        raise _fail(out.main, "batch_size", batch, "must be >= 1")
    if accum < 1:
        raise _fail(out.main, "accum_iter", accum, "must be >= 1")
    out.carry("loader.batch_size", batch, "batch_size")
    if world_size is not None:
        out.carry("schedule.global_batch_size", batch * accum * world_size, "batch_size", "accum_iter")
        out.notes.append(f"schedule.global_batch_size: {batch * accum * world_size} = batch_size {batch} x accum_iter "
                         f"{accum} x --world-size {world_size}: the same recipe on any GPU count whose micro batches "
                         f"divide it (accum_iter is derived)")
    else:
        out.carry("schedule.accum_iter", accum, "accum_iter")
        out.notes.append(f"no --world-size: the global batch stays batch_size {batch} x accum_iter {accum} x GPUs, "
                         f"as in the original; pass --world-size N (the original run's GPU count) to fix it as "
                         f"schedule.global_batch_size")


def _run_length(args: Mapping[str, Any], out: _Out) -> None:
    """epochs / total_tokens: the original trains by tokens only with a negative epochs (and refuses both)."""
    epochs = _number(out.main, "epochs", args["epochs"], integer=True)
    total = _number(out.main, "total_tokens", args["total_tokens"])
    if epochs < 0 and total <= 0:
        raise _fail(out.main, "epochs", epochs, f"negative with total_tokens {total}: the original stops; "
                                                "set total_tokens (billions) or epochs")
    if epochs >= 0 and total > 0:
        raise _fail(out.main, "epochs", epochs, f"together with total_tokens {total}: the original refuses to start; "
                                                "set epochs: -1 to train by tokens")
    out.carry("schedule.epochs", epochs, "epochs")
    out.carry("schedule.total_tokens", total, "total_tokens")


def _steps_per_epoch(args: Mapping[str, Any], out: _Out, world_size: int) -> int:
    """The original's optimizer steps per epoch on ``world_size`` GPUs (ours: epoch_size // global batch)."""
    epoch_size = args["epoch_size"]
    if epoch_size is None:
        raise _fail(out.main, "epoch_size", epoch_size, "must be set (samples per epoch over all GPUs)")
    global_batch = args["batch_size"] * args["accum_iter"] * world_size
    return int(_number(out.main, "epoch_size", epoch_size, integer=True)) // global_batch


def _warmup(args: Mapping[str, Any], out: _Out, world_size: int | None) -> None:
    """warmup_steps > 0 wins in the original, then warmup_epochs >= 0, then warmup_tokens; ours: tokens, then epochs."""
    w_epochs = _number(out.main, "warmup_epochs", args["warmup_epochs"])
    w_steps = _number(out.main, "warmup_steps", args["warmup_steps"], integer=True)
    w_tokens = _number(out.main, "warmup_tokens", args["warmup_tokens"])
    if w_steps > 0:
        if world_size is None:
            out.skip("warmup_steps", w_steps, f"{DIFFERS}ours has warmup in tokens or epochs only; pass --world-size N "
                                              "to carry it as schedule.warmup_epochs", matters=True)
            return
        per_epoch = _steps_per_epoch(args, out, world_size)
        epochs = w_steps / per_epoch
        while int(epochs * per_epoch) < w_steps:  # float division can land just below: ours truncates
            epochs = math.nextafter(epochs, math.inf)
        out.carry("schedule.warmup_epochs", epochs, "warmup_steps")
        out.carry("schedule.warmup_tokens", -1.0, "warmup_steps")
        out.notes.append(f"warmup_steps: {w_steps}: carried as schedule.warmup_epochs {epochs:.6g} "
                         f"(= {w_steps} / {per_epoch} steps per epoch at --world-size {world_size})")
        for key, value in (("warmup_epochs", w_epochs), ("warmup_tokens", w_tokens)):
            out.skip(key, value, "the original ignores it when warmup_steps > 0")
    elif w_epochs >= 0:
        out.carry("schedule.warmup_epochs", w_epochs, "warmup_epochs")
        out.skip("warmup_steps", w_steps, "not used (<= 0): warmup is in epochs")
        if w_tokens > 0:
            out.carry("schedule.warmup_tokens", -1.0, "warmup_epochs")
            out.skip("warmup_tokens", w_tokens, "the original ignores it when warmup_epochs >= 0 "
                                                "(its code default is 10): warmup is in epochs", matters=True)
        else:
            out.carry("schedule.warmup_tokens", w_tokens, "warmup_tokens")
    elif w_tokens > 0:
        out.carry("schedule.warmup_epochs", w_epochs, "warmup_epochs")
        out.carry("schedule.warmup_tokens", w_tokens, "warmup_tokens")
        out.skip("warmup_steps", w_steps, "not used (<= 0): warmup is in tokens")
    else:
        raise _fail(out.main, "warmup_tokens", w_tokens, "warmup_epochs, warmup_steps and warmup_tokens are all "
                                                          "negative: the original stops")


def _optimizer(args: Mapping[str, Any], out: _Out) -> None:
    """opt, scheduler and the options only some optimizers or schedulers read."""
    opt, scheduler = args["opt"], args["scheduler"]
    out.skip("opt", opt, "ours trains with AdamW, the same" if opt == "adamw" else f"{DIFFERS}ours trains with AdamW only",
             matters=opt != "adamw")
    out.skip("momentum", args["momentum"], "used by the original's SGD optimizers only")
    if scheduler == "cosine":
        out.skip("scheduler", scheduler, "ours: the cosine schedule, the same")
    else:
        out.skip("scheduler", scheduler, f"{DIFFERS}ours has the cosine schedule only")
    for key in ("cooldown_epochs", "cooldown_steps", "cooldown_tokens"):
        out.skip(key, args[key], "used by the inverse_sqrt scheduler only" if scheduler == "cosine"
                 else f"{DIFFERS}ours has no inverse_sqrt cooldown", matters=scheduler != "cosine")
    wd, wd_end = args["weight_decay"], args["weight_decay_end"]
    if wd_end is None or wd_end == wd:
        out.skip("weight_decay_end", wd_end, "the decay stays constant, as in ours")
    else:
        out.skip("weight_decay_end", wd_end, f"{DIFFERS}ours keeps weight_decay constant ({wd})")
    skip = args["skip_grad"]
    out.skip("skip_grad", skip, "not used (null)" if skip is None else
             f"{DIFFERS}ours never skips a step for a large gradient norm (it clips with clip_grad and skips "
             "non-finite steps)")


def _data_keys(args: Mapping[str, Any], out: _Out) -> dict[str, Any]:
    """The main config's token budgets: our data config's ``train:`` defaults (the original's code default 128)."""
    budgets: dict[str, Any] = {}
    for key in ("num_input_tokens", "num_target_tokens", "min_input_tokens", "min_target_tokens"):
        value = args[key]
        if value is None and key.startswith("min_"):
            if key in out.present:  # null: always num_*, the same in ours
                budgets[key] = None
                out.used.add(key)
            continue
        value = _number(out.main, key, value, integer=True)
        if value < (0 if key.startswith("min_") else 1):
            raise _fail(out.main, key, value, f"must be >= {0 if key.startswith('min_') else 1}")
        budgets[key] = value
        if key not in out.present:
            out.notes.append(f"{key}: not set: the original's code default {value} is written to data.train.{key}")
        else:
            out.used.add(key)
        out.origin[f"data.train.{key}"] = key
    return budgets


def _finetune(args: Mapping[str, Any], out: _Out) -> None:
    """``finetune`` (weights to start from) and the frozen-model phase, to ``checkpoint.init_from`` / ``finetune.*``."""
    path = args["finetune"]
    if isinstance(path, str) and path:
        if not os.path.isabs(path) and "://" not in path:
            path = os.path.abspath(path)  # the original resolves it against its working directory
        out.carry("checkpoint.init_from", path, "finetune")
    elif path in ("", None):
        out.skip("finetune", path, "not set: the run starts from fresh weights")
    else:
        raise _fail(out.main, "finetune", path, "expected a checkpoint path")
    f_epochs = _number(out.main, "frozen_model_epochs", args["frozen_model_epochs"], integer=True)
    f_tokens = _number(out.main, "frozen_model_tokens", args["frozen_model_tokens"])
    f_blr = _number(out.main, "frozen_model_blr", args["frozen_model_blr"])
    if f_epochs > 0 and f_tokens > 0:
        raise _fail(out.main, "frozen_model_epochs", f_epochs, f"together with frozen_model_tokens {f_tokens}: the "
                                                               "original refuses to start; set one of them")
    domains = args["frozen_embedding_domain"]
    values = {"frozen_model_epochs": max(f_epochs, 0), "frozen_model_tokens": max(float(f_tokens), 0.0),
              "frozen_model_blr": f_blr if f_blr > 0 else None,  # the original: <= 0 means blr
              "frozen_embedding_domain": [] if domains in (None, "") else _domains(domains)}
    ours = _finetune_keys()
    for key, value in values.items():
        if key in ours:
            out.carry(f"finetune.{key}", value, key)
        elif value not in (0, None, []):  # a frozen-model phase this trainer cannot run
            out.skip(key, args[key], f"{DIFFERS}this egom2p-train has no finetune.{key} (update egom2p-train)")
        else:
            out.skip(key, args[key], "no frozen-model phase (the default)")


def _s3_and_misc(args: Mapping[str, Any], out: _Out) -> None:
    """S3 endpoints, resume / start_epoch, fixed_eval and the keys :data:`IGNORED` lists."""
    for key in ("s3_endpoint", "s3_data_endpoint"):
        value = args[key]
        out.skip(key, value, _S3_ENV if value else "not set")
    resume = args["resume"]
    out.skip("resume", resume, f"{DIFFERS}ours resumes only from output_dir's checkpoints (checkpoint.auto_resume); "
                               "for weights only use checkpoint.init_from" if resume else
             "not set: ours resumes from output_dir's checkpoints (checkpoint.auto_resume), as the original's auto_resume")
    start = args["start_epoch"]
    out.skip("start_epoch", start, "ours takes the step from the checkpoint it resumes" if not start else
             f"{DIFFERS}ours takes the step from the checkpoint it resumes")
    fixed = args["fixed_eval"]
    out.skip("fixed_eval", fixed, _FIXED_EVAL + ("" if not fixed else
             "; the original's extra fixed-budget evaluation (fixed_eval_input_tokens / _target_tokens) is not run"),
             matters=bool(fixed))
    for key, why in IGNORED.items():
        out.skip(key, args[key], why)


def _translate_main(raw: Mapping[str, Any], main: Path, world_size: int | None,
                    preset: str | None) -> tuple[_Out, dict[str, Any]]:
    """Our train keys and the data config's budgets from the original main config ``raw``."""
    present = {str(k) for k in raw}
    args = {**ORIGINAL_DEFAULTS, **{str(k): v for k, v in raw.items()}}
    out = _Out(main, present)
    _run_names(args, out)
    _model(args, out, preset)
    _batch(args, out, world_size)
    _run_length(args, out)
    _warmup(args, out, world_size)
    _optimizer(args, out)
    budgets = _data_keys(args, out)
    _finetune(args, out)
    _s3_and_misc(args, out)
    for key, ours in DIRECT.items():
        out.carry(ours, args[key], key)
    handled = set(ORIGINAL_DEFAULTS)
    for key in sorted(present - handled):
        out.skip(key, raw[key], "not an option of the original trainer nor of ours")
    return out, budgets


# ------------------------------------------------------------------ the data config and its alphas


def _find(name: str, given: str, candidates: Sequence[Path], option: str, where: Path) -> Path:
    """The first candidate that is a file; else one line naming the key, what was looked at and the option."""
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(dict.fromkeys(str(p) for p in candidates))
    raise ConversionError(f"{where}: {name} {given!r} not found (looked at {looked}); pass {option}")


def _candidates(given: str, *folders: Path) -> list[Path]:
    """As given (the original's working directory is ours), then relative to and by file name in each folder."""
    found = [Path(given).expanduser()]
    for folder in folders:
        found += [folder / given, folder / Path(given).name]
    return found


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
            out[k] = _domains(value) if k != "enforce_domains" else value
        elif k == "alphas_config":
            out[k] = alphas.get(value, value) if isinstance(value, str) else value
        elif k == "data_path":
            out[k] = _data_path(value, notes, dotted)
        elif k in DATASET_KEYS:
            out[k] = value
        else:
            skipped.append(Skipped(src, dotted, value, "not a key of the original's data config nor of ours"))
    return out


def _split(raw: Any, split: str, src: str, train_names: set[str], alphas: Mapping[str, str],
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


def _alphas_files(raw: Mapping[str, Any], data_path: Path, main: Path, alphas_dir: Path | None) -> dict[str, Path]:
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
        found[given] = _find(f"{key}.alphas_config", given, first + _candidates(given, main.parent, data_path.parent),
                             "--alphas-dir DIR", data_path)
    return found


def _copy_names(files: Mapping[str, Path]) -> dict[str, str]:
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


def _check_alphas(path: Path, skipped: list[Skipped]) -> None:
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


def _read_mapping(path: Path, what: str) -> Mapping[str, Any]:
    """A YAML file that must hold a mapping; one-line errors name it."""
    raw = read_config_file(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConversionError(f"{path}: the {what} must hold a mapping of keys, got {type(raw).__name__}")
    return raw


def _modalities(data: Mapping[str, Any]) -> set[str]:
    """The union of the training datasets' domains (the original builds its model for these)."""
    names: set[str] = set()
    for entry in ((data.get("train") or {}).get("datasets") or {}).values():
        if isinstance(entry, Mapping):
            for k in ("in_domains", "out_domains"):
                if isinstance(entry.get(k), list):
                    names.update(v for v in entry[k] if isinstance(v, str))
    return names


# ------------------------------------------------------------------ the whole translation


def translate(main: str | os.PathLike, world_size: int | None = None, data_config: str | os.PathLike | None = None,
              alphas_dir: str | os.PathLike | None = None, model_preset: str | None = None) -> Translation:
    """Translate the original main config ``main`` (and the data and alphas configs it names).

    ``data_config`` / ``alphas_dir`` are used instead of the paths the files name when given; else a named
    file is looked for as given (the working directory), relative to the main config's folder, then by file
    name there. Raises :class:`ConversionError` (one line naming the file and key) for what cannot be translated.
    """
    main = Path(main)
    if not main.is_file():
        raise ConversionError(f"{main}: original config not found" if not main.exists() else f"{main}: not a file")
    raw = _read_mapping(main, "original main config")
    out, budgets = _translate_main(raw, main, world_size, model_preset)
    given = raw.get("data_config", "")
    if data_config is not None:
        data_path = _find("--data-config", str(data_config), [Path(data_config)], "an existing --data-config", main)
        if given:
            out.notes.append(f"data_config: {given}: replaced by --data-config {data_config}")
    elif not isinstance(given, str) or not given:
        raise _fail(main, "data_config", given, "the original needs a data config; set it or pass --data-config PATH")
    else:
        data_path = _find("data_config", given, _candidates(given, main.parent), "--data-config PATH", main)
    data_raw = _read_mapping(data_path, "data config")
    alphas_files = _alphas_files(data_raw, data_path, main, Path(alphas_dir) if alphas_dir is not None else None)
    copies = _copy_names(alphas_files)
    skipped: list[Skipped] = []
    for path in dict.fromkeys(alphas_files.values()):
        _check_alphas(path, skipped)
    train_raw = data_raw.get("train")
    train_names = set((train_raw.get("datasets") or {}) if isinstance(train_raw, Mapping) else ())
    data: dict[str, Any] = {}
    for key, value in data_raw.items():
        if key in ("train", "val"):
            data[key] = _split(value, key, data_path.name, train_names, copies, skipped, out.notes)
        else:
            skipped.append(Skipped(data_path.name, str(key), value, "not a key of the original's data config nor of ours"))
    if isinstance(data.get("train"), dict):
        data["train"] = {**budgets, **data["train"]}  # the main config's budgets are the datasets' defaults
    _counted_tokens(data, budgets, out)
    used = _modalities(data)
    if used and used != set(RELEASED_MODALITIES) and used <= set(RELEASED_MODALITIES):
        # The original builds embeddings for the data's domains only: keep the model to the same set.
        out.carry("model.modalities", {m: RELEASED_MODALITIES[m] for m in sorted(used)}, "data_config")
    out.origin["data"] = "data_config"  # written as train.yaml's data: (the translated data.yaml)
    out.used.add("data_config")
    translation = Translation(train=out.carried, data=data, alphas={c: alphas_files[g] for g, c in copies.items()},
                              skipped=out.skipped + _merge(skipped, data), notes=out.notes, origin=out.origin,
                              carried_keys=out.used, sources={"main": main, "data": data_path})
    return translation


def _counted_tokens(data: Mapping[str, Any], budgets: Mapping[str, int], out: _Out) -> None:
    """Report a token-based length counted differently: the original counts a sample as the main config's budgets,
    ours as the largest dataset budgets (they agree when no dataset sets a larger or smaller one of its own)."""
    by_tokens = [k for k in ("schedule.total_tokens", "schedule.warmup_tokens", "finetune.frozen_model_tokens")
                 if isinstance(out.carried.get(k), (int, float)) and out.carried[k] > 0]
    datasets = (data.get("train") or {}).get("datasets") or {}
    if not by_tokens or not isinstance(datasets, Mapping):
        return
    largest = 0
    for side in ("num_input_tokens", "num_target_tokens"):
        own = [e.get(side) for e in datasets.values() if isinstance(e, Mapping)]
        largest += max((v if isinstance(v, int) else budgets[side] for v in own), default=budgets[side])
    counted = budgets["num_input_tokens"] + budgets["num_target_tokens"]
    if largest != counted:
        out.skipped.append(Skipped(out.main.name, "num_input_tokens + num_target_tokens", counted,
                                   f"{DIFFERS}the original turns {', '.join(by_tokens)} into steps at {counted} tokens "
                                   f"per sample, ours at the largest dataset budgets ({largest}): the run length "
                                   "differs; give the datasets the main config's budgets to match"))


def _merge(skipped: list[Skipped], data: Mapping[str, Any]) -> list[Skipped]:
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


# ------------------------------------------------------------------ writing and checking


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
    tree = {**_nest(t.train)}
    tree = {"data": os.path.relpath(data_file, train_base), **tree}
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


# ------------------------------------------------------------------ command line


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``egom2p-convert config``."""
    parser = CliParser(
        prog=PROG,
        description="Translate the original EgoM2P's training config (the flat argparse YAML, its data_config and\n"
        "alphas configs) into our train.yaml + data.yaml (+ copies of the alphas files) in --out. Every original\n"
        "key is carried or listed as not carried with the reason; the result is loaded with our config loader\n"
        "before it is written.",
        epilog="examples:\n  egom2p-convert config cfgs/default/egom2p/models/main/ego-b_mod4_500b_clariden_2048_camcv_"
        "depthdenoise.yaml \\\n      --out configs/ego-b --world-size 256\n"
        "  egom2p-convert config my-run.yaml --out converted/ --data-config my-data.yaml --alphas-dir my-alphas/\n"
        "then: egom2p-train --config configs/ego-b/train.yaml --dry-run --world-size 256",
    )
    parser.add_argument("original", metavar="ORIGINAL.yaml", help="the original trainer's main config (its -c file)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder for train.yaml, data.yaml and alphas/ (created if needed)")
    parser.add_argument("--world-size", type=positive_int, metavar="N",
                        help="the original run's GPU count: fixes schedule.global_batch_size = batch_size x "
                             "accum_iter x N (without it the global batch grows with the GPU count, as in the original)")
    parser.add_argument("--data-config", metavar="PATH",
                        help="the original data config, instead of the file the main config's data_config names")
    parser.add_argument("--alphas-dir", metavar="DIR",
                        help="folder holding the alphas configs the data config names (looked up by file name)")
    parser.add_argument("--model-preset", metavar="NAME",
                        help="our model preset instead of the original's model name (e.g. egom2p-base)")
    return parser


def _run(opts: argparse.Namespace) -> int:
    t = translate(opts.original, opts.world_size, opts.data_config, opts.alphas_dir, opts.model_preset)
    report = check(t, opts.world_size)
    written = write_translation(t, opts.out)
    for line in report_lines(t):
        print(line)
    print(summary(t, written, report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``egom2p-convert config ORIGINAL.yaml --out DIR``; a user mistake exits 2 with one line."""
    opts = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: _run(opts))



if __name__ == "__main__":
    raise SystemExit(main())

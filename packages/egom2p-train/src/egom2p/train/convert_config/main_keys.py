"""The main config's keys that are not the schedule's: run names, model, token budgets, fine-tuning, the rest.

Each function translates one group of the original's keys into :class:`MainOut`, which collects our dotted keys,
the original key each came from, the keys not carried and notes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from egom2p.core.checkpoints import parse_dtype
from egom2p.model.presets import PRESETS
from egom2p.train.config import TrainConfig
from egom2p.train.convert_config.original import domains, number
from egom2p.train.convert_config.result import DIFFERS, ConversionError, Skipped, conversion_error

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


def _our_default(dotted: str) -> Any:
    """Our default of a dotted train key (data keys have none)."""
    node: Any = TrainConfig()
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(node) or not hasattr(node, part):
            return None
        node = getattr(node, part)
    return node


class MainOut:
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


def run_names(args: Mapping[str, Any], out: MainOut) -> str:
    """run_name / output_dir / wandb_run_name / s3_save_dir with the original's ``'auto'`` rules
    (docs/original-behaviour.md#training-recipe)."""
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
        raise conversion_error(out.main, "run_name", run_name, "expected 'auto' or a name")
    output_dir = args["output_dir"]
    if not isinstance(output_dir, str):
        raise conversion_error(out.main, "output_dir", output_dir, "expected a path")
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


def model(args: Mapping[str, Any], out: MainOut, preset: str | None) -> None:
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
        raise conversion_error(out.main, "model", name,
                               f"not an architecture we know; pass --model-preset (one of {sorted(PRESETS)})")
    out.carry("dtype", _dtype_name(args["dtype"]), "dtype")
    device = args["device"]
    if "device" in out.present:
        if device in ("cuda", "cpu"):
            out.carry("device", device, "device")
        else:
            out.skip("device", device, "ours runs each rank on its local GPU (device: auto | cuda | cpu)")
    registers = number(out.main, "num_register_tokens", args["num_register_tokens"], integer=True)
    out.skip("num_register_tokens", registers,
             f"{DIFFERS}our model has no register tokens" if registers else "our model has none either")


def _dtype_name(value: Any) -> Any:
    """The original's dtype name (``bf16``, ``float16``, ...) as the one our config takes (``bfloat16``, ``float16``,
    ``float32``); what core's :func:`~egom2p.core.checkpoints.parse_dtype` cannot read is left to our validator."""
    try:
        parsed = parse_dtype(value)
    except ValueError:
        return value
    return value if parsed is None else str(parsed).removeprefix("torch.")


def token_budgets(args: Mapping[str, Any], out: MainOut) -> dict[str, Any]:
    """The main config's token budgets: our data config's ``train:`` defaults (the original's code default 128)."""
    budgets: dict[str, Any] = {}
    for key in ("num_input_tokens", "num_target_tokens", "min_input_tokens", "min_target_tokens"):
        value = args[key]
        if value is None and key.startswith("min_"):
            if key in out.present:  # null: always num_*, the same in ours
                budgets[key] = None
                out.used.add(key)
            continue
        value = number(out.main, key, value, integer=True)
        if value < (0 if key.startswith("min_") else 1):
            raise conversion_error(out.main, key, value, f"must be >= {0 if key.startswith('min_') else 1}")
        budgets[key] = value
        if key not in out.present:
            out.notes.append(f"{key}: not set: the original's code default {value} is written to data.train.{key}")
        else:
            out.used.add(key)
        out.origin[f"data.train.{key}"] = key
    return budgets


def finetune(args: Mapping[str, Any], out: MainOut) -> None:
    """``finetune`` (weights to start from) and the frozen-model phase, to ``checkpoint.init_from`` / ``finetune.*``."""
    path = args["finetune"]
    if isinstance(path, str) and path:
        if not os.path.isabs(path) and "://" not in path:
            path = os.path.abspath(path)  # the original resolves it against its working directory
        out.carry("checkpoint.init_from", path, "finetune")
    elif path in ("", None):
        out.skip("finetune", path, "not set: the run starts from fresh weights")
    else:
        raise conversion_error(out.main, "finetune", path, "expected a checkpoint path")
    f_epochs = number(out.main, "frozen_model_epochs", args["frozen_model_epochs"], integer=True)
    f_tokens = number(out.main, "frozen_model_tokens", args["frozen_model_tokens"])
    f_blr = number(out.main, "frozen_model_blr", args["frozen_model_blr"])
    if f_epochs > 0 and f_tokens > 0:
        raise conversion_error(out.main, "frozen_model_epochs", f_epochs,
                               f"together with frozen_model_tokens {f_tokens}: the original refuses to start; set one "
                               "of them")
    frozen = args["frozen_embedding_domain"]
    values = {"frozen_model_epochs": max(f_epochs, 0), "frozen_model_tokens": max(float(f_tokens), 0.0),
              "frozen_model_blr": f_blr if f_blr > 0 else None,  # the original: <= 0 means blr
              "frozen_embedding_domain": [] if frozen in (None, "") else domains(frozen)}
    for key, value in values.items():
        out.carry(f"finetune.{key}", value, key)


def other_keys(args: Mapping[str, Any], out: MainOut) -> None:
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

"""The original trainer's side: its argparse defaults, how it reads values, and finding and reading its files."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from egom2p.core.config_files import read_config_file
from egom2p.core.layout import domain_list
from egom2p.train.convert_config.result import ConversionError, conversion_error

# The original trainer's argparse defaults (run_training_egom2p.py, docs/original-behaviour.md#training-recipe): a
# key the file does not set has this value there, so it is translated like a set one (where ours differs, the
# original's value is written).
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


def number(where: Path, key: str, value: Any, integer: bool = False) -> float | int:
    """``value`` as a number (YAML 1.1 reads ``1e-4`` as a string, which the original would have used as one)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise conversion_error(where, key, value, f"expected {'an integer' if integer else 'a number'}")
    if integer:
        if not float(value).is_integer():
            raise conversion_error(where, key, value, "expected an integer")
        return int(value)
    return value


def domains(value: Any) -> Any:
    """The original's hyphen-separated domain string as our list (anything else is left to our validator)."""
    return domain_list(value) if isinstance(value, str) else value


def read_mapping(path: Path, what: str) -> Mapping[str, Any]:
    """A YAML file that must hold a mapping; one-line errors name it."""
    raw = read_config_file(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConversionError(f"{path}: the {what} must hold a mapping of keys, got {type(raw).__name__}")
    return raw


def find(name: str, given: str, candidates: Sequence[Path], option: str, where: Path) -> Path:
    """The first candidate that is a file; else one line naming the key, what was looked at and the option."""
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(dict.fromkeys(str(p) for p in candidates))
    raise ConversionError(f"{where}: {name} {given!r} not found (looked at {looked}); pass {option}")


def candidates(given: str, *folders: Path) -> list[Path]:
    """As given (the original's working directory is ours), then relative to and by file name in each folder."""
    found = [Path(given).expanduser()]
    for folder in folders:
        found += [folder / given, folder / Path(given).name]
    return found

"""What a resume finds changed since its checkpoint: each change logged, those that alter what is trained refused.

A checkpoint keeps the resolved config it was trained with and the settings derived from it (the trainer's
``resume_settings``). On resume every change is logged, one line per key, and training goes on with the new
values; a change of what is trained (:func:`egom2p.train.config.changes_what_is_trained`) is refused unless
``resume.allow_changes`` lists it. A checkpoint older than its own copy of the config is compared with the run
directory's ``config.yaml``, else on its settings only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from egom2p.core.config_files import read_config_file
from egom2p.train.config import ConfigError, TrainConfig, change_allowed, changes_what_is_trained, config_changes


def saved_config(state: Mapping[str, Any], output_dir: str | Path, log: Callable[[str], None]) -> Mapping[str, Any] | None:
    """The resolved config a checkpoint's ``state`` was trained with: its own copy, else (a checkpoint older than
    that copy) ``output_dir``'s ``config.yaml``, else None."""
    if "config" in state:
        return state["config"]
    path = Path(output_dir) / "config.yaml"
    try:
        saved = read_config_file(path) if path.is_file() else None
    except ValueError as err:
        log(f"resume: the saved config is unreadable ({err}); only the optimizer settings are compared")
        return None
    return saved if isinstance(saved, Mapping) else None


def report_changes(cfg: TrainConfig, saved: Mapping[str, Any], now: Mapping[str, Any],
                   saved_config: Mapping[str, Any] | None, positioned_by: Mapping[str, str], path: str, step: int,
                   log: Callable[[str], None]) -> bool:
    """Log every change of ``cfg`` since the checkpoint at ``path`` (resumed at ``step``), one line per key, and
    raise ``ConfigError`` for those that alter what is trained unless ``cfg.resume.allow_changes`` lists them.

    ``saved`` / ``now`` are the checkpoint's and the current ``resume_settings``, ``saved_config`` the checkpoint's
    resolved config tree (None: only the settings are compared), ``positioned_by`` the settings that position the
    data streams (setting name -> config key). Returns whether the data streams must restart: their seed or the
    datasets they are positioned in changed (allowed), so the saved positions mean nothing.
    """
    if saved_config is not None:
        changes = config_changes(saved_config, cfg.to_dict())
    else:
        changes = [(k, saved[k], v) for k, v in now.items() if "." in k and k in saved and saved[k] != v]
    # What the streams are positioned by (dataset names, training windows) can change behind an unchanged config.
    moved = False
    for name, key in positioned_by.items():
        if name in saved and saved[name] != now[name]:
            moved = True
            if not any(change_allowed(k, [key]) or change_allowed(key, [k]) for k, _, _ in changes):
                changes.append((key, saved[name], now[name]))
    allowed = cfg.resume.allow_changes
    refused = [k for k, _, _ in changes if changes_what_is_trained(k) and not change_allowed(k, allowed)]
    if refused:
        key, old, new = next(c for c in changes if c[0] == refused[0])
        others = f" (and {', '.join(refused[1:4])}{' ...' if len(refused) > 4 else ''})" if len(refused) > 1 else ""
        raise ConfigError(
            f"config key '{key}': {old!r} -> {new!r}{others} since {path} changes what is trained: list "
            f"{'it' if len(refused) == 1 else 'them'} in resume.allow_changes to resume with the change "
            f"(resume.allow_changes=[{','.join(refused[:4])}]), or start a new output_dir with "
            "checkpoint.init_from set to that checkpoint", key)
    for key, old, new in changes:
        note = " (allowed by resume.allow_changes)" if changes_what_is_trained(key) else ""
        log(f"resume: {key}: {old!r} -> {new!r}{note}")
    derived = [f"{k} {saved[k]} -> {now[k]}" for k in ("global_batch_size", "peak_lr", "warmup_steps", "total_steps")
               if k in saved and saved[k] != now[k]]
    if changes or derived:
        log(f"resume: {len(changes)} config change(s) since {path}; training continues with the new values"
            + (f" ({', '.join(derived)}; LR schedule recomputed at step {step})" if derived else ""))
    return moved

"""The main config's schedule and optimizer keys: batch and accumulation, run length, warmup, optimizer, scheduler."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from egom2p.train.convert_config.main_keys import MainOut
from egom2p.train.convert_config.original import number
from egom2p.train.convert_config.result import DIFFERS, conversion_error


def global_batch(args: Mapping[str, Any], out: MainOut, world_size: int | None) -> None:
    """batch_size (per GPU), accum_iter and, with ``--world-size``, the global batch."""
    batch = number(out.main, "batch_size", args["batch_size"], integer=True)
    accum = number(out.main, "accum_iter", args["accum_iter"], integer=True)
    if batch < 1:
        raise conversion_error(out.main, "batch_size", batch, "must be >= 1")
    if accum < 1:
        raise conversion_error(out.main, "accum_iter", accum, "must be >= 1")
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


def run_length(args: Mapping[str, Any], out: MainOut) -> None:
    """epochs / total_tokens: the original trains by tokens only with a negative epochs (and refuses both)."""
    epochs = number(out.main, "epochs", args["epochs"], integer=True)
    total = number(out.main, "total_tokens", args["total_tokens"])
    if epochs < 0 and total <= 0:
        raise conversion_error(out.main, "epochs", epochs, f"negative with total_tokens {total}: the original stops; "
                                                           "set total_tokens (billions) or epochs")
    if epochs >= 0 and total > 0:
        raise conversion_error(out.main, "epochs", epochs, f"together with total_tokens {total}: the original refuses "
                                                           "to start; set epochs: -1 to train by tokens")
    out.carry("schedule.epochs", epochs, "epochs")
    out.carry("schedule.total_tokens", total, "total_tokens")


def _steps_per_epoch(args: Mapping[str, Any], out: MainOut, world_size: int) -> int:
    """The original's optimizer steps per epoch on ``world_size`` GPUs (ours: epoch_size // global batch)."""
    epoch_size = args["epoch_size"]
    if epoch_size is None:
        raise conversion_error(out.main, "epoch_size", epoch_size, "must be set (samples per epoch over all GPUs)")
    global_batch = args["batch_size"] * args["accum_iter"] * world_size
    return int(number(out.main, "epoch_size", epoch_size, integer=True)) // global_batch


def warmup(args: Mapping[str, Any], out: MainOut, world_size: int | None) -> None:
    """warmup_steps > 0 wins in the original, then warmup_epochs >= 0, then warmup_tokens; ours: tokens, then epochs."""
    w_epochs = number(out.main, "warmup_epochs", args["warmup_epochs"])
    w_steps = number(out.main, "warmup_steps", args["warmup_steps"], integer=True)
    w_tokens = number(out.main, "warmup_tokens", args["warmup_tokens"])
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
        raise conversion_error(out.main, "warmup_tokens", w_tokens, "warmup_epochs, warmup_steps and warmup_tokens "
                                                                    "are all negative: the original stops")


def optimizer_and_scheduler(args: Mapping[str, Any], out: MainOut) -> None:
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

"""Generation schedules: how many tokens, at which temperature and guidance scale, each step decodes.

Reimplements the original's `build_chained_generation_schedules` (docs/original-behaviour.md#schedules) with
the same argument names and the same step dicts, so schedules written for EgoM2P/4M work unchanged. Deliberate
differences: integer guidance scales are accepted (the original crashes, quirk 30), lists of multi-condition
weights are checked (numbers only, not empty), and ROAR can be told to honour the cosine token schedule
(`roar_honours_token_schedule=True`; the original always uses the linear one for ROAR, which stays the default
for parity). Quirk numbers here are those of docs/original-behaviour.md#quirks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from egom2p.core.modalities import ModalitySpec

SCHEMES = ("roar", "maskgit")
TOKEN_SCHEDULES = ("linear", "cosine")
CFG_SCHEDULES = ("constant",)
MIN_TEMPERATURE = 1e-9


def linear_schedule(num_steps: int, num_tokens: int) -> list[int]:
    """Split `num_tokens` over `num_steps` as evenly as possible, larger chunks first.

    `linspace(0, N, n+1)` truncated to int, successive differences, sorted descending, zero-sized
    steps dropped: (3, 5120) -> [1707, 1707, 1706]; (5, 30) -> [6, 6, 6, 6, 6].
    """
    _check_counts(num_steps, num_tokens)
    edges = np.linspace(0, num_tokens, num_steps + 1).astype(np.int64)
    per_step = sorted((int(d) for d in np.diff(edges)), reverse=True)
    return [k for k in per_step if k > 0]


def cosine_schedule(num_steps: int, num_tokens: int) -> list[int]:
    """MaskGIT's cosine split: few tokens first and last, most in the middle.

    s_i = (1 + cos(pi i / n)) / 2; step i < n-1 decodes round(N (s_i - s_{i+1})); the last step gets
    the remainder, which includes the tail s_{n-1} N because s never reaches 0 (quirk 29).
    """
    _check_counts(num_steps, num_tokens)
    s = 0.5 * (1.0 + np.cos(math.pi * np.arange(num_steps) / num_steps))
    head = [int(np.round(num_tokens * (s[i] - s[i + 1]))) for i in range(num_steps - 1)]
    return head + [num_tokens - sum(head)]


def _check_counts(num_steps: int, num_tokens: int) -> None:
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"decoding_steps must be a positive integer, got {num_steps!r}")
    if int(num_tokens) != num_tokens or num_tokens < 1:
        raise ValueError(f"tokens_per_target must be a positive integer, got {num_tokens!r}")


def linear_temp_schedule(temp: float, token_schedule: Sequence[int]) -> list[float]:
    """Temperature proportional to the fraction of tokens still undecoded before each step."""
    total = sum(token_schedule)
    decoded_before = np.concatenate([[0], np.cumsum(token_schedule)[:-1]])
    temps = temp * (total - decoded_before) / total
    return [float(t) for t in np.clip(temps, MIN_TEMPERATURE, None)]


def onex_temp_schedule(
    max_t: float, min_t: float, token_schedule: Sequence[int], power: float = 0.5
) -> list[float]:
    """The original's `onex` schedule, reproduced faithfully including quirk 28.

    y = x^-power on x = linspace(1, 100, N) (N = total tokens), min-max rescaled to [1, 0]. The
    original zips that N-long curve with the n-step list, so step i uses y_i (one of the first n
    points, all close to 1 when N >> n): temp_i = min_t + (max_t - min_t) (1 - c_i) y_i with c_i the
    fraction of tokens decoded after step i. So in practice it behaves like
    `temp * (1 - fraction decoded)` and ends at min_t.
    """
    total = sum(token_schedule)
    x = np.linspace(1, 100, num=total)
    y = 1.0 / (x**power)
    y = y - y.min()
    y = y / y.max() if y.max() > 0 else np.ones_like(y)  # N == 1: flat curve, avoid 0/0
    decoded_after = np.cumsum(token_schedule) / total
    unscaled = np.array([(1.0 - c) * yi for yi, c in zip(y, decoded_after)])
    temps = unscaled * (max_t - min_t) + min_t
    return [float(t) for t in np.clip(temps, MIN_TEMPERATURE, None)]


def temperature_schedule(name: str, temp: float, token_schedule: Sequence[int]) -> list[float]:
    """Per-step temperatures for one target: `constant`, `linear` or `onex:{min_t}:{power}`."""
    if name == "constant":
        return [float(temp)] * len(token_schedule)
    if name == "linear":
        return linear_temp_schedule(temp, token_schedule)
    if name.startswith("onex"):
        parts = name.split(":")
        try:
            min_t, power = (float(p) for p in parts[1:])
        except ValueError:
            raise ValueError(
                f"temperature schedule {name!r}: expected 'onex:{{min_t}}:{{power}}', e.g. 'onex:0.5:1.0'"
            ) from None
        return onex_temp_schedule(temp, min_t, token_schedule, power)
    raise ValueError(
        f"unknown temperature schedule {name!r}; expected 'constant', 'linear' or 'onex:{{min_t}}:{{power}}'"
    )


def _is_number(value: Any) -> bool:
    # bool is an int subclass: reject it explicitly, True as a scale is surely a mistake.
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def _cfg_scale(value: Any, target: str) -> float | list[float]:
    """One guidance scale, or a list of weights (one per condition) for `generate_multi_guided`."""
    if _is_number(value):
        return float(value)
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) > 0 and all(_is_number(v) for v in value):
        return [float(v) for v in value]
    raise ValueError(
        f"cfg_scales entry for {target!r} must be a number, or a non-empty list of numbers (one weight per "
        f"condition, for multi-condition guidance), got {value!r}"
    )


def build_generation_schedule(
    cond_domains: Sequence[str],
    target_domains: Sequence[str],
    tokens_per_target: Sequence[int],
    autoregression_schemes: Sequence[str],
    decoding_steps: Sequence[int],
    token_decoding_schedules: Sequence[str],
    temps: Sequence[float],
    temp_schedules: Sequence[str],
    cfg_scales: Sequence[float | Sequence[float]],
    cfg_schedules: Sequence[str],
    cfg_grow_conditioning: bool = False,
    modality_info: Mapping[str, ModalitySpec] | None = None,
    roar_honours_token_schedule: bool = False,
) -> list[dict[str, Any]]:
    """Build the flat list of generation steps for chained targets.

    Every per-target argument is a list with one entry per target, in generation order. Each step
    is a dict `{target_domain, scheme, num_tokens, temperature, cfg_scale, cfg_cond_domains}`.
    With `cfg_grow_conditioning`, a finished target joins the conditioning set of later targets (so
    their unconditional pass blanks it too). `modality_info` (e.g. `model.modalities`, name -> spec)
    checks target names and token counts when given. ROAR uses the linear token
    schedule like the original unless `roar_honours_token_schedule` is set. A `cfg_scales` entry may
    be a list of weights, one per condition, for `GenerationSampler.generate_multi_guided` (the
    original's multi-condition guidance); each step then carries that list as its `cfg_scale`.
    """
    per_target = {
        "tokens_per_target": tokens_per_target,
        "autoregression_schemes": autoregression_schemes,
        "decoding_steps": decoding_steps,
        "token_decoding_schedules": token_decoding_schedules,
        "temps": temps,
        "temp_schedules": temp_schedules,
        "cfg_scales": cfg_scales,
        "cfg_schedules": cfg_schedules,
    }
    if isinstance(target_domains, str) or isinstance(cond_domains, str):
        raise ValueError("cond_domains and target_domains must be lists of modality names, not a string")
    for key, values in per_target.items():
        if isinstance(values, str) or len(values) != len(target_domains):
            raise ValueError(
                f"{key} must have one entry per target ({len(target_domains)} targets: {list(target_domains)}), "
                f"got {values!r}"
            )
    if not target_domains:
        raise ValueError("target_domains is empty: nothing to generate")

    conditioning = list(cond_domains)
    steps: list[dict[str, Any]] = []
    for i, target in enumerate(target_domains):
        scheme = autoregression_schemes[i]
        num_tokens = tokens_per_target[i]
        if modality_info is not None:
            if target not in modality_info:
                raise ValueError(f"unknown target modality {target!r}; known: {sorted(modality_info)}")
            limit = modality_info[target].num_tokens
            if num_tokens > limit:
                raise ValueError(f"tokens_per_target for {target!r} is {num_tokens}, but it has only {limit} tokens")
        if scheme == "autoregressive":
            raise ValueError("scheme 'autoregressive' is for text-like sequence modalities, which EgoM2P does not have")
        if scheme not in SCHEMES:
            raise ValueError(f"unknown autoregression scheme {scheme!r} for {target!r}; expected one of {SCHEMES}")
        token_schedule_name = token_decoding_schedules[i]
        if token_schedule_name not in TOKEN_SCHEDULES:
            raise ValueError(
                f"unknown token decoding schedule {token_schedule_name!r}; expected one of {TOKEN_SCHEDULES}"
            )
        if scheme == "roar" and not roar_honours_token_schedule:
            token_schedule_name = "linear"  # the original ignores the entry for ROAR (quirk 30)
        split = cosine_schedule if token_schedule_name == "cosine" else linear_schedule
        token_schedule = split(decoding_steps[i], num_tokens)

        temps_i = temperature_schedule(temp_schedules[i], float(temps[i]), token_schedule)
        if cfg_schedules[i] not in CFG_SCHEDULES:
            raise ValueError(f"unknown cfg schedule {cfg_schedules[i]!r}; only 'constant' is supported")
        scale = _cfg_scale(cfg_scales[i], target)

        for k, temp in zip(token_schedule, temps_i):
            steps.append(
                {
                    "target_domain": target,
                    "scheme": scheme,
                    "num_tokens": int(k),
                    "temperature": float(temp),
                    "cfg_scale": list(scale) if isinstance(scale, list) else scale,
                    "cfg_cond_domains": list(conditioning),
                }
            )
        if cfg_grow_conditioning:
            conditioning.append(target)
    return steps

"""Schedule arithmetic against the original's worked examples and argument checking.

The worked examples: docs/original-behaviour.md#schedules; quirk numbers: docs/original-behaviour.md#quirks.
"""

import math

import numpy as np
import pytest
from egom2p.core.modalities import ModalitySpec
from egom2p.generate.schedule import (
    build_generation_schedule,
    cosine_schedule,
    linear_schedule,
    onex_temp_schedule,
    temperature_schedule,
)


@pytest.mark.parametrize(
    ("steps", "tokens", "expected"),
    [
        (3, 5120, [1707, 1707, 1706]),
        (6, 5120, [854, 854, 853, 853, 853, 853]),
        (3, 30, [10, 10, 10]),
        (5, 30, [6, 6, 6, 6, 6]),
        (2, 30, [15, 15]),
        (8, 5, [1, 1, 1, 1, 1]),  # more steps than tokens: empty steps dropped
    ],
)
def test_linear_schedule_matches_spec_examples(steps, tokens, expected):
    assert linear_schedule(steps, tokens) == expected


def test_cosine_schedule_arithmetic():
    n, total = 4, 100
    s = [0.5 * (1 + math.cos(math.pi * i / n)) for i in range(n)]
    head = [round(total * (s[i] - s[i + 1])) for i in range(n - 1)]
    assert cosine_schedule(n, total) == head + [total - sum(head)]
    assert cosine_schedule(n, total) == [15, 35, 35, 15]
    # quirk 29: the last step carries the tail because the cosine never reaches 0
    assert cosine_schedule(3, 30) == [8, 15, 7]
    assert sum(cosine_schedule(7, 5120)) == 5120


def _args(**changes):
    args = dict(
        cond_domains=["tok_rgb"], target_domains=["tok_cam"], tokens_per_target=[30],
        autoregression_schemes=["roar"], decoding_steps=[3], token_decoding_schedules=["linear"],
        temps=[0.01], temp_schedules=["constant"], cfg_scales=[2.0], cfg_schedules=["constant"],
        cfg_grow_conditioning=True,
    )
    args.update(changes)
    return args


def test_schedule_steps_have_the_original_keys_and_values():
    steps = build_generation_schedule(**_args())
    assert steps == [
        {"target_domain": "tok_cam", "scheme": "roar", "num_tokens": 10, "temperature": 0.01,
         "cfg_scale": 2.0, "cfg_cond_domains": ["tok_rgb"]}
    ] * 3


def test_chained_targets_grow_conditioning():
    steps = build_generation_schedule(**_args(
        target_domains=["tok_cam", "tok_gaze"], tokens_per_target=[30, 30], autoregression_schemes=["roar"] * 2,
        decoding_steps=[3, 5], token_decoding_schedules=["linear"] * 2, temps=[0.01] * 2,
        temp_schedules=["constant"] * 2, cfg_scales=[2.0, 3], cfg_schedules=["constant"] * 2))
    assert [s["target_domain"] for s in steps] == ["tok_cam"] * 3 + ["tok_gaze"] * 5
    assert steps[0]["cfg_cond_domains"] == ["tok_rgb"]
    assert steps[-1]["cfg_cond_domains"] == ["tok_rgb", "tok_cam"]
    assert steps[-1]["cfg_scale"] == 3.0 and isinstance(steps[-1]["cfg_scale"], float)  # int accepted (quirk 30)
    without = build_generation_schedule(**{**_args(
        target_domains=["tok_cam", "tok_gaze"], tokens_per_target=[30, 30], autoregression_schemes=["roar"] * 2,
        decoding_steps=[3, 5], token_decoding_schedules=["linear"] * 2, temps=[0.01] * 2,
        temp_schedules=["constant"] * 2, cfg_scales=[2.0, 2.0], cfg_schedules=["constant"] * 2),
        "cfg_grow_conditioning": False})
    assert without[-1]["cfg_cond_domains"] == ["tok_rgb"]


def test_multi_condition_weights_are_carried_per_step():
    steps = build_generation_schedule(**_args(
        target_domains=["tok_cam", "tok_gaze"], tokens_per_target=[30, 30], autoregression_schemes=["roar"] * 2,
        decoding_steps=[3, 5], token_decoding_schedules=["linear"] * 2, temps=[0.01] * 2,
        temp_schedules=["constant"] * 2, cfg_scales=[(1.5, 0.5), np.array([1.5, 0.5, 1])],
        cfg_schedules=["constant"] * 2))
    assert [s["cfg_scale"] for s in steps] == [[1.5, 0.5]] * 3 + [[1.5, 0.5, 1.0]] * 5
    assert all(type(w) is float for s in steps for w in s["cfg_scale"])
    steps[0]["cfg_scale"].append(9.0)  # every step owns its list
    assert steps[1]["cfg_scale"] == [1.5, 0.5]


def test_roar_ignores_cosine_unless_asked():
    roar = build_generation_schedule(**_args(token_decoding_schedules=["cosine"]))
    assert [s["num_tokens"] for s in roar] == [10, 10, 10]
    honoured = build_generation_schedule(**_args(token_decoding_schedules=["cosine"]), roar_honours_token_schedule=True)
    assert [s["num_tokens"] for s in honoured] == [8, 15, 7]
    maskgit = build_generation_schedule(**_args(token_decoding_schedules=["cosine"], autoregression_schemes=["maskgit"]))
    assert [s["num_tokens"] for s in maskgit] == [8, 15, 7]


def test_linear_temperature_schedule():
    temps = temperature_schedule("linear", 1.0, [10, 10, 10])
    np.testing.assert_allclose(temps, [1.0, 2 / 3, 1 / 3])


def test_onex_reproduces_the_original_quirk():
    # y on linspace(1, 100, N); only its first n points are used (quirk 28)
    x = np.linspace(1, 100, 30)
    y = x**-1.0
    y = (y - y.min()) / (y - y.min()).max()
    expected = [0.1 + (1.0 - 0.1) * (1 - c) * yi for yi, c in zip(y, [1 / 3, 2 / 3, 1.0])]
    got = temperature_schedule("onex:0.1:1.0", 1.0, [10, 10, 10])
    np.testing.assert_allclose(got, np.clip(expected, 1e-9, None))
    assert got[-1] == pytest.approx(0.1)  # ends at min_t
    assert onex_temp_schedule(1.0, 0.0, [1]) == [1e-9]  # a single token: no 0/0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"autoregression_schemes": ["diffusion"]}, "unknown autoregression scheme"),
        ({"autoregression_schemes": ["autoregressive"]}, "autoregressive"),
        ({"token_decoding_schedules": ["square"]}, "unknown token decoding schedule"),
        ({"temp_schedules": ["onex:0.1"]}, "onex"),
        ({"temp_schedules": ["exp"]}, "unknown temperature schedule"),
        ({"cfg_schedules": ["cosine"]}, "cfg schedule"),
        ({"cfg_scales": [[]]}, "non-empty list of numbers"),
        ({"cfg_scales": [[1.0, "2"]]}, "non-empty list of numbers"),
        ({"cfg_scales": [True]}, "must be a number"),
        ({"decoding_steps": [0]}, "decoding_steps"),
        ({"temps": [0.01, 0.02]}, "temps must have one entry per target"),
        ({"target_domains": []}, "one entry per target"),
    ],
)
def test_bad_arguments_raise_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        build_generation_schedule(**_args(**changes))


def test_modality_info_checks_names_and_counts():
    info = {name: ModalitySpec(name, 256, length=30) for name in ("tok_cam", "tok_rgb")}
    assert len(build_generation_schedule(**_args(), modality_info=info)) == 3
    with pytest.raises(ValueError, match="unknown target modality 'tok_cam'"):
        build_generation_schedule(**_args(), modality_info={"tok_rgb": info["tok_rgb"]})
    with pytest.raises(ValueError, match="has only 30 tokens"):
        build_generation_schedule(**_args(tokens_per_target=[31]), modality_info=info)

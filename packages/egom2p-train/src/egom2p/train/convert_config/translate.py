"""The whole translation: the main config, then the data config it names and its alphas files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from egom2p.core.modalities import RELEASED_MODALITIES
from egom2p.data.config import TOP_KEYS
from egom2p.train.convert_config import data_keys, main_keys, schedule_keys
from egom2p.train.convert_config.main_keys import DIRECT, MainOut
from egom2p.train.convert_config.original import ORIGINAL_DEFAULTS, candidates, find, read_mapping
from egom2p.train.convert_config.result import DIFFERS, ConversionError, Skipped, Translation, conversion_error


def _translate_main(raw: Mapping[str, Any], main: Path, world_size: int | None,
                    preset: str | None) -> tuple[MainOut, dict[str, Any]]:
    """Our train keys and the data config's budgets from the original main config ``raw``."""
    present = {str(k) for k in raw}
    args = {**ORIGINAL_DEFAULTS, **{str(k): v for k, v in raw.items()}}
    out = MainOut(main, present)
    main_keys.run_names(args, out)
    main_keys.model(args, out, preset)
    schedule_keys.global_batch(args, out, world_size)
    schedule_keys.run_length(args, out)
    schedule_keys.warmup(args, out, world_size)
    schedule_keys.optimizer_and_scheduler(args, out)
    budgets = main_keys.token_budgets(args, out)
    main_keys.finetune(args, out)
    main_keys.other_keys(args, out)
    for key, ours in DIRECT.items():
        out.carry(ours, args[key], key)
    handled = set(ORIGINAL_DEFAULTS)
    for key in sorted(present - handled):
        out.skip(key, raw[key], "not an option of the original trainer nor of ours")
    return out, budgets


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
    raw = read_mapping(main, "original main config")
    out, budgets = _translate_main(raw, main, world_size, model_preset)
    given = raw.get("data_config", "")
    if data_config is not None:
        data_path = find("--data-config", str(data_config), [Path(data_config)], "an existing --data-config", main)
        if given:
            out.notes.append(f"data_config: {given}: replaced by --data-config {data_config}")
    elif not isinstance(given, str) or not given:
        raise conversion_error(main, "data_config", given,
                               "the original needs a data config; set it or pass --data-config PATH")
    else:
        data_path = find("data_config", given, candidates(given, main.parent), "--data-config PATH", main)
    data_raw = read_mapping(data_path, "data config")
    alphas_files = data_keys.alphas_files(data_raw, data_path, main, Path(alphas_dir) if alphas_dir is not None else None)
    copies = data_keys.copy_names(alphas_files)
    skipped: list[Skipped] = []
    for path in dict.fromkeys(alphas_files.values()):
        data_keys.check_alphas(path, skipped)
    train_raw = data_raw.get("train")
    train_names = set((train_raw.get("datasets") or {}) if isinstance(train_raw, Mapping) else ())
    data: dict[str, Any] = {}
    for key, value in data_raw.items():
        if key in TOP_KEYS:
            data[key] = data_keys.translate_split(value, key, data_path.name, train_names, copies, skipped, out.notes)
        else:
            skipped.append(Skipped(data_path.name, str(key), value, "not a key of the original's data config nor of ours"))
    if isinstance(data.get("train"), dict):
        data["train"] = {**budgets, **data["train"]}  # the main config's budgets are the datasets' defaults
    _counted_tokens(data, budgets, out)
    used = data_keys.modalities(data)
    if used and used != set(RELEASED_MODALITIES) and used <= set(RELEASED_MODALITIES):
        # The original builds embeddings for the data's domains only: keep the model to the same set.
        out.carry("model.modalities", {m: RELEASED_MODALITIES[m] for m in sorted(used)}, "data_config")
    out.origin["data"] = "data_config"  # written as train.yaml's data: (the translated data.yaml)
    out.used.add("data_config")
    return Translation(train=out.carried, data=data, alphas={c: alphas_files[g] for g, c in copies.items()},
                       skipped=out.skipped + data_keys.merge_dataset_lines(skipped, data), notes=out.notes,
                       origin=out.origin, carried_keys=out.used, sources={"main": main, "data": data_path})


def _counted_tokens(data: Mapping[str, Any], budgets: Mapping[str, int], out: MainOut) -> None:
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

"""Alphas configs: the mixture-of-Dirichlet parameters of the masking (docs/original-behaviour.md#alphas-files), and the
per-dataset alphas strings of data configs.

File format (the original's ``setup_sampling_mod_info``)::

    sampling_weights: [1.0, 1.0, 1.0, 1.0]        # one weight per mixture component (null: uniform)
    alphas_mixture:
      tok_rgb: {input_alphas: [0.01, 0.1, 1.0, 10.0], target_alphas: [0.01, 0.1, 1.0, 10.0]}
      ...

or, without ``sampling_weights`` (components chosen uniformly), the modality entries at the top level::

    tok_rgb: {input_alphas: [...], target_alphas: [...]}

An ``alphas_mixture`` without ``sampling_weights`` (the original fails on it) means uniform weights. A
modality's ``keep`` (the original reads it for sequence modalities only, for span masking of text) has no
effect: EgoM2P has no sequence modality.

Files are read with :func:`egom2p.core.config_files.read_config_file` when first needed, so that
``import egom2p.data.masking`` (which imports this module) needs neither PyYAML nor egom2p.core.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["AlphasConfig", "load_alphas_config", "parse_alphas_string", "per_modality_alphas"]


@dataclass(frozen=True)
class AlphasConfig:
    """Per-modality input/target Dirichlet concentrations for K mixture components."""

    input_alphas: dict[str, tuple[float, ...]]
    target_alphas: dict[str, tuple[float, ...]]
    sampling_weights: tuple[float, ...] | None

    @property
    def num_components(self) -> int:
        """K, the number of mixture components."""
        return len(next(iter(self.input_alphas.values())))


def _float_list(value: Any, key: str, where: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{where}: '{key}' must be a non-empty list of numbers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{where}: '{key}' entries must be non-negative numbers, got {v!r}")
        out.append(float(v))
    return tuple(out)


def parse_alphas_string(value: str | float | int) -> tuple[float, ...]:
    """Parse the original's per-dataset alphas form: a number, ``"a"`` or ``"a1-a2-..."``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    if isinstance(value, str):
        try:
            out = tuple(float(x) for x in value.split("-"))
        except ValueError:
            raise ValueError(f"alphas string {value!r} is not of the form 'a' or 'a1-a2-...'") from None
        if all(a >= 0 for a in out):
            return out
    raise ValueError(f"alphas {value!r} must be a non-negative number or an 'a1-a2-...' string of them")


def per_modality_alphas(value: str | float | int, domains: Sequence[str], key: str = "alphas") -> dict[str, float]:
    """The original's meaning of a per-dataset ``input_alphas`` / ``target_alphas``: one concentration per domain.

    ``"a"`` gives every domain ``a``; ``"a1-a2-..."`` is zipped with the *sorted* domains (one value per
    domain). The original's ``zip`` silently drops extra values or leaves domains at 0 when the counts
    differ; here that is an error naming ``key``.
    """
    names = sorted(set(domains))
    alphas = parse_alphas_string(value)
    if len(alphas) == 1:
        return {n: alphas[0] for n in names}
    if len(alphas) != len(names):
        raise ValueError(
            f"{key} {value!r} has {len(alphas)} values for the {len(names)} sorted domains {names}: one per domain "
            "(the original zips them and silently drops or zeroes the rest); mixtures belong in an alphas_config"
        )
    return dict(zip(names, alphas))


def _modality_entries(raw: Mapping[str, Any], where: str) -> tuple[Mapping[str, Any], Any]:
    """(modality -> entry mapping, sampling_weights or None) in either of the original's two layouts."""
    if "sampling_weights" in raw or "alphas_mixture" in raw:
        unknown = set(raw) - {"sampling_weights", "alphas_mixture"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)} (next to 'alphas_mixture' only 'sampling_weights' is known)")
        mixture = raw.get("alphas_mixture")
        if not isinstance(mixture, Mapping) or not mixture:
            raise ValueError(f"{where}: 'alphas_mixture' must be a non-empty mapping of modality -> alphas")
        return mixture, raw.get("sampling_weights")
    if not raw:
        raise ValueError(f"{where}: expected 'alphas_mixture' (with 'sampling_weights') or modality -> alphas entries")
    return raw, None


def load_alphas_config(path_or_dict: str | os.PathLike | Mapping[str, Any]) -> AlphasConfig:
    """Load and validate an alphas config file, shipped preset name (``mix_mod4_all2all_uni``) or mapping (either
    layout of the module docstring).

    Every modality needs ``input_alphas`` and ``target_alphas`` of the same length K, and
    ``sampling_weights`` (if given) needs K entries with a positive sum. Errors name the file and key.
    """
    if isinstance(path_or_dict, Mapping):
        raw, where = path_or_dict, "<alphas dict>"
    else:
        from egom2p.core.config_files import read_config_file  # imports PyYAML: see the module docstring
        from egom2p.core.presets import resolve_preset

        where = resolve_preset("alphas", path_or_dict).path  # a file, or the name of a shipped alphas config
        raw = read_config_file(where)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping with 'alphas_mixture'")
    mixture, weights = _modality_entries(raw, where)
    prefix = "alphas_mixture." if "alphas_mixture" in raw else ""
    inp: dict[str, tuple[float, ...]] = {}
    tgt: dict[str, tuple[float, ...]] = {}
    for mod in sorted(mixture):
        entry = mixture[mod]
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: '{prefix}{mod}' must be a mapping with input_alphas and target_alphas")
        extra = set(entry) - {"input_alphas", "target_alphas", "keep"}
        if extra:
            raise ValueError(f"{where}: '{prefix}{mod}' has unknown key(s) {sorted(extra)}")
        for key in ("input_alphas", "target_alphas"):
            if key not in entry:
                raise ValueError(f"{where}: '{prefix}{mod}.{key}' is missing")
        inp[mod] = _float_list(entry["input_alphas"], f"{prefix}{mod}.input_alphas", where)
        tgt[mod] = _float_list(entry["target_alphas"], f"{prefix}{mod}.target_alphas", where)
    lengths = {len(v) for v in (*inp.values(), *tgt.values())}
    if len(lengths) != 1:
        raise ValueError(f"{where}: all input_alphas/target_alphas lists must have the same length, got {sorted(lengths)}")
    k = lengths.pop()
    if weights is not None:
        weights = _float_list(weights, "sampling_weights", where)
        if len(weights) != k or sum(weights) <= 0:
            raise ValueError(f"{where}: 'sampling_weights' needs {k} entries with a positive sum, got {list(weights)}")
    return AlphasConfig(input_alphas=inp, target_alphas=tgt, sampling_weights=weights)

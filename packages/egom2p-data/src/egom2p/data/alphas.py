"""Alphas configs: the mixture-of-Dirichlet parameters of the masking (SPEC section 4.1).

File format (the original's)::

    sampling_weights: [1.0, 1.0, 1.0, 1.0]        # optional, one weight per mixture component
    alphas_mixture:
      tok_rgb: {input_alphas: [0.01, 0.1, 1.0, 10.0], target_alphas: [0.01, 0.1, 1.0, 10.0]}
      ...

Files are read with :func:`egom2p.core.modalities.read_config_file` when first needed, so that
``import egom2p.data.masking`` (which imports this module) needs neither PyYAML nor egom2p.core.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["AlphasConfig", "load_alphas_config", "parse_alphas_string"]


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


def parse_alphas_string(value: str | float | int | Sequence[float]) -> tuple[float, ...]:
    """Parse the original's per-dataset ``input_alphas`` form: ``"a"`` or ``"a1-a2-..."`` (or a list)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    if isinstance(value, str):
        try:
            return tuple(float(x) for x in value.split("-"))
        except ValueError:
            raise ValueError(f"alphas string {value!r} is not of the form 'a' or 'a1-a2-...'") from None
    return _float_list(value, "alphas", "<alphas>")


def load_alphas_config(path_or_dict: str | os.PathLike | Mapping[str, Any]) -> AlphasConfig:
    """Load and validate an alphas config file or mapping.

    Every modality needs ``input_alphas`` and ``target_alphas`` of the same length K, and
    ``sampling_weights`` (if given) needs K positive-sum entries. Errors name the file and key.
    """
    if isinstance(path_or_dict, Mapping):
        raw, where = path_or_dict, "<alphas dict>"
    else:
        from egom2p.core.modalities import read_config_file  # imports PyYAML: see the module docstring

        where = os.fspath(path_or_dict)
        raw = read_config_file(where)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping with 'alphas_mixture'")
    unknown = set(raw) - {"sampling_weights", "alphas_mixture"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
    mixture = raw.get("alphas_mixture")
    if not isinstance(mixture, Mapping) or not mixture:
        raise ValueError(f"{where}: 'alphas_mixture' must be a non-empty mapping of modality -> alphas")
    inp: dict[str, tuple[float, ...]] = {}
    tgt: dict[str, tuple[float, ...]] = {}
    for mod in sorted(mixture):
        entry = mixture[mod]
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: 'alphas_mixture.{mod}' must be a mapping")
        extra = set(entry) - {"input_alphas", "target_alphas", "keep"}
        if extra:
            raise ValueError(f"{where}: 'alphas_mixture.{mod}' has unknown key(s) {sorted(extra)}")
        for key in ("input_alphas", "target_alphas"):
            if key not in entry:
                raise ValueError(f"{where}: 'alphas_mixture.{mod}.{key}' is missing")
        inp[mod] = _float_list(entry["input_alphas"], f"alphas_mixture.{mod}.input_alphas", where)
        tgt[mod] = _float_list(entry["target_alphas"], f"alphas_mixture.{mod}.target_alphas", where)
    lengths = {len(v) for v in (*inp.values(), *tgt.values())}
    if len(lengths) != 1:
        raise ValueError(f"{where}: all input_alphas/target_alphas lists must have the same length, got {sorted(lengths)}")
    k = lengths.pop()
    weights = raw.get("sampling_weights")
    if weights is not None:
        weights = _float_list(weights, "sampling_weights", where)
        if len(weights) != k or sum(weights) <= 0:
            raise ValueError(f"{where}: 'sampling_weights' needs {k} entries with a positive sum, got {list(weights)}")
    return AlphasConfig(input_alphas=inp, target_alphas=tgt, sampling_weights=weights)

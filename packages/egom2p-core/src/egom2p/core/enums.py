"""The closed sets of names that several packages accept (config keys, CLI options, model arguments)."""

from __future__ import annotations

from enum import Enum

__all__ = ["AttnBackend", "LossType", "parse_choice"]


class _Choice(str, Enum):
    """A string enum: members compare equal to their values, so YAML and CLI strings work as is."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """The accepted strings, in declaration order."""
        return tuple(m.value for m in cls)

    @classmethod
    def parse(cls, value: object, what: str) -> _Choice:
        """``cls(value)``, or a ``ValueError`` naming ``what`` and the accepted values."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not one of {list(cls.values())}") from None


def parse_choice(enum: type[_Choice], value: object, what: str) -> _Choice:
    """Function form of ``enum.parse`` for callers holding the enum as a value."""
    return enum.parse(value, what)


class LossType(_Choice):
    """How token losses are averaged: per modality, per token, per present modality, or per modality rescaled by
    ln(256) / ln(vocabulary size) (the original's ``weighted_mod``; docs/original-behaviour.md#losses)."""

    MOD = "mod"
    TOKEN = "token"
    MOD_PRESENT = "mod_present"
    WEIGHTED_MOD = "weighted_mod"


class AttnBackend(_Choice):
    """Attention implementations; ``auto`` means Triton on CUDA and SDPA elsewhere."""

    AUTO = "auto"
    REFERENCE = "reference"
    SDPA = "sdpa"
    TRITON = "triton"

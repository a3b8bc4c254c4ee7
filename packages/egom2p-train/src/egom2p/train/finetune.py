"""Fine-tuning: starting from other weights with other modalities, the frozen warm-up, and what trains when.

**Starting weights** (``checkpoint.init_from``, :func:`match_pretrained`): the parameters both models share
are loaded; a modality only this config has keeps its fresh embeddings (initialised as at the start of
training), one only the source has is ignored; any other missing key or shape difference is an error naming
the key and both shapes. (The original's ``--finetune`` loaded non-strictly and silently.)

**Which parameters train** (:class:`TrainablePlan`), as the original's staged training:

* the warm-up (the first ``finetune.frozen_model_epochs`` epochs, or those ``frozen_model_tokens`` make) freezes
  the encoder and decoder blocks and their final norms; the modality embeddings train, as do the mask token and
  the decoder's context projection, which the original's freeze leaves out; ``frozen_embedding_domain`` names
  modalities whose embeddings stay frozen too (the original's meaning: usually the pretrained ones, so that
  only a new modality's embeddings learn);
* then everything trains, at the main schedule;
* with LoRA (``finetune.lora``) only the adapters and the embeddings of the new modalities ever train (the
  base weights stay bit-identical); its warm-up trains only those embeddings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from egom2p.model import is_block_parameter, parameter_modality
from torch import nn

from .config import ConfigError
from .lora import adapter_config, apply_lora, from_peft_names, in_adapter, to_peft_names
from .memory_check import TRAINING_BYTES_PER_PARAM
from .parallel import parameter_name

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = ["Finetuning", "PretrainedMatch", "TrainablePlan", "match_pretrained"]


@dataclass(frozen=True)
class PretrainedMatch:
    """What ``init_from`` brings: the tensors to load and the modalities added or dropped."""

    weights: dict[str, torch.Tensor]  # our names -> the source's tensor
    new_modalities: list[str]  # ours only: fresh embeddings
    dropped_modalities: list[str]  # the source's only: ignored

    def summary(self, source: str) -> str:
        """One line for the log."""
        count = sum(t.numel() for t in self.weights.values())
        return (f"initialised weights from {source}: loaded {len(self.weights)} tensors ({count / 1e6:.2f}M parameters); "
                f"new modalities (fresh embeddings): {', '.join(self.new_modalities) or 'none'}; "
                f"dropped modalities: {', '.join(self.dropped_modalities) or 'none'}")


def match_pretrained(ours: Mapping[str, torch.Size | tuple[int, ...]],
                     theirs: Mapping[str, torch.Tensor]) -> PretrainedMatch:
    """Pair the source's tensors (``theirs``) with our state-dict shapes (``ours``) by name.

    A ValueError names the first key that neither a new nor a dropped modality explains, or whose shapes differ.
    """
    our_mods = {m for m in map(parameter_modality, ours) if m}
    their_mods = {m for m in map(parameter_modality, theirs) if m}
    new, dropped = sorted(our_mods - their_mods), sorted(their_mods - our_mods)
    weights = {}
    for key, shape in ours.items():
        if parameter_modality(key) in new:
            continue
        if key not in theirs:
            raise ValueError(f"'{key}' is missing from the source (it is neither a new modality's nor in the source)")
        if tuple(theirs[key].shape) != tuple(shape):
            raise ValueError(f"'{key}' has shape {list(theirs[key].shape)} in the source and {list(shape)} in this "
                             "model (a modality's vocabulary or the architecture differs)")
        weights[key] = theirs[key]
    extra = sorted(k for k in theirs if k not in ours and parameter_modality(k) not in dropped)
    if extra:
        raise ValueError(f"'{extra[0]}' of the source has no place in this model (the architecture differs)")
    return PretrainedMatch(weights, new, dropped)


@dataclass(frozen=True)
class TrainablePlan:
    """Which parameters train at each step (see the module docstring)."""

    warmup_steps: int = 0  # the frozen warm-up: steps [0, warmup_steps)
    frozen_domains: frozenset[str] = frozenset()  # modalities whose embeddings the warm-up keeps frozen
    lora: bool = False
    new_modalities: frozenset[str] = frozenset()  # under LoRA, the embeddings that train

    def in_warmup(self, step: int) -> bool:
        """Whether optimizer step ``step`` (0-based) belongs to the frozen warm-up."""
        return step < self.warmup_steps

    def trains(self, name: str, step: int) -> bool:
        """Whether parameter ``name`` receives gradients at optimizer step ``step``."""
        name = parameter_name(name)
        modality = parameter_modality(name)
        if self.lora and not (in_adapter(name) or modality in self.new_modalities):
            return False
        if self.in_warmup(step):
            return not is_block_parameter(name) and modality not in self.frozen_domains
        return True

    def apply(self, params: Iterable[tuple[str, torch.nn.Parameter]], step: int) -> bool:
        """Set ``requires_grad`` of every named parameter for ``step``; returns whether anything changed."""
        changed = False
        for name, param in params:
            wanted = self.trains(name, step)
            if param.requires_grad != wanted:
                param.requires_grad_(wanted)
                changed = True
        return changed


class Finetuning:
    """The trainer's fine-tuning state for one model: its LoRA layers, what trains when, and the modalities that
    ``init_from`` added (saved in the training state, so a resume trains the same parameters).

    ``enabled`` is False for recipes other than ``egom2p`` (nothing is frozen, names are left alone).
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, warmup_steps: int, enabled: bool):
        ft, lora = cfg.finetune, cfg.finetune.lora
        self.enabled = enabled
        self.lora_modules: list[str] = []
        self.adapter_config: dict[str, Any] | None = None
        if enabled and lora.rank:
            self.lora_modules = apply_lora(model, lora.rank, lora.alpha, lora.dropout, lora.target_modules, lora.blocks)
            self.adapter_config = adapter_config(lora.rank, lora.alpha, lora.dropout, lora.target_modules, lora.blocks)
        every = frozenset(m for name, _ in model.named_parameters() if (m := parameter_modality(name)))
        # Until init_from or a resume says which modalities are new, every embedding may train (the optimizer's set).
        self.plan = TrainablePlan(warmup_steps, frozenset(ft.frozen_embedding_domain), bool(self.lora_modules), every)

    @property
    def active(self) -> bool:
        """Whether this run freezes anything (a warm-up or LoRA)."""
        return self.enabled and (self.plan.warmup_steps > 0 or bool(self.lora_modules))

    def set_new_modalities(self, names: Iterable[str]) -> None:
        """The modalities the starting weights lacked (under LoRA, the embeddings that train)."""
        self.plan = dataclasses.replace(self.plan, new_modalities=frozenset(names))

    def optimizer_set(self, model: nn.Module) -> None:
        """Mark every parameter that trains in some phase (the optimizer is built over them)."""
        if self.enabled:
            self.plan.apply(model.named_parameters(), self.plan.warmup_steps)

    def apply(self, model: nn.Module, step: int) -> bool:
        """Set what trains at ``step``; whether it changed. Raises ConfigError when nothing would train."""
        if not self.enabled or not self.plan.apply(model.named_parameters(), step):
            return False
        if not any(p.requires_grad for p in model.parameters()):  # only possible in a LoRA warm-up
            raise ConfigError("config key 'finetune.frozen_model_epochs': the frozen warm-up would train nothing: under "
                              "LoRA it trains only the embeddings of modalities that checkpoint.init_from lacks and "
                              "finetune.frozen_embedding_domain does not list; drop the warm-up",
                              "finetune.frozen_model_epochs")
        return True

    def describe(self, model: nn.Module, step: int) -> str:
        """What trains from ``step`` on, and the gradient + AdamW memory it needs against full fine-tuning."""
        total = sum(p.numel() for p in model.parameters())
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        phase = "frozen warm-up (embeddings only)" if self.plan.in_warmup(step) else (
            f"LoRA rank {(self.adapter_config or {}).get('rank')} on {len(self.lora_modules)} layers"
            if self.lora_modules else "all parameters")
        mib = TRAINING_BYTES_PER_PARAM / 2**20
        return (f"step {step}: {phase}: {trained / 1e6:.3f}M of {total / 1e6:.3f}M parameters train "
                f"({100 * trained / max(total, 1):.2f}%); gradients + AdamW state {trained * mib:.1f} MiB "
                f"(all parameters: {total * mib:.1f} MiB)")

    # ------------------------------------------------------------------ names in checkpoints
    def plain_shapes(self, model_state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
        """The model's state-dict shapes under checkpoint names, adapters left out (what ``init_from`` fills)."""
        plain, _ = from_peft_names(model_state) if self.lora_modules else (model_state, {})
        return {k: tuple(v.shape) for k, v in plain.items()}

    def to_model_names(self, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A checkpoint's tensors (plain weights, plus ``<module>.lora_A/B``) under the model's names."""
        return to_peft_names(weights, self.lora_modules) if self.lora_modules else dict(weights)

    def split_for_checkpoint(self, model_state: dict[str, torch.Tensor]
                             ) -> tuple[dict[str, torch.Tensor], tuple[dict[str, torch.Tensor], dict[str, Any]] | None]:
        """The model's full state as (plain weights, (adapter tensors, adapter config) or None)."""
        if not self.lora_modules:
            return model_state, None
        plain, adapter = from_peft_names(model_state)
        return plain, (adapter, dict(self.adapter_config or {}))

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint remembers: the new modalities."""
        return {"new_modalities": sorted(self.plan.new_modalities) if self.lora_modules else []}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (an older checkpoint without it: no new modalities)."""
        if self.lora_modules:
            self.set_new_modalities(state.get("new_modalities", []))

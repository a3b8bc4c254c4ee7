"""egom2p.core: the contracts every egom2p package shares, each defined here and nowhere else.

- :mod:`egom2p.core.modalities`: the one ``ModalitySpec`` and the modality-file loader; :mod:`egom2p.core.presets`:
  the configs shipped inside the wheels and the one name-or-path rule (``--modalities egom2p``).
- :mod:`egom2p.core.config_files`: the one reader of config files (YAML or JSON, read as data only).
- :mod:`egom2p.core.layout`: the shard layout (names, sample keys, pattern grammar, folder lists, folder ->
  modality map, a dataset's shards under a root); :mod:`egom2p.core.shards`: the npz/npy codec, tar reader and
  writer; :mod:`egom2p.core.pairing`: the one paired reader of a shard's folders; :mod:`egom2p.core.sources`:
  a data source (shard pattern or root folder) as shard URLs.
- :mod:`egom2p.core.enums`: loss types and attention backends; :mod:`egom2p.core.errors`: core's exceptions.
- :mod:`egom2p.core.batch`: the batch contract and its validator (needs torch, which every package
  that builds batches brings; importing ``egom2p.core`` itself does not import torch);
  :mod:`egom2p.core.packing`: the packed batch (``PackedBatch``) and the token-selection rule (needs torch).
- :mod:`egom2p.core.checkpoints`: checkpoint files (safetensors + config.json directories, the path rules,
  the safe ``torch.load``), for models and tokenizers alike (the ``[torch]`` extra); :mod:`egom2p.core.hub`:
  Hugging Face Hub ids and uploads (the ``[hub]`` extra); :mod:`egom2p.core.atomic`: durable file writes.
"""

from egom2p.core.config_files import read_config_file
from egom2p.core.enums import AttnBackend, LossType
from egom2p.core.errors import ShardError
from egom2p.core.layout import expand_folders, expand_shard_pattern
from egom2p.core.modalities import RELEASED_MODALITIES, ModalitySpec, load_modality_specs
from egom2p.core.shards import decode_tokens, encode_tokens

__version__ = "0.1.0"

__all__ = [
    "AttnBackend",
    "LossType",
    "ModalitySpec",
    "RELEASED_MODALITIES",
    "ShardError",
    "__version__",
    "decode_tokens",
    "encode_tokens",
    "expand_folders",
    "expand_shard_pattern",
    "load_modality_specs",
    "read_config_file",
]

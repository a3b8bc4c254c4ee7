"""egom2p.generate: any-to-any sampling for EgoM2P (ROAR, MaskGIT, schedules, guidance).

Token-level eval tasks live in `egom2p.generate.tasks` (`run_eval_task`).
"""

from .infer import generate_shards
from .sampler import GenerationSampler
from .sampling import sample_tokens, top_k_top_p_filtering
from .schedule import build_generation_schedule

__version__ = "0.1.0"

__all__ = ["GenerationSampler", "__version__", "build_generation_schedule", "generate_shards", "sample_tokens", "top_k_top_p_filtering"]

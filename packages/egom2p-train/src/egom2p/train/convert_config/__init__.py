"""``egom2p-convert config ORIGINAL.yaml --out DIR``: the original EgoM2P's training configs in our layout.

The original trainer reads one flat YAML of argparse defaults (docs/original-behaviour.md#training-recipe) whose
``data_config`` names a data config (#data-config) whose datasets name alphas configs (#alphas-files).
:func:`translate` reads the three and gives our train config tree, our data config and copies of the alphas files
(our format is the original's), with the same meaning: every original key is either carried to its key in our
tree (values converted: hyphen strings to lists, ``'auto'`` run names expanded, the original's code default
written where ours differs) or reported as not carried, one line ``key: value: why``; a line whose reason starts
with ``differs:`` marks a setting our trainer cannot reproduce. Keys neither trainer knows are reported too, never
dropped. The original reads a val entry's ``data_path`` as a root folder (``<root>/<folder>/<dataset>/``): it
becomes ``data_root``, ours for a root (our ``data_path`` is a shard pattern only).

The original's global batch is ``batch_size x accum_iter x GPUs``: it changes with the GPU count. With
``--world-size N`` (the GPU count of the original run) it becomes ``schedule.global_batch_size``, and our
trainer derives ``accum_iter`` on any GPU count; without it ``accum_iter`` is carried and the global batch
keeps growing with the GPU count, as in the original.

The result is checked by loading it with :func:`egom2p.train.config.load_config` (and, with ``--world-size``,
by deriving the schedule) before anything is written; a mistake is one line naming the original file and key.

The modules, one job each: :mod:`.result` (what a translation holds), :mod:`.original` (the original's defaults
and reading its files), :mod:`.main_keys` and :mod:`.schedule_keys` (the main config's keys), :mod:`.data_keys`
(the data config and its alphas files), :mod:`.translate` (the three together), :mod:`.output` (checking,
writing and reporting) and :mod:`.cli` (the command line).
"""

from __future__ import annotations

from egom2p.train.convert_config.cli import main
from egom2p.train.convert_config.original import ORIGINAL_DEFAULTS
from egom2p.train.convert_config.output import check, write_translation
from egom2p.train.convert_config.result import ConversionError, Translation
from egom2p.train.convert_config.translate import translate

__all__ = ["ORIGINAL_DEFAULTS", "ConversionError", "Translation", "check", "main", "translate", "write_translation"]

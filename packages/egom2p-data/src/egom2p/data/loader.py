"""Training and validation loaders over token shards (docs/original-behaviour.md#data-pipeline, with its
quirks 15/16 fixed: docs/original-behaviour.md#quirks).

Training: per rank and dataloader worker, every dataset is the original's webdataset pipeline (docs/original-behaviour.md#data-pipeline):
an infinite stream of resampled shards (a shard drawn with replacement, its samples read in tar order) ->
a shuffle buffer of ``wds_shuffle_buffer_tar`` samples -> decode -> each sample ``wds_n_repeats`` times in a
row -> a shuffle buffer of ``wds_shuffle_buffer_repeat`` samples (:class:`~egom2p.data.shuffle.ShuffleBuffer`,
webdataset's algorithm), so samples mix across shard boundaries. Each batch draws a dataset per sample by
the mixture weights, masks each dataset's samples with that dataset's modalities, alphas and budgets
(batched), fills the global modalities a dataset lacks (zeros, both masks True) and yields the batch
contract. The stream is unbounded: the trainer counts steps.

Memory per (dataset, worker): the shard being read (whole, as read from disk or S3), at most
``wds_shuffle_buffer_tar`` undecoded samples (their bytes as stored) and at most
``wds_shuffle_buffer_repeat`` decoded samples, kept in the narrowest integer type of their vocabulary
(uint16 for the released 64k vocabularies: 2 x 5120 + 2 x 30 tokens = 20.6 KB per sample, 21 MB per
1000-sample buffer; repeats of a sample share one copy).

Resuming: ``state_dict()`` holds the position, exactly, with any number of workers. A stream's state is
its RNG states, shard draw and offset per dataset, and the contents of both shuffle buffers as (shard draw,
index in shard) references; the shards they name are re-read (one at a time) and skipped into. With
``num_workers=0`` the loader holds the one stream's state. With workers, torchdata's ``StatefulDataLoader``
runs one stream per worker: each worker sends its stream's state with every batch, the loader keeps the
state of the batches handed out (not of those prefetched), and ``load_state_dict`` gives each new worker its
stream back. The state is plain Python types and tensors (``torch.load(weights_only=True)`` reads it).
Only a changed ``num_workers`` cannot resume exactly: the loader then continues on fresh seeds (a new
``generation``, logged), so nothing is replayed.

Bad data (corrupt or truncated tar, a modality's file missing, wrong shape, token outside the vocabulary:
:func:`egom2p.data.samples.decode_sample`, the check ``egom2p-data validate`` runs) is skipped, counted in
``loader.stats`` (the rank's totals over all workers) and logged to the ``egom2p.data`` logger; past
``max_bad_fraction`` of the rank's samples (checked from 50 samples on) a :class:`BadDataError` stops training,
raised in the training process whatever the number of workers. Samples are decoded as they leave the first
shuffle buffer, so ``stats["samples"]`` runs ahead of the samples batched so far.

S3 reads retry transient errors for ``train.s3_retry_seconds`` (default ``$EGOM2P_S3_RETRY_SECONDS``, else
300 s) before a shard counts as bad (:func:`egom2p.core.shards.open_url`).
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import signal
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, NamedTuple

import numpy as np
import torch
from egom2p.core.errors import ShardError
from egom2p.core.modalities import ModalitySpec
from egom2p.core.pairing import iter_folder_samples, read_shard
from egom2p.core.shards import open_url
from egom2p.data.config import DataConfig, DatasetConfig
from egom2p.data.masking import UnifiedMasking
from egom2p.data.samples import SampleProblem, decode_sample
from egom2p.data.shuffle import ShuffleBuffer
from torchdata.stateful_dataloader import StatefulDataLoader

__all__ = ["BadDataError", "build_train_loader", "build_val_loaders", "check_bad_data", "TrainLoader", "ValLoader"]


class BadDataError(RuntimeError):
    """The training stream holds more bad data than ``max_bad_fraction`` allows, or gives no usable sample.

    A loader worker's exception reaches the training process re-created by the DataLoader with the worker's
    traceback in its message; only the reason (its last line) is kept, so the trainer can say it in one line.
    """

    def __init__(self, message: str) -> None:
        last = message.strip().splitlines()[-1] if message.strip() else message
        super().__init__(last.split(f"{type(self).__name__}: ", 1)[-1])

logger = logging.getLogger("egom2p.data")
MIN_SAMPLES_FOR_BAD_CHECK = 50
MAX_FRUITLESS_DRAWS = 100  # a dataset whose shards all fail stops the run even with max_bad_fraction=1
TokenSample = dict[str, np.ndarray]  # modality -> one sample's token array
RawSample = dict[str, tuple[str, bytes]]  # modality -> (member name, bytes)
Opener = Callable[[str], IO[bytes]]


def _new_stats() -> dict[str, Any]:
    return {"samples": 0, "skipped_samples": 0, "shards_read": 0, "skipped_shards": 0, "by_reason": {}}


def _merge_stats(into: dict[str, Any], delta: Mapping[str, Any]) -> None:
    for key in ("samples", "skipped_samples", "shards_read", "skipped_shards"):
        into[key] += delta[key]
    for reason, n in delta["by_reason"].items():
        into["by_reason"][reason] = into["by_reason"].get(reason, 0) + n


def check_bad_data(stats: Mapping[str, Any], max_bad_fraction: float, last: str = "") -> None:
    """Raise :class:`BadDataError` when ``stats`` (a rank's totals) hold more bad data than ``max_bad_fraction``
    allows: of the samples seen (from 50 on), or of the shards read (from 10 on; any 10 before a good sample)."""
    seen = stats["samples"] + stats["skipped_samples"]
    bad = stats["skipped_samples"]
    if seen >= MIN_SAMPLES_FOR_BAD_CHECK and bad > max_bad_fraction * seen:
        raise BadDataError(
            f"{bad} of {seen} samples were bad (max_bad_fraction={max_bad_fraction}); "
            f"reasons: {stats['by_reason']}. See the 'egom2p.data' log for shards and keys."
        )
    read, bad = stats["shards_read"], stats["skipped_shards"]
    if (read >= 10 and bad > max_bad_fraction * read) or (bad >= 10 and stats["samples"] == 0):
        raise BadDataError(f"{bad} of {read} shards could not be read (max_bad_fraction={max_bad_fraction})"
                           + (f"; last: {last}" if last else "; see the 'egom2p.data' log"))


class _BadData:
    """Counts skipped data into ``stats``; ``enforce`` checks ``max_bad_fraction`` on them at once (a
    worker's counters are deltas: the loader checks the rank's totals instead)."""

    def __init__(self, stats: dict[str, Any], max_bad_fraction: float, enforce: bool = True) -> None:
        self.stats = stats
        self.max_bad_fraction = max_bad_fraction
        self.enforce = enforce

    def good(self) -> None:
        self.stats["samples"] += 1

    def bad_sample(self, reason: str, where: str, detail: str) -> None:
        self.stats["skipped_samples"] += 1
        self.stats["by_reason"][reason] = self.stats["by_reason"].get(reason, 0) + 1
        logger.warning("skipping sample %s (%s): %s", where, reason, detail)
        if self.enforce:
            check_bad_data(self.stats, self.max_bad_fraction)

    def bad_shard(self, url: str, detail: str) -> None:
        self.stats["skipped_shards"] += 1
        self.stats["by_reason"]["corrupt_shard"] = self.stats["by_reason"].get("corrupt_shard", 0) + 1
        logger.warning("skipping shard %s: %s", url, detail)
        if self.enforce:
            check_bad_data(self.stats, self.max_bad_fraction, f"{url}: {detail}")


def _decode_sample(
    key: str, url: str, raw: Mapping[str, tuple[str, bytes]], modalities: tuple[str, ...],
    specs: Mapping[str, ModalitySpec], bad: _BadData,
) -> TokenSample | None:
    """Decode and validate one sample; on a problem count it and return None."""
    result = decode_sample(raw, modalities, specs)
    if isinstance(result, SampleProblem):
        bad.bad_sample(result.reason, f"{url}:{key}", result.detail)
        return None
    bad.good()
    return result


def _ignore_stop_signals(_worker_id: int) -> None:
    """Loader workers ignore SIGTERM / SIGINT: torchrun and SLURM signal the whole process group, and a
    worker killed by it would end the trainer before the trainer's own handler writes its checkpoint."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _by_modality(raw: Mapping[str, tuple[str, bytes]], folders: Mapping[str, str]) -> RawSample:
    """A sample read by folder, keyed by modality name (folders of no modality are dropped)."""
    return {folders[f]: member for f, member in raw.items() if f in folders}


def _opener(retry_seconds: float | None) -> Opener:
    """:func:`open_url` with the data config's S3 retry time."""
    return functools.partial(open_url, retry_seconds=retry_seconds)


def _read_samples(url: str, folders: Mapping[str, str], opener: Opener = open_url) -> list[tuple[str, RawSample]]:
    """One shard URL (local or ``s3://``) as ``[(key, {modality: (member, bytes)})]``, its folders paired by key
    with core's ``union`` policy (a key some folder lacks is a sample missing that modality, counted as bad)."""
    return [(key, _by_modality(raw, folders)) for key, raw in read_shard(url, opener, policy="union")]


def _check_modalities(cfg: DatasetConfig, specs: Mapping[str, ModalitySpec]) -> None:
    missing = [m for m in cfg.modalities if m not in specs]
    if missing:
        raise ValueError(f"dataset '{cfg.name}' uses modalities {missing} that are not in the modality set {sorted(specs)}")


def _masking_for(cfg: DatasetConfig, specs: Mapping[str, ModalitySpec]) -> UnifiedMasking:
    return UnifiedMasking.from_config(
        {m: specs[m] for m in cfg.modalities}, cfg.in_domains, cfg.out_domains, cfg.num_input_tokens, cfg.num_target_tokens,
        alphas_config=cfg.alphas_config, input_alphas=cfg.input_alphas, target_alphas=cfg.target_alphas,
        min_input_tokens=cfg.min_input_tokens, min_target_tokens=cfg.min_target_tokens, enforce_domains=cfg.enforce_domains,
    )


def _seed(*parts: int) -> int:
    """A 63-bit seed derived from integer parts (seed, rank, worker, generation, dataset, ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _compact_dtype(vocab_size: int) -> np.dtype:
    """The narrowest integer type holding every token id below ``vocab_size`` (buffers hold many samples)."""
    for dtype in (np.uint8, np.uint16, np.int32):
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


class _Entry(NamedTuple):
    """A sample in flight: where it comes from (shard draw, index in that shard) and its data."""

    draw: int
    index: int
    url: str
    key: str
    data: Any  # RawSample before decoding, TokenSample after


_SHARD_DRAW, _SHUFFLE = 0, 1  # seed tags of one stream's random sources


class _DatasetStream:
    """One dataset's infinite sample stream for one (rank, worker): the original's pipeline (module docstring)."""

    def __init__(self, cfg: DatasetConfig, specs: Mapping[str, ModalitySpec], seed_parts: tuple[int, ...], bad: _BadData,
                 opener: Opener = open_url) -> None:
        self.cfg = cfg
        self.opener = opener
        self.specs = specs
        self.urls = cfg.shard_urls(specs)
        self.folders = cfg.folder_modalities(specs)
        self.seed_parts = seed_parts
        self.bad = bad
        self.dtypes = {m: _compact_dtype(specs[m].vocab_size) for m in cfg.modalities}
        self.draw = -1  # index of the shard draw in progress
        self.offset = 0  # samples of that draw already read
        self._fruitless_draws = 0  # consecutive shard draws that gave no usable sample
        self._url = ""
        self._samples: list[tuple[str, RawSample]] = []
        self._known_bad: set[str] = set()  # shards that failed to read in this process
        self._rng = np.random.default_rng(_seed(*seed_parts, _SHUFFLE))
        self._tar_buffer: ShuffleBuffer[_Entry] = ShuffleBuffer(cfg.wds_shuffle_buffer_tar, self._rng)
        self._repeat_buffer: ShuffleBuffer[_Entry] = ShuffleBuffer(cfg.wds_shuffle_buffer_repeat, self._rng)
        self._repeating: _Entry | None = None  # the decoded sample being repeated ...
        self._repeats_left = 0  # ... and how many more times

    def _shard_url(self, draw: int) -> str:
        rng = np.random.default_rng(_seed(*self.seed_parts, _SHARD_DRAW, draw))
        return self.urls[int(rng.integers(len(self.urls)))]

    def _load(self, draw: int) -> None:
        self._url = self._shard_url(draw)
        self.bad.stats["shards_read"] += 1
        if self._url in self._known_bad:
            # Reported once already: resampling draws it again, but it neither re-reads nor re-counts, so one
            # broken shard in a long run stays one skipped shard.
            self._samples = []
            return
        try:
            self._samples = _read_samples(self._url, self.folders, self.opener)
        except (ShardError, OSError, ValueError) as exc:
            self._samples = []
            self._known_bad.add(self._url)
            self.bad.bad_shard(self._url, str(exc))

    def _next_raw(self) -> _Entry:
        """The next sample of the resampled shards, in tar order (webdataset's ResampledShards + tar reading)."""
        while self.draw < 0 or self.offset >= len(self._samples):
            self._fruitless_draws += 1
            if self._fruitless_draws > MAX_FRUITLESS_DRAWS:
                raise BadDataError(f"dataset '{self.cfg.name}': {MAX_FRUITLESS_DRAWS} shard draws in a row gave no "
                                   f"usable sample (last shard {self._url}); check {self.cfg.source_key} "
                                   f"{self.cfg.source}")
            self.draw += 1
            self.offset = 0
            self._load(self.draw)
        key, raw = self._samples[self.offset]
        self.offset += 1
        return _Entry(self.draw, self.offset - 1, self._url, key, raw)

    def _decode(self, entry: _Entry, bad: _BadData) -> _Entry | None:
        sample = _decode_sample(entry.key, entry.url, entry.data, self.cfg.modalities, self.specs, bad)
        if sample is None:
            return None
        return entry._replace(data={m: a.astype(self.dtypes[m]) for m, a in sample.items()})

    def _next_repeated(self) -> _Entry:
        """Decoded samples, each ``wds_n_repeats`` times in a row (bad ones skipped)."""
        if self._repeats_left == 0:
            decoded = None
            while decoded is None:
                decoded = self._decode(self._tar_buffer.pull(self._next_raw), self.bad)
            self._fruitless_draws = 0
            self._repeating, self._repeats_left = decoded, self.cfg.wds_n_repeats
        self._repeats_left -= 1
        return self._repeating

    def next(self) -> TokenSample:
        """The next training sample (int64 token arrays by modality)."""
        entry = self._repeat_buffer.pull(self._next_repeated)
        return {m: a.astype(np.int64) for m, a in entry.data.items()}

    def state(self) -> dict[str, Any]:
        """The position: shard draw and offset, shuffle RNG and buffer contents as [draw, index] references."""
        refs = lambda entries: [[e.draw, e.index] for e in entries]  # noqa: E731
        return {
            "draw": self.draw, "offset": self.offset, "shuffle_rng": copy.deepcopy(self._rng.bit_generator.state),
            "tar_buffer": refs(self._tar_buffer.items), "repeat_buffer": refs(self._repeat_buffer.items),
            "repeating": refs([self._repeating] if self._repeats_left else []), "repeats_left": self._repeats_left,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state`: re-read the shard in progress and the shards the buffers refer to."""
        self.draw, self.offset = int(state["draw"]), int(state["offset"])
        self._rng.bit_generator.state = copy.deepcopy(state["shuffle_rng"])
        if self.draw >= 0:
            self._load(self.draw)
        raw = self._reread({(int(d), int(i)) for part in ("tar_buffer", "repeat_buffer", "repeating") for d, i in state[part]})
        scratch = _BadData(_new_stats(), 1.0)  # these samples were counted when first decoded
        decoded = {ref: self._decode(e, scratch) for ref, e in raw.items()}

        def rebuild(part: str, table: Mapping[tuple[int, int], _Entry | None]) -> list[_Entry]:
            entries = [table.get((int(d), int(i))) for d, i in state[part]]
            return [e for e in entries if e is not None]

        self._tar_buffer.items = rebuild("tar_buffer", raw)
        self._repeat_buffer.items = rebuild("repeat_buffer", decoded)
        repeating = rebuild("repeating", decoded)
        self._repeating = repeating[0] if repeating else None
        self._repeats_left = int(state["repeats_left"]) if repeating else 0

    def _reread(self, refs: set[tuple[int, int]]) -> dict[tuple[int, int], _Entry]:
        """The raw samples at ``refs``, reading each shard draw once; a shard that now fails is logged, its samples lost."""
        out = {}
        for draw in sorted({d for d, _ in refs}):
            url = self._shard_url(draw)
            try:
                samples = self._samples if draw == self.draw else _read_samples(url, self.folders, self.opener)
            except (ShardError, OSError, ValueError) as exc:
                logger.warning("resume: shard %s could not be re-read, its buffered samples are dropped: %s", url, exc)
                continue
            for d, i in refs:
                if d == draw and i < len(samples):
                    out[(d, i)] = _Entry(d, i, url, *samples[i])
        return out


def _collate(
    groups: Mapping[int, list[int]], masked: Mapping[int, Mapping[str, Mapping[str, torch.Tensor]]],
    specs: Mapping[str, ModalitySpec], batch_size: int,
) -> dict[str, dict[str, torch.Tensor]]:
    """Assemble per-dataset masked groups into one batch with every global modality present."""
    batch = {}
    for name, spec in specs.items():
        tensor = torch.zeros(batch_size, spec.num_tokens, dtype=torch.int64)
        input_mask = torch.ones(batch_size, spec.num_tokens, dtype=torch.bool)
        target_mask = torch.ones(batch_size, spec.num_tokens, dtype=torch.bool)
        for ds, rows in groups.items():
            if name in masked[ds]:
                idx = torch.tensor(rows)
                tensor[idx] = masked[ds][name]["tensor"]
                input_mask[idx] = masked[ds][name]["input_mask"]
                target_mask[idx] = masked[ds][name]["target_mask"]
        batch[name] = {"tensor": tensor, "input_mask": input_mask, "target_mask": target_mask}
    return batch


class _Plan(NamedTuple):
    """What a rank's batch streams are built from (small: it is what each loader worker gets)."""

    config: DataConfig
    modalities: Mapping[str, ModalitySpec]
    maskings: list[UnifiedMasking]
    batch_size: int
    seed: int
    rank: int
    generation: int


class _TrainStream:
    """The batch stream of one (rank, worker, generation)."""

    def __init__(self, plan: _Plan, worker: int, bad: _BadData) -> None:
        self.plan = plan
        cfg = plan.config
        self.names = list(cfg.train)
        weights = np.asarray(cfg.weights, dtype=np.float64)
        self.p = weights / weights.sum()
        base = (plan.seed, plan.rank, worker, plan.generation)
        self.bad = bad
        opener = _opener(cfg.s3_retry_seconds)
        self.rng = np.random.default_rng(_seed(*base))
        self.streams = [_DatasetStream(cfg.train[n], plan.modalities, (*base, i), bad, opener) for i, n in enumerate(self.names)]
        self.mask_gens = [torch.Generator().manual_seed(_seed(*base, i, 1)) for i in range(len(self.names))]

    def state(self) -> dict[str, Any]:
        return {
            "mixture_rng": copy.deepcopy(self.rng.bit_generator.state),
            "datasets": {n: s.state() for n, s in zip(self.names, self.streams)},
            "mask_rng": {n: g.get_state().clone() for n, g in zip(self.names, self.mask_gens)},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = copy.deepcopy(state["mixture_rng"])
        for n, s, g in zip(self.names, self.streams, self.mask_gens):
            s.restore(state["datasets"][n])
            g.set_state(state["mask_rng"][n])

    def next_batch(self) -> dict[str, dict[str, torch.Tensor]]:
        plan = self.plan
        choice = self.rng.choice(len(self.names), size=plan.batch_size, p=self.p)
        groups: dict[int, list[int]] = {}
        for row, ds in enumerate(choice.tolist()):
            groups.setdefault(ds, []).append(row)
        masked = {}
        for ds, rows in groups.items():
            samples = [self.streams[ds].next() for _ in rows]
            tensors = {m: torch.from_numpy(np.stack([s[m] for s in samples])) for m in self.streams[ds].cfg.modalities}
            masked[ds] = plan.maskings[ds].mask_batch(tensors, self.mask_gens[ds])
        return _collate(groups, masked, plan.modalities, plan.batch_size)


class _WorkerDataset(torch.utils.data.IterableDataset):
    """One stream per loader worker, yielding ``(batch, stats delta)``; stateful for ``StatefulDataLoader``.

    ``state_dict()`` is called in the worker right after a batch is produced, so it is the position after
    that batch; ``load_state_dict()`` comes before ``iter()`` in a restored worker.
    """

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self._stream: _TrainStream | None = None
        self._pending: Mapping[str, Any] | None = None

    def __iter__(self) -> Iterator[tuple[dict, dict]]:
        info = torch.utils.data.get_worker_info()
        stats = _new_stats()
        # Counters are sent as per-batch deltas; the loader enforces max_bad_fraction on the rank's totals.
        self._stream = _TrainStream(self.plan, info.id if info is not None else 0,
                                    _BadData(stats, self.plan.config.max_bad_fraction, enforce=False))
        if self._pending is not None:
            self._stream.restore(self._pending)
            self._pending = None
        return self._batches(self._stream, stats)

    @staticmethod
    def _batches(stream: _TrainStream, stats: dict[str, Any]) -> Iterator[tuple[dict, dict]]:
        while True:
            batch = stream.next_batch()
            delta = copy.deepcopy(stats)
            stats.update(_new_stats())
            yield batch, delta

    def state_dict(self) -> dict[str, Any] | None:
        """The worker stream's position (None before it started)."""
        return self._stream.state() if self._stream is not None else self._pending

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Continue from :meth:`state_dict` at the next ``iter()``."""
        self._pending = state


class TrainLoader:
    """Infinite iterable of training batches for one rank (see the module docstring)."""

    def __init__(
        self, config: DataConfig, modalities: Mapping[str, ModalitySpec], batch_size: int, rank: int = 0,
        world_size: int = 1, num_workers: int = 0, seed: int = 0,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.config = config
        self.modalities = {n: modalities[n] for n in sorted(modalities)}
        for cfg in config.train.values():
            _check_modalities(cfg, self.modalities)
        self.maskings = [_masking_for(config.train[n], self.modalities) for n in config.train]
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.num_workers, self.seed = num_workers, seed
        self.generation = 0
        self.batches = 0
        self.stats = _new_stats()
        self._stream: _TrainStream | None = None  # num_workers == 0
        self._workers: StatefulDataLoader | None = None  # num_workers > 0 ...
        self._worker_iter: Iterator[tuple[dict, dict]] | None = None  # ... and its one iterator
        self._pending: Mapping[str, Any] | None = None  # a restored position not yet running

    def _plan(self) -> _Plan:
        return _Plan(self.config, self.modalities, self.maskings, self.batch_size, self.seed, self.rank, self.generation)

    def __iter__(self) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
        """Batches from the current position; a second ``iter()`` continues, it never restarts the stream."""
        if self.num_workers == 0:
            if self._stream is None:
                self._stream = _TrainStream(self._plan(), 0, _BadData(self.stats, self.config.max_bad_fraction))
                if self._pending is not None:
                    self._stream.restore(self._pending)
                    self._pending = None
            stream = self._stream
            while True:
                batch = stream.next_batch()
                self.batches += 1
                yield batch
        else:
            if self._worker_iter is None:
                self._start_workers()
            for batch, delta in self._worker_iter:
                _merge_stats(self.stats, delta)
                check_bad_data(self.stats, self.config.max_bad_fraction)
                self.batches += 1
                yield batch

    def _start_workers(self) -> None:
        with warnings.catch_warnings():  # torchdata 0.11 calls an API torch deprecated; nothing for users to do
            warnings.filterwarnings("ignore", message=".*set_vital.*")
            self._workers = StatefulDataLoader(_WorkerDataset(self._plan()), batch_size=None, num_workers=self.num_workers,
                                               worker_init_fn=_ignore_stop_signals)
            if self._pending is not None:
                self._workers.load_state_dict(self._pending)
                self._pending = None
            self._worker_iter = iter(self._workers)

    def state_dict(self) -> dict[str, Any]:
        """The stream position after the batches consumed so far (plain types and tensors)."""
        if self.num_workers == 0:
            stream = self._stream.state() if self._stream is not None else self._pending
        else:
            stream = self._workers.state_dict() if self._workers is not None else self._pending
        return {"seed": self.seed, "rank": self.rank, "generation": self.generation, "batches": self.batches,
                "num_workers": self.num_workers, "stats": copy.deepcopy(self.stats), "stream": copy.deepcopy(stream)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`: exactly when ``num_workers`` is unchanged, else on fresh seeds."""
        if int(state["rank"]) != self.rank or int(state["seed"]) != self.seed:
            raise ValueError(f"loader state is for rank {state['rank']} / seed {state['seed']}, not rank {self.rank} / seed {self.seed}")
        self._stream = self._workers = self._worker_iter = None  # a running stream (and its workers) is dropped
        self.batches = int(state["batches"])
        self.stats = copy.deepcopy(state["stats"])
        saved_workers = int(state.get("num_workers", 0))
        if saved_workers == self.num_workers:
            self.generation = int(state["generation"])
            self._pending = state.get("stream")
        else:
            self.generation = int(state["generation"]) + 1  # never replay: continue on new seeds
            self._pending = None
            logger.warning("loader state was saved with num_workers=%d, now %d: the data streams continue on fresh "
                           "seeds (generation %d), not exactly where they stopped", saved_workers, self.num_workers,
                           self.generation)


def build_train_loader(
    config: DataConfig, modalities: Mapping[str, ModalitySpec], batch_size: int, rank: int = 0, world_size: int = 1,
    num_workers: int = 0, seed: int = 0,
) -> TrainLoader:
    """The infinite training loader of one rank (see :class:`TrainLoader`); budgets come from ``config``."""
    return TrainLoader(config, modalities, batch_size, rank, world_size, num_workers, seed)


class ValLoader:
    """Finite validation batches of one dataset for one rank: sample i goes to rank ``i % world_size``."""

    def __init__(self, cfg: DatasetConfig, modalities: Mapping[str, ModalitySpec], masking: UnifiedMasking, batch_size: int,
                 rank: int, world_size: int, seed: int, max_bad_fraction: float, fill_missing_modalities: bool,
                 s3_retry_seconds: float | None = None) -> None:
        self.cfg, self.modalities, self.masking = cfg, modalities, masking
        self.opener = _opener(s3_retry_seconds)
        self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed
        self.max_bad_fraction = max_bad_fraction
        self.fill_missing_modalities = fill_missing_modalities
        self.stats = _new_stats()

    def _raw_samples(self) -> Iterator[tuple[str, str, RawSample]]:
        folders = self.cfg.folder_modalities(self.modalities)
        # A pattern, or under a root (the released config's val roots) the training layout's tars, local or s3://
        # (union: a tar only some folders hold is read and counted as a bad shard, not silently dropped), else
        # the original's per-file layout (local).
        urls = self.cfg.shard_urls(self.modalities, files=True)
        if not urls:
            root = str(self.cfg.data_root)
            for key, raw in iter_folder_samples(root, self.cfg.name, self.cfg.own_folders(self.modalities)):
                yield key, os.path.join(root, self.cfg.name), _by_modality(raw, folders)
            return
        bad = _BadData(self.stats, self.max_bad_fraction)
        for url in urls:
            self.stats["shards_read"] += 1
            try:
                samples = _read_samples(url, folders, self.opener)
            except (ShardError, OSError, ValueError) as exc:
                bad.bad_shard(url, str(exc))
                continue
            for key, raw in samples:
                yield key, url, raw

    def _emit(self, samples: list[TokenSample], gen: torch.Generator) -> dict[str, dict[str, torch.Tensor]]:
        tensors = {m: torch.from_numpy(np.stack([s[m] for s in samples])) for m in self.cfg.modalities}
        masked = self.masking.mask_batch(tensors, gen)
        if not self.fill_missing_modalities:
            return masked
        return _collate({0: list(range(len(samples)))}, {0: masked}, self.modalities, len(samples))

    def __iter__(self) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
        self.stats = _new_stats()
        bad = _BadData(self.stats, self.max_bad_fraction)
        gen = torch.Generator().manual_seed(_seed(self.seed, self.rank))
        pending: list[TokenSample] = []
        for i, (key, where, raw) in enumerate(self._raw_samples()):
            if i % self.world_size != self.rank:
                continue
            sample = _decode_sample(key, where, raw, self.cfg.modalities, self.modalities, bad)
            if sample is None:
                continue
            pending.append(sample)
            if len(pending) == self.batch_size:
                yield self._emit(pending, gen)
                pending = []
        if pending:
            yield self._emit(pending, gen)


def build_val_loaders(
    config: DataConfig, modalities: Mapping[str, ModalitySpec], batch_size: int, rank: int = 0, world_size: int = 1,
    seed: int = 0, fill_missing_modalities: bool = False,
) -> dict[str, ValLoader]:
    """One finite, seeded validation loader per val dataset (every sample read once across ranks).

    Each dataset is masked with its own budgets from ``config`` (the train entry's, unless overridden).

    As in the original, a val batch holds only the dataset's own modalities unless
    ``fill_missing_modalities`` (then every global modality is present, absent ones fully masked).
    """
    specs = {n: modalities[n] for n in sorted(modalities)}
    loaders = {}
    for i, (name, cfg) in enumerate(config.val.items()):
        _check_modalities(cfg, specs)
        masking = _masking_for(cfg, specs)
        loaders[name] = ValLoader(cfg, specs, masking, batch_size, rank, world_size, _seed(seed, i),
                                  config.max_bad_fraction, fill_missing_modalities, config.s3_retry_seconds)
    return loaders

"""Shuffle buffers as in the original (issue 13): webdataset's algorithm, the original's pipeline order, sizes
from the data config, bounded memory, and exact resume with samples in the buffers."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
import torch
from data_reference_wds import reference_pipeline, wds_shuffle
from egom2p.data import build_train_loader, load_data_config
from egom2p.data.loader import _SHUFFLE, _BadData, _DatasetStream, _decode_sample, _new_stats, _read_samples, _seed
from egom2p.data.shuffle import ShuffleBuffer

NAMES = ["tok_cam", "tok_depth", "tok_gaze", "tok_rgb"]


def demo_config(root, full=None, nogaze=None):
    """Both demo datasets (3 shards of 16 samples each) with the given extra dataset keys."""
    common = {"input_alphas": "1.0", "target_alphas": "1.0"}
    return load_data_config({"train": {
        "datasets": {
            "synth_full": {"in_domains": NAMES, "out_domains": NAMES, **common, **(full or {}),
                           "data_path": f"{root}/train/[cam,depth,gaze,rgb]/synth_full/shard-{{000000..000002}}.tar"},
            "synth_nogaze": {"in_domains": "tok_cam-tok_depth-tok_rgb", "out_domains": "tok_cam-tok_depth-tok_rgb", **common,
                             **(nogaze or {}),
                             "data_path": f"{root}/train/[cam,depth,rgb]/synth_nogaze/shard-{{000000..000002}}.tar"},
        },
        "num_input_tokens": 40, "num_target_tokens": 30}})


def stream(cfg, tiny, name="synth_full") -> _DatasetStream:
    return _DatasetStream(cfg.train[name], tiny, (3, 0, 0, 0, 0), _BadData(_new_stats(), 0.1))


def refs(s: _DatasetStream, n: int) -> list[tuple[int, int]]:
    """The next n samples of a stream as (shard draw, index in shard)."""
    out = []
    for _ in range(n):
        e = s._repeat_buffer.pull(s._next_repeated)
        out.append((e.draw, e.index))
    return out


@pytest.mark.parametrize("size", [0, 1, 2, 5, 100, 250])
def test_shuffle_buffer_is_webdatasets(size):
    ours = ShuffleBuffer(size, np.random.default_rng(size))
    upstream = itertools.count()
    got = []
    for _ in range(600):
        got.append(ours.pull(lambda: next(upstream)))
        assert len(ours.items) <= max(size, 1)  # the memory bound
    expected = list(itertools.islice(wds_shuffle(itertools.count(), size, np.random.default_rng(size)), 600))
    assert got == expected
    if size <= 1:
        assert got == list(range(600))  # 0 and 1: no shuffling


@pytest.mark.parametrize("sizes", [(0, 0, 2), (1, 3, 1), (20, 7, 2), (40, 100, 4), (1000, 1000, 1)])
def test_stream_is_the_original_pipeline(demo, tiny, sizes):
    """Resampled shards -> shuffle(tar) -> decode -> repeat -> shuffle(repeat), composed as webdataset does."""
    tar, repeat, n = sizes
    cfg = demo_config(demo, full={"wds_shuffle_buffer_tar": tar, "wds_shuffle_buffer_repeat": repeat, "wds_n_repeats": n})
    ours = stream(cfg, tiny)
    entry = cfg.train["synth_full"]
    scratch = _BadData(_new_stats(), 1.0)

    def shard_samples(draw):
        url = ours._shard_url(draw)
        return [(draw, i, url, key, raw) for i, (key, raw) in enumerate(_read_samples(url, ours.folders))]

    def decode(sample):
        draw, i, url, key, raw = sample
        ok = _decode_sample(key, url, raw, entry.modalities, tiny, scratch) is not None
        return (draw, i) if ok else None

    rng = np.random.default_rng(_seed(*ours.seed_parts, _SHUFFLE))
    expected = list(itertools.islice(reference_pipeline(shard_samples, decode, n, tar, repeat, rng), 400))
    got = refs(ours, 400)
    assert got == expected
    if (tar, repeat) == (0, 0):  # in tar order, each sample n times in a row
        assert got[:4] == [(0, 0), (0, 0), (0, 1), (0, 1)]
    if tar > 16:  # a buffer larger than a shard mixes samples of several shards from the start
        assert len({d for d, _ in got[:16]}) > 1
    assert len(ours._tar_buffer.items) <= max(tar, 1) and len(ours._repeat_buffer.items) <= max(repeat, 1)


def same(a, b):
    return all(torch.equal(x[m][k], y[m][k]) for x, y in zip(a, b) for m in x for k in x[m])


@pytest.mark.parametrize("stop", [2, 9])  # while the buffers fill, and once both are full
def test_exact_resume_with_samples_in_the_buffers(demo, tiny, stop):
    cfg = demo_config(demo, full={"wds_shuffle_buffer_tar": 20, "wds_shuffle_buffer_repeat": 9, "wds_n_repeats": 3},
                      nogaze={"wds_shuffle_buffer_tar": 5, "wds_shuffle_buffer_repeat": 30})
    kw = dict(batch_size=6, seed=8)
    loader = build_train_loader(cfg, tiny, **kw)
    it = iter(loader)
    [next(it) for _ in range(stop)]
    state = json.loads(json.dumps(loader.state_dict(), default=lambda t: t.tolist()))  # survives a round trip
    state["stream"]["mask_rng"] = {k: torch.tensor(v, dtype=torch.uint8) for k, v in state["stream"]["mask_rng"].items()}
    full = state["stream"]["datasets"]["synth_full"]
    assert full["tar_buffer"] and full["repeat_buffer"]  # the resume has buffered samples to rebuild ...
    if stop == 9:
        assert len(full["tar_buffer"]) == 19 and len({d for d, _ in full["tar_buffer"]}) > 1  # full (20 minus the one just taken), from several shards
    expected = [next(it) for _ in range(8)]
    resumed = build_train_loader(cfg, tiny, **kw)
    resumed.load_state_dict(state)
    assert same([next(iter(resumed)) for _ in range(8)], expected)


def test_resume_survives_a_shard_that_can_no_longer_be_read(demo, tiny, tmp_path, caplog):
    """A buffered sample whose shard fails on resume is dropped with a warning; the stream goes on."""
    root = tmp_path / "copy"
    shutil.copytree(demo, root)
    cfg = demo_config(root, full={"wds_shuffle_buffer_tar": 40, "wds_shuffle_buffer_repeat": 0})
    loader = build_train_loader(cfg, tiny, batch_size=4, seed=1)
    it = iter(loader)
    [next(it) for _ in range(3)]
    state = loader.state_dict()
    full = state["stream"]["datasets"]["synth_full"]
    old = [d for d, _ in full["tar_buffer"] if d != full["draw"]]
    assert old, "the buffer should hold samples of a shard that is no longer being read"
    url = loader._stream.streams[0]._shard_url(old[0])
    for folder in ("cam", "depth", "gaze", "rgb"):
        path = url.replace("[cam,depth,gaze,rgb]", folder)
        open(path, "wb").write(b"junk")
    resumed = build_train_loader(cfg, tiny, batch_size=4, seed=1)
    resumed.load_state_dict(state)
    batches = [next(iter(resumed)) for _ in range(3)]
    assert list(batches[-1]) == NAMES
    assert any("could not be re-read" in r.getMessage() for r in caplog.records)

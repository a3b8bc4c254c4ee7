"""webdataset is the tar engine; the stateful pipeline is ours. The same shards, written by our writer, read through
webdataset's own pipeline (``webdataset.WebDataset``, one per modality folder) and through our readers and loaders
give the same samples, keys and bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import webdataset
from egom2p.core.layout import expand_folders, expand_shard_pattern
from egom2p.core.modalities import load_modality_specs
from egom2p.core.shards import read_tar_members
from egom2p.data import build_train_loader, build_val_loaders, load_data_config
from egom2p.data.shards import write_shards

FOLDERS = {"cam": ((8,), np.int16), "depth": ((2, 4, 4), np.int64), "rgb": ((2, 4, 4), np.uint8)}
SAMPLES, PER_SHARD = 13, 5  # three shards: 5, 5 and 3 samples


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """``(pattern, {folder: arrays})``: a dataset of three folders and three shards, written by ``write_shards``."""
    rng = np.random.default_rng(7)
    arrays = {f: rng.integers(0, 64, (SAMPLES, *shape)).astype(dtype) for f, (shape, dtype) in FOLDERS.items()}
    pattern = write_shards(tmp_path_factory.mktemp("wds"), "ds", arrays, samples_per_shard=PER_SHARD)
    return pattern, arrays


def folder_urls(pattern: str, folder: str) -> list[str]:
    return [expand_folders(url)[folder] for url in expand_shard_pattern(pattern)]


def webdataset_samples(urls: list[str]) -> list[dict]:
    """webdataset's own pipeline (shard list -> URL opener -> tar iterator -> grouping by key), in shard order."""
    return list(webdataset.WebDataset(urls, shardshuffle=False))


def test_webdataset_reads_our_shards_as_our_reader_does(written):
    pattern, arrays = written
    keys = [f"sample-{i:08d}" for i in range(SAMPLES)]
    for folder in FOLDERS:
        urls = folder_urls(pattern, folder)
        theirs = webdataset_samples(urls)
        assert [s["__key__"] for s in theirs] == keys
        assert [s["__url__"] for s in theirs] == [urls[i // PER_SHARD] for i in range(SAMPLES)]
        assert all(sorted(k for k in s if not k.startswith("__")) == ["npz"] for s in theirs)
        ours = [member for url in urls for member in read_tar_members(url)]
        assert ours == [(s["__key__"], "npz", s["npz"]) for s in theirs]  # keys, extensions and bytes alike
        for i, sample in enumerate(theirs):  # and the bytes hold what was written, in its dtype
            with np.load(io.BytesIO(sample["npz"]), allow_pickle=False) as npz:
                assert npz["arr_0"].dtype == arrays[folder].dtype and np.array_equal(npz["arr_0"], arrays[folder][i])


def test_pipe_sources_read_through_our_reader_as_through_webdataset(written):
    pattern, _ = written
    url = folder_urls(pattern, "rgb")[1]
    piped = f"pipe:cat '{url}'"
    theirs = webdataset_samples([piped])
    assert read_tar_members(piped) == read_tar_members(url) == [(s["__key__"], "npz", s["npz"]) for s in theirs]
    assert [s["__key__"] for s in theirs] == [f"sample-{i:08d}" for i in range(PER_SHARD, 2 * PER_SHARD)]


def token_rows(pattern: str) -> dict[str, list[torch.Tensor]]:
    """Per modality, webdataset's samples decoded as flat int64 token rows (the batch layout), in shard order."""
    return {f"tok_{folder}": [torch.from_numpy(np.load(io.BytesIO(s["npz"]))["arr_0"].astype(np.int64)).flatten()
                              for s in webdataset_samples(folder_urls(pattern, folder))] for folder in FOLDERS}


def loader_config(pattern: str):
    domains = "-".join(f"tok_{f}" for f in FOLDERS)
    return load_data_config({
        "train": {"datasets": {"ds": {"in_domains": domains, "out_domains": domains, "input_alphas": "1.0",
                                      "target_alphas": "1.0", "data_path": pattern, "wds_shuffle_buffer_tar": 4,
                                      "wds_shuffle_buffer_repeat": 4}},
                  "num_input_tokens": 12, "num_target_tokens": 12},
        "val": {"datasets": {"ds": {"data_path": pattern}}},
    })


def test_our_loaders_yield_webdatasets_samples(written, repo_root):
    pattern, _ = written
    specs = load_modality_specs("tiny")
    expected = token_rows(pattern)
    config = loader_config(pattern)
    # Validation reads every sample once, in shard order: the same rows as webdataset's, one for one.
    val = list(build_val_loaders(config, specs, batch_size=4)["ds"])
    for modality, rows in expected.items():
        assert torch.equal(torch.cat([batch[modality]["tensor"] for batch in val]), torch.stack(rows))
    # Training resamples shards and shuffles: each sample it yields is one of webdataset's, all folders paired.
    whole = {tuple(torch.cat([expected[m][i] for m in sorted(expected)]).tolist()) for i in range(SAMPLES)}
    loader = iter(build_train_loader(config, specs, batch_size=6))
    seen = set()
    for _ in range(6):
        batch = next(loader)
        for row in range(6):
            sample = tuple(torch.cat([batch[m]["tensor"][row] for m in sorted(expected)]).tolist())
            assert sample in whole
            seen.add(sample)
    assert len(seen) > SAMPLES // 2  # many different samples, not one repeated

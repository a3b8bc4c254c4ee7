"""Loaders: batch contract, mixture with missing modalities, exact resume, bad data, validation splits."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
from egom2p.data import build_train_loader, build_val_loaders, load_data_config
from egom2p.data.shards import write_shards

NAMES = ["tok_cam", "tok_depth", "tok_gaze", "tok_rgb"]


def demo_config(repo_root, root, nogaze_extra=None, **train_extra):
    alphas = "mix_mod4_all2all_uni"  # a shipped preset, by name
    return load_data_config({
        "train": {
            "datasets": {
                "synth_full": {"in_domains": "tok_cam-tok_depth-tok_gaze-tok_rgb", "out_domains": NAMES, "alphas_config": alphas,
                               "data_path": f"{root}/train/[cam,depth,gaze,rgb]/synth_full/shard-{{000000..000002}}.tar"},
                "synth_nogaze": {"in_domains": ["tok_cam", "tok_depth", "tok_rgb"], "out_domains": ["tok_cam", "tok_depth", "tok_rgb"],
                                 "alphas_config": alphas, "wds_n_repeats": 2,
                                 "data_path": f"{root}/train/[cam,depth,rgb]/synth_nogaze/shard-{{000000..000002}}.tar",
                                 **(nogaze_extra or {})},
            },
            "weights": [0.5, 0.5],
            "num_input_tokens": 40,
            "num_target_tokens": 30,
            **train_extra,
        },
        "val": {"datasets": {"synth_full": {"data_path": f"{root}/val/[cam,depth,gaze,rgb]/synth_full/shard-{{000000..000001}}.tar"}}},
    })


def take(it, n):
    return [next(it) for _ in range(n)]


def same(a, b):
    return all(torch.equal(x[m][k], y[m][k]) for x, y in zip(a, b) for m in x for k in x[m])


def test_batches_follow_the_contract(repo_root, demo, tiny):
    loader = build_train_loader(demo_config(repo_root, demo), tiny, batch_size=6)
    for batch in take(iter(loader), 8):
        assert list(batch) == NAMES
        n_in = sum((~batch[m]["input_mask"]).sum(1) for m in NAMES)
        n_tg = sum((~batch[m]["target_mask"]).sum(1) for m in NAMES)
        assert (n_in <= 40).all() and (n_tg <= 30).all()
        for m in NAMES:
            d = batch[m]
            assert d["tensor"].dtype == torch.int64 and d["tensor"].shape == (6, tiny[m].num_tokens)
            assert not (~d["input_mask"] & ~d["target_mask"]).any()
            assert d["tensor"].max() < tiny[m].vocab_size
        # Samples of the gaze-less dataset carry an all-masked, all-zero gaze entry.
        # (synth gaze is never all zeros, so zero rows are exactly the filled ones).
        absent = (batch["tok_gaze"]["tensor"] == 0).all(1)
        assert batch["tok_gaze"]["input_mask"][absent].all() and batch["tok_gaze"]["target_mask"][absent].all()
    # The shuffle buffers read ahead: at least the 48 samples batched were decoded, none was bad.
    assert loader.stats["samples"] >= 48 and loader.stats["skipped_samples"] == 0


def test_each_dataset_is_masked_with_its_own_budget(repo_root, demo, tiny):
    cfg = demo_config(repo_root, demo, nogaze_extra={"num_input_tokens": 12, "num_target_tokens": 10})
    assert cfg.max_input_tokens == 40 and cfg.max_target_tokens == 30
    batches = take(iter(build_train_loader(cfg, tiny, batch_size=16)), 4)
    nogaze = torch.cat([b["tok_gaze"]["tensor"].sum(1) == 0 for b in batches])  # the synth gaze is never all zeros
    n_in = torch.cat([sum((~b[m]["input_mask"]).sum(1) for m in NAMES) for b in batches])
    n_tg = torch.cat([sum((~b[m]["target_mask"]).sum(1) for m in NAMES) for b in batches])
    assert nogaze.any() and (~nogaze).any()
    assert (n_in[nogaze] <= 12).all() and (n_tg[nogaze] <= 10).all()
    assert (n_in[~nogaze] > 12).any() and (n_tg[~nogaze] > 10).any()


def test_mixture_uses_both_datasets(repo_root, demo, tiny):
    loader = build_train_loader(demo_config(repo_root, demo), tiny, batch_size=16)
    rows = torch.cat([b["tok_gaze"]["tensor"].sum(1) == 0 for b in take(iter(loader), 10)])
    assert 0.3 < rows.double().mean().item() < 0.7  # the synth gaze is never all zeros


def test_a_data_root_reads_the_shards_its_pattern_names(repo_root, demo, tiny):
    """data_root: the tars under <root>/<folder>/<dataset>/ in the folders of the dataset's modalities (train and val)
    are the shards the equivalent pattern names, so the batches are the same."""
    by_pattern = demo_config(repo_root, demo)

    def as_root(splits, split):
        return {n: dataclasses.replace(d, data_path=None, data_root=f"{demo}/{split}") for n, d in splits.items()}

    by_root = dataclasses.replace(by_pattern, train=as_root(by_pattern.train, "train"), val=as_root(by_pattern.val, "val"))
    for split in ("train", "val"):
        for name, dataset in getattr(by_root, split).items():
            assert dataset.shard_urls(tiny) == getattr(by_pattern, split)[name].shard_urls(tiny)
    kw = dict(batch_size=4, seed=1)
    assert same(take(iter(build_train_loader(by_pattern, tiny, **kw)), 3), take(iter(build_train_loader(by_root, tiny, **kw)), 3))
    val = [list(build_val_loaders(cfg, tiny, batch_size=4)["synth_full"]) for cfg in (by_pattern, by_root)]
    assert len(val[0]) == 6 and same(*val)


def test_same_seed_same_stream_and_ranks_differ(repo_root, demo, tiny):
    cfg = demo_config(repo_root, demo)
    kw = dict(batch_size=4)
    a = take(iter(build_train_loader(cfg, tiny, seed=1, **kw)), 5)
    b = take(iter(build_train_loader(cfg, tiny, seed=1, **kw)), 5)
    c = take(iter(build_train_loader(cfg, tiny, seed=1, rank=1, world_size=2, **kw)), 5)
    assert same(a, b) and not same(a, c)


def test_exact_resume_without_workers(repo_root, demo, tiny):
    cfg = demo_config(repo_root, demo)
    kw = dict(batch_size=5, seed=4)
    loader = build_train_loader(cfg, tiny, **kw)
    it = iter(loader)
    take(it, 13)  # crosses several shard boundaries (16 samples per shard, repeats in one dataset)
    state = json.loads(json.dumps(loader.state_dict(), default=lambda t: t.tolist()))  # survives a round trip
    state["stream"]["mask_rng"] = {k: torch.tensor(v, dtype=torch.uint8) for k, v in state["stream"]["mask_rng"].items()}
    expected = take(it, 6)
    resumed = build_train_loader(cfg, tiny, **kw)
    resumed.load_state_dict(state)
    assert same(take(iter(resumed), 6), expected)
    assert resumed.state_dict()["batches"] == 19


def torch_round_trip(state, tmp_path):
    """The loader state as the trainer stores it: torch.save, then torch.load(weights_only=True)."""
    torch.save(state, tmp_path / "loader.pt")
    return torch.load(tmp_path / "loader.pt", weights_only=True)


def test_exact_resume_with_workers(repo_root, demo, tiny, tmp_path):
    """Issue 12: two workers, killed after k batches and resumed, give the uninterrupted run's batches."""
    cfg = demo_config(repo_root, demo)
    kw = dict(batch_size=5, seed=7, num_workers=2)
    reference = take(iter(build_train_loader(cfg, tiny, **kw)), 12)
    loader = build_train_loader(cfg, tiny, **kw)
    first = take(iter(loader), 5)  # an odd count: worker 1 is one batch behind worker 0, both ahead by prefetching
    first += take(iter(loader), 2)  # a second iter() continues
    state = torch_round_trip(loader.state_dict(), tmp_path)
    del loader  # its workers stop, as when the run is killed
    resumed = build_train_loader(cfg, tiny, **kw)
    resumed.load_state_dict(state)
    rest = take(iter(resumed), 5)
    assert same(first + rest, reference)
    assert resumed.state_dict()["batches"] == 12 and resumed.state_dict()["generation"] == 0
    assert resumed.stats["samples"] >= 60 and resumed.stats["skipped_samples"] == 0


def test_changed_worker_count_resumes_on_fresh_seeds(repo_root, demo, tiny, caplog):
    cfg = demo_config(repo_root, demo)
    loader = build_train_loader(cfg, tiny, batch_size=4, num_workers=2)
    first = take(iter(loader), 3)
    resumed = build_train_loader(cfg, tiny, batch_size=4, num_workers=1)
    with caplog.at_level(logging.WARNING, logger="egom2p.data"):
        resumed.load_state_dict(loader.state_dict())
    again = take(iter(resumed), 3)
    assert not same(first, again) and resumed.state_dict()["generation"] == 1
    assert any("num_workers=2, now 1" in r.getMessage() for r in caplog.records)


def test_val_reads_each_sample_once_across_ranks(repo_root, demo, tiny):
    cfg = demo_config(repo_root, demo)
    seen = []
    for rank in range(2):
        [(name, loader)] = build_val_loaders(cfg, tiny, batch_size=4, rank=rank, world_size=2).items()
        batches = list(loader)
        assert name == "synth_full" and list(batches[0]) == NAMES
        seen += [tuple(t.tolist()) for b in batches for t in b["tok_rgb"]["tensor"]]
        again = list(loader)
        assert same(batches, again)  # finite and seeded: the same masks on every pass
    assert len(seen) == 21 and len(set(seen)) == 21


def test_val_folder_layout(repo_root, tiny, tmp_path):
    """The original's val tree: <root>/<folder>/<dataset>/<key>.npz."""
    for folder, shape in (("rgb", (2, 4, 4)), ("cam", (8,))):
        d = tmp_path / folder / "toy"
        d.mkdir(parents=True)
        for i in range(3):
            np.savez_compressed(d / f"s{i}.npz", np.full(shape, i))
    cfg = load_data_config({"train": {"datasets": {"toy": {"in_domains": "tok_rgb-tok_cam", "out_domains": "tok_rgb-tok_cam",
                                                           "input_alphas": "1.0", "target_alphas": "1.0", "data_path": "x.tar"}},
                                      "num_input_tokens": 10, "num_target_tokens": 10},
                            "val": {"datasets": {"toy": {"data_root": str(tmp_path)}}}})
    [batch] = list(build_val_loaders(cfg, tiny, batch_size=8)["toy"])
    assert sorted(batch) == ["tok_cam", "tok_rgb"] and batch["tok_cam"]["tensor"][:, 0].tolist() == [0, 1, 2]


def make_bad_dataset(root, good=60):
    rgb = np.random.default_rng(0).integers(0, 63, (good, 2, 4, 4))
    cam = np.random.default_rng(1).integers(0, 63, (good, 8))
    rgb[3, 0, 0, 0] = 999                      # outside the vocabulary
    rgb_list = list(rgb)
    rgb_list[5] = np.zeros((3, 3), dtype=np.int64)   # wrong shape
    write_shards(root, "bad", {"rgb": rgb_list, "cam": cam}, samples_per_shard=good)
    write_shards(root / "short", "bad", {"rgb": rgb[:2]}, samples_per_shard=2)   # a tar lacking cam: missing modality
    (root / "rgb/bad/shard-000001.tar").write_bytes(b"not a tar at all" * 10)   # corrupt shard
    (root / "cam/bad/shard-000001.tar").write_bytes(b"junk")


def bad_config(root, frac):
    return load_data_config({"train": {"datasets": {"bad": {
        "in_domains": "tok_rgb-tok_cam", "out_domains": "tok_rgb-tok_cam", "input_alphas": "1.0", "target_alphas": "1.0",
        "data_path": f"{root}/[rgb,cam]/bad/shard-{{000000..000001}}.tar"}},
        "max_bad_fraction": frac, "num_input_tokens": 20, "num_target_tokens": 20}})


def test_bad_data_is_skipped_counted_and_logged(tmp_path, tiny, caplog):
    make_bad_dataset(tmp_path)
    loader = build_train_loader(bad_config(tmp_path, 0.5), tiny, batch_size=10)
    with caplog.at_level(logging.WARNING, logger="egom2p.data"):
        take(iter(loader), 12)
    stats = loader.stats
    assert stats["by_reason"]["bad_tokens"] >= 2  # a token outside the vocabulary, a wrong shape
    assert stats["skipped_shards"] >= 1 and stats["by_reason"]["corrupt_shard"] == stats["skipped_shards"]
    assert any("shard-000000.tar:sample-00000003" in r.getMessage() for r in caplog.records)
    assert any("shard-000001.tar" in r.getMessage() for r in caplog.records)
    assert any("outside the vocabulary [0, 64)" in r.getMessage() for r in caplog.records)
    assert any("tok_rgb has shape (3, 3)" in r.getMessage() for r in caplog.records)


def test_missing_modality_file_is_skipped(tmp_path, tiny):
    rgb = np.random.default_rng(0).integers(0, 63, (4, 2, 4, 4))
    write_shards(tmp_path, "m", {"rgb": rgb, "cam": np.zeros((4, 8), dtype=np.int64)})
    write_shards(tmp_path / "tmp", "m", {"cam": np.zeros((3, 8), dtype=np.int64)})
    (tmp_path / "tmp/cam/m/shard-000000.tar").replace(tmp_path / "cam/m/shard-000000.tar")  # cam lacks the last key
    cfg = load_data_config({"train": {"datasets": {"m": {"in_domains": "tok_rgb-tok_cam", "out_domains": "tok_rgb-tok_cam",
        "input_alphas": "1.0", "target_alphas": "1.0", "data_path": f"{tmp_path}/[rgb,cam]/m/shard-000000.tar",
        "wds_shuffle_buffer_tar": 0, "wds_shuffle_buffer_repeat": 0}},  # in order: keys 0 1 2 (3) 0 1 2
        "num_input_tokens": 8, "num_target_tokens": 8}})
    loader = build_train_loader(cfg, tiny, batch_size=6)
    take(iter(loader), 1)
    assert loader.stats["by_reason"] == {"missing_modality": 1} and loader.stats["samples"] == 6


def test_too_much_bad_data_raises(tmp_path, tiny):
    make_bad_dataset(tmp_path)
    loader = build_train_loader(bad_config(tmp_path, 0.0), tiny, batch_size=10)
    with pytest.raises(RuntimeError, match="max_bad_fraction=0.0"):
        take(iter(loader), 20)


def test_max_bad_fraction_holds_across_workers(tmp_path, tiny):
    """Issue 16: 23% bad samples with 2 workers stop the run with the clear error (in the training process)."""
    rng = np.random.default_rng(0)
    rgb, cam = rng.integers(0, 63, (100, 2, 4, 4)), rng.integers(0, 63, (100, 8))
    rgb[rng.permutation(100)[:23], 0, 0, 0] = 999  # outside the vocabulary
    write_shards(tmp_path, "bad", {"rgb": rgb, "cam": cam}, samples_per_shard=25)
    cfg = load_data_config({"train": {"datasets": {"bad": {
        "in_domains": "tok_rgb-tok_cam", "out_domains": "tok_rgb-tok_cam", "input_alphas": "1.0", "target_alphas": "1.0",
        "data_path": f"{tmp_path}/[rgb,cam]/bad/shard-{{000000..000003}}.tar", "wds_shuffle_buffer_tar": 10,
        "wds_shuffle_buffer_repeat": 10}}, "max_bad_fraction": 0.1, "num_input_tokens": 20, "num_target_tokens": 20}})
    loader = build_train_loader(cfg, tiny, batch_size=4, num_workers=2)
    with pytest.raises(RuntimeError, match=r"^\d+ of \d+ samples were bad \(max_bad_fraction=0.1\)"):
        take(iter(loader), 60)
    seen = loader.stats["samples"] + loader.stats["skipped_samples"]
    assert seen >= 50 and loader.stats["by_reason"] == {"bad_tokens": loader.stats["skipped_samples"]}


def test_second_iter_continues_instead_of_restarting(repo_root, demo, tiny):
    cfg = demo_config(repo_root, demo)
    kw = dict(batch_size=4, seed=2)
    loader = build_train_loader(cfg, tiny, **kw)
    first = take(iter(loader), 2)
    second = take(iter(loader), 2)  # e.g. a trainer's next "epoch" loop
    reference = take(iter(build_train_loader(cfg, tiny, **kw)), 4)
    assert same(first + second, reference)


def test_dataset_without_any_readable_shard_stops(tmp_path, tiny):
    (tmp_path / "rgb/dead").mkdir(parents=True)
    (tmp_path / "rgb/dead/shard-000000.tar").write_bytes(b"junk")
    cfg = load_data_config({"train": {"datasets": {"dead": {
        "in_domains": "tok_rgb", "out_domains": "tok_rgb", "input_alphas": "1.0", "target_alphas": "1.0",
        "data_path": f"{tmp_path}/[rgb]/dead/shard-000000.tar"}}, "max_bad_fraction": 1.0,
        "num_input_tokens": 8, "num_target_tokens": 8}})
    loader = build_train_loader(cfg, tiny, batch_size=2)
    with pytest.raises(RuntimeError, match="could not be read|no usable sample"):
        next(iter(loader))

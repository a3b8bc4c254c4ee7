"""Data configs: budgets in one place, strict keys with dotted names, relative paths, the shipped files,
and every original key with the original's meaning or a rejection that says why (issue 13)."""

from __future__ import annotations

import logging

import pytest
import torch
from egom2p.core.presets import preset_file
from egom2p.data.config import (
    CHECKED_KEYS,
    DATASET_KEYS,
    NO_EFFECT_KEYS,
    PATH_KEYS,
    TRAIN_KEYS,
    TRAIN_ONLY_KEYS,
    VAL_KEYS,
    DataKeyError,
    data_config_from_tree,
    data_config_keys,
    load_data_config,
    override_data_key,
    read_data_tree,
)
from egom2p.data.loader import _masking_for


def entry(**extra):
    return {"in_domains": "tok_rgb-tok_cam", "out_domains": ["tok_rgb", "tok_cam"], "input_alphas": "1.0",
            "target_alphas": "1.0", "data_path": "x.tar", **extra}


def config(datasets, val=None, **train):
    raw = {"train": {"datasets": datasets, **train}}
    if val is not None:
        raw["val"] = {"datasets": val}
    return raw


def test_train_level_budgets_are_the_default_and_a_dataset_overrides_them():
    cfg = load_data_config(config({"a": entry(), "b": entry(num_input_tokens=64, min_target_tokens=3)},
                                  val={"a": {"data_path": "v.tar"}, "b": {"num_target_tokens": 8}, "c": entry()},
                                  num_input_tokens=16, num_target_tokens=12))
    budgets = lambda d: (d.num_input_tokens, d.num_target_tokens)  # noqa: E731
    assert budgets(cfg.train["a"]) == (16, 12) and budgets(cfg.train["b"]) == (64, 12)
    assert cfg.train["b"].min_target_tokens == 3 and cfg.train["a"].min_input_tokens is None
    # Val entries: their own budgets, else the train-level ones, as the original (not their train entry's).
    assert budgets(cfg.val["a"]) == (16, 12) and budgets(cfg.val["b"]) == (16, 8) and budgets(cfg.val["c"]) == (16, 12)
    assert cfg.val["b"].min_target_tokens is None
    assert cfg.max_input_tokens == 64 and cfg.max_target_tokens == 12


def test_budgets_without_a_train_level_default():
    cfg = load_data_config(config({"a": entry(num_input_tokens=5, num_target_tokens=7),
                                   "b": entry(num_input_tokens=9, num_target_tokens=2)}))
    assert (cfg.max_input_tokens, cfg.max_target_tokens) == (9, 7)
    with pytest.raises(ValueError, match=r"'train.datasets.b.num_target_tokens' is missing: set it here or 'train.num_target_tokens'"):
        load_data_config(config({"a": entry(num_input_tokens=5, num_target_tokens=7), "b": entry(num_input_tokens=9)}))


@pytest.mark.parametrize(
    "raw, message",
    [
        (config({"a": entry(colour="red")}, num_input_tokens=4, num_target_tokens=4),
         r"'train.datasets.a.colour' is not a known key; known keys: "),
        (config({"a": entry(num_input_token=4)}, num_input_tokens=4, num_target_tokens=4),
         r"'train.datasets.a.num_input_token' is not a known key; did you mean 'num_input_tokens'\?"),
        (config({"a": entry()}, num_input_tokens=4, num_target_tokens=4, wieghts=[1]),
         r"'train.wieghts' is not a known key; did you mean 'weights'\?"),
        ({**config({"a": entry()}, num_input_tokens=4, num_target_tokens=4), "vall": {}},
         r"'vall' is not a known key; did you mean 'val'\?"),
        (config({"a": entry()}, val={"a": {"data_pth": "v.tar"}}, num_input_tokens=4, num_target_tokens=4),
         r"'val.datasets.a.data_pth' is not a known key; did you mean 'data_path'\?"),
        (config({"a": entry(in_domains=3)}, num_input_tokens=4, num_target_tokens=4), r"'train.datasets.a.in_domains' must be"),
        (config({"a": entry()}, num_input_tokens=0, num_target_tokens=4), r"'train.num_input_tokens' must be an integer >= 1"),
        (config({"a": entry(min_input_tokens=5)}, num_input_tokens=4, num_target_tokens=4),
         r"'train.datasets.a.min_input_tokens' is 5, more than num_input_tokens = 4"),
        (config({"a": entry()}, val={"a": {"num_input_tokens": 5}}, num_input_tokens=4, num_target_tokens=4),
         r"'val.datasets.a.num_input_tokens' is 5, more than the largest training budget 4"),
        (config({"a": entry()}, num_input_tokens=4, num_target_tokens=4, weights=[1, 2]), r"'train.weights' must be 1"),
        (config({"a": entry(data_path="")}, num_input_tokens=4, num_target_tokens=4), r"'train.datasets.a.data_path' must be"),
        (config({"a": {"in_domains": "tok_rgb", "out_domains": "tok_rgb", "data_path": "x.tar"}}, num_input_tokens=4,
                num_target_tokens=4), r"'train.datasets.a' needs 'alphas_config'"),
    ],
)
def test_mistakes_name_the_source_and_the_dotted_key(raw, message):
    with pytest.raises(ValueError, match=r"^configs/train/x.yaml: data: " + message):
        load_data_config(raw, where="configs/train/x.yaml: data")


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("train:\n  datasets:\n    a: {in_domains: tok_rgb, out_domains: tok_rgb, input_alphas: '1', "
                    "target_alphas: '1', data_path: x.tar, num_input_tokens: 4, num_target_tokens: 4, colur: red}\n")
    with pytest.raises(ValueError, match=rf"^{path}: 'train.datasets.a.colur' is not a known key"):
        load_data_config(path)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_data_config(tmp_path / "nope.yaml")


def test_key_lists():
    assert set(CHECKED_KEYS).isdisjoint(DATASET_KEYS) and set(NO_EFFECT_KEYS).isdisjoint(DATASET_KEYS)
    assert set(PATH_KEYS) <= set(DATASET_KEYS) and set(TRAIN_ONLY_KEYS) <= set(DATASET_KEYS)
    assert {"num_input_tokens", "num_target_tokens", "min_input_tokens", "datasets", "weights"} <= set(TRAIN_KEYS)
    assert VAL_KEYS == ("datasets",)


def test_relative_paths(repo_root, tmp_path):
    cfg = load_data_config(config({"a": entry(data_path="d/[rgb]/a/s.tar", alphas_config="al.yaml", input_alphas=None,
                                              target_alphas=None)},
                                  num_input_tokens=4, num_target_tokens=4), base_dir=tmp_path)
    assert cfg.train["a"].data_path == f"{tmp_path}/d/[rgb]/a/s.tar" and cfg.train["a"].alphas_config == f"{tmp_path}/al.yaml"
    cfg = load_data_config(config({"a": entry(data_path="s3://b/[rgb]/a/s.tar")}, num_input_tokens=4, num_target_tokens=4))
    assert cfg.train["a"].data_path == "s3://b/[rgb]/a/s.tar"


def test_shipped_configs(repo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a shipped config named by itself: its relative paths against the working directory
    demo = load_data_config("demo")
    assert demo.train["synth_full"].data_path.startswith(f"{tmp_path}/data/demo/train/")
    assert demo.train["synth_full"].alphas_config == preset_file("alphas", "demo_rgb2all_all2all")
    assert demo.val["synth_nogaze"].modalities == ("tok_cam", "tok_depth", "tok_rgb")
    # The budgets the demo trains with (they were the trainer's num_input_tokens / num_target_tokens).
    assert (demo.max_input_tokens, demo.max_target_tokens) == (40, 40)
    assert all((d.num_input_tokens, d.num_target_tokens) == (40, 40) for d in (*demo.train.values(), *demo.val.values()))
    released = load_data_config(repo_root / "configs/data/egom2p-released.yaml")
    assert len(released.train) == 8 and len(released.val) == 6 and released.weights[2] == pytest.approx(0.49349421)
    assert {(d.num_input_tokens, d.num_target_tokens, d.min_input_tokens) for d in released.train.values()} == {(2048, 2048, None)}
    assert released.train["hot3d_quest"].out_domains == ("tok_depth", "tok_cam")
    assert released.train["holoassist"].wds_n_repeats == 4


# -- one test per key of the original's data config (docs/original-behaviour.md#data-config) ---------------------------

SPECS = {"tok_cam": 30, "tok_depth": 300, "tok_rgb": 300}
ONE = {"train": {"num_input_tokens": 64, "num_target_tokens": 64}}


def one(**extra):
    """A config with one train dataset 'a' (cam, depth, rgb) and the given dataset keys."""
    entry = {"in_domains": "tok_rgb-tok_cam-tok_depth", "out_domains": "tok_rgb-tok_cam-tok_depth", "data_path": "x.tar",
             "input_alphas": "1.0", "target_alphas": "1.0", **extra}
    entry = {k: v for k, v in entry.items() if v is not ...}
    return {"train": {**ONE["train"], "datasets": {"a": entry}}}


def budgets_of(cfg, n=3000):
    return _masking_for(cfg.train["a"], SPECS).sample_budgets(n, 0)


def test_key_train_datasets_and_weights():
    cfg = load_data_config({"train": {**ONE["train"], "datasets": {"a": one()["train"]["datasets"]["a"],
                                                                  "b": one()["train"]["datasets"]["a"]},
                                      "weights": [3, 1]}})
    assert list(cfg.train) == ["a", "b"] and cfg.weights == (3.0, 1.0)
    assert load_data_config({"train": {**ONE["train"], "datasets": {"a": one()["train"]["datasets"]["a"]}}}).weights == (1.0,)


def test_key_in_domains_and_out_domains():
    cfg = load_data_config(one(in_domains="tok_rgb-tok_cam", out_domains="tok_depth"))
    assert cfg.train["a"].modalities == ("tok_cam", "tok_depth", "tok_rgb")  # sorted union, as the original
    b_in, b_tg = budgets_of(cfg)
    assert (b_in[:, 1] == 0).all() and (b_tg[:, [0, 2]] == 0).all()  # "1.0" covers the listed domains only


def test_key_input_alphas_is_one_value_per_sorted_in_domain():
    # Sorted in_domains: tok_cam, tok_depth, tok_rgb -> 0, 1, 0: every input token goes to depth.
    cfg = load_data_config(one(input_alphas="0-1-0"))
    b_in, _ = budgets_of(cfg)
    assert (b_in[:, 1] == 64).all()
    with pytest.raises(ValueError, match=r"'train.datasets.a.input_alphas' '0-1' has 2 values for the 3 sorted domains.*zips"):
        load_data_config(one(input_alphas="0-1"))
    with pytest.raises(ValueError, match=r"'train.datasets.a.input_alphas' is a list.*alphas_config"):
        load_data_config(one(input_alphas=[0.01, 0.1]))
    assert load_data_config(one(input_alphas=0.5)).train["a"].input_alphas == "0.5"


def test_key_target_alphas_is_one_value_per_sorted_out_domain():
    cfg = load_data_config(one(out_domains="tok_rgb-tok_depth", target_alphas="0-1"))  # depth 0, rgb 1
    _, b_tg = budgets_of(cfg)
    assert (b_tg[:, 0] == 0).all() and (b_tg[:, 1] == 0).all() and (b_tg[:, 2] > 0).all()
    with pytest.raises(ValueError, match=r"'train.datasets.a' needs 'alphas_config' or both.*even split"):
        load_data_config(one(target_alphas=...))
    with pytest.raises(ValueError, match=r"'train.datasets.a' needs 'alphas_config' or both"):
        load_data_config(one(target_alphas=None))


def test_key_alphas_config(repo_root):
    path = preset_file("alphas", "mix_mod4_all2all_uni")
    cfg = load_data_config(one(alphas_config=path, input_alphas=None, target_alphas=None))
    masking = _masking_for(cfg.train["a"], SPECS)
    assert masking.input_alphas.shape == (4, 3) and masking.sampling_weights.tolist() == [1.0] * 4
    with pytest.raises(ValueError, match=r"'train.datasets.a.input_alphas' has no effect next to 'alphas_config'"):
        load_data_config(one(alphas_config=path, target_alphas=None))


def test_keys_num_tokens_dataset_overrides_train_level():
    cfg = load_data_config(one(num_input_tokens=16))
    assert (cfg.train["a"].num_input_tokens, cfg.train["a"].num_target_tokens) == (16, 64)
    b_in, b_tg = budgets_of(cfg)
    assert (b_in.sum(1) <= 16).all() and (b_in.sum(1) == 16).any() and (b_tg.sum(1) == 64).any()


def test_keys_min_tokens_dataset_then_train_level_and_null_means_fixed():
    raw = one(min_input_tokens=8)
    raw["train"]["min_target_tokens"] = 32
    cfg = load_data_config(raw)
    assert (cfg.train["a"].min_input_tokens, cfg.train["a"].min_target_tokens) == (8, 32)
    b_in, _ = budgets_of(cfg)
    assert set(b_in.sum(1).tolist()) >= {8, 64}
    raw = one(min_target_tokens=None)
    raw["train"]["min_target_tokens"] = 32
    assert load_data_config(raw).train["a"].min_target_tokens is None  # null on the dataset: always num


def test_val_entries_take_budgets_from_train_level_and_alphas_from_their_train_entry():
    raw = one(num_input_tokens=100, input_alphas="0-1-0")
    raw["val"] = {"datasets": {"a": {"data_path": "v.tar", "num_target_tokens": 8}}}
    cfg = load_data_config(raw)
    val = cfg.val["a"]
    assert (val.num_input_tokens, val.num_target_tokens) == (64, 8) and val.input_alphas == "0-1-0"
    # The model's budgets are the training maximum (the original runs validation at its main budgets).
    raw["train"]["datasets"]["a"]["num_input_tokens"] = 16
    with pytest.raises(ValueError, match=r"'val.datasets.a.num_input_tokens' is 64, more than the largest training budget 16"):
        load_data_config(raw)
    for key, value in (("alphas_config", "al.yaml"), ("input_alphas", "1"), ("wds_n_repeats", 2), ("enforce_domains", True)):
        bad = one()
        bad["val"] = {"datasets": {"a": {key: value}}}
        with pytest.raises(ValueError, match=rf"'val.datasets.a.{key}' has no effect on a val entry"):
            load_data_config(bad)


def test_key_data_path(tmp_path):
    assert load_data_config(one(data_path="d/[rgb]/a/s.tar"), base_dir=tmp_path).train["a"].data_path == f"{tmp_path}/d/[rgb]/a/s.tar"


def test_a_folder_given_as_data_path_is_one_line_saying_data_root(tmp_path):
    raw = one()
    raw["val"] = {"datasets": {"a": {"data_path": "s3://bucket/val"}}}  # the original's val data_path: a root
    with pytest.raises(ValueError) as err:
        load_data_config(raw, where="d.yaml")
    message = str(err.value)
    assert "\n" not in message and message.startswith("d.yaml: 'val.datasets.a.data_path': 's3://bucket/val' is not a "
                                                       "shard pattern")
    assert "goes in data_root (the original's val data_path is such a root)" in message


def test_key_data_root_exactly_one_source_and_val_inheritance(tmp_path):
    cfg = load_data_config(one(data_path=None, data_root="roots/train"), base_dir=tmp_path)
    a = cfg.train["a"]
    assert (a.data_path, a.data_root, a.source_key, a.source) == (None, f"{tmp_path}/roots/train", "data_root", a.data_root)
    raw = one()
    raw["train"]["datasets"]["a"].pop("data_path")
    with pytest.raises(ValueError, match=r"'train.datasets.a.data_path' is missing: set data_path \(a shard pattern\) "
                                         r"or data_root \(a root folder\)"):
        load_data_config(raw)
    with pytest.raises(ValueError, match=r"'train.datasets.a.data_root' is set next to 'data_path': give one"):
        load_data_config(one(data_root="r"))
    raw = one()
    raw["val"] = {"datasets": {"a": {"data_root": "s3://bucket/val"}}}
    val = load_data_config(raw).val["a"]  # a val entry's own source replaces the train entry's
    assert (val.data_path, val.data_root) == (None, "s3://bucket/val")
    raw["val"] = {"datasets": {"a": {"num_target_tokens": 8}}}
    assert load_data_config(raw).val["a"].data_path == load_data_config(raw).train["a"].data_path  # inherited


def test_overrides_apply_to_the_tree_read_once(tmp_path):
    path = tmp_path / "configs" / "data.yaml"
    path.parent.mkdir()
    raw = one(alphas_config=None)
    raw["val"] = {"datasets": {"a": {"data_root": "val"}}}
    path.write_text(__import__("yaml").safe_dump(raw))
    tree = read_data_tree(path)  # relative paths: against the file's project root, once
    assert tree["val"]["datasets"]["a"]["data_root"] == f"{tmp_path}/val"
    override_data_key(tree, "train.num_input_tokens", 32, "/cwd")
    override_data_key(tree, "val.datasets.a.data_path", "shards/[rgb]/a/s.tar", "/cwd")  # replaces the root
    assert tree["val"]["datasets"]["a"] == {"data_path": "/cwd/shards/[rgb]/a/s.tar"}
    cfg = data_config_from_tree(tree, "w")
    assert cfg.train["a"].num_input_tokens == 32 and cfg.val["a"].data_path == "/cwd/shards/[rgb]/a/s.tar"
    assert cfg.to_dict() == tree and data_config_from_tree(cfg.to_dict()) == cfg
    for key, hint in (("train.weight", "did you mean 'data.train.weights'?"),
                      ("train.datasets.a.data_rot", "did you mean 'data.train.datasets.a.data_root'?"),
                      ("train.weights.x", "'data.train.weights' has no sub-keys")):
        with pytest.raises(DataKeyError) as err:
            override_data_key(tree, key, 1, "/")
        assert err.value.key == key and err.value.hint("data.") == hint
    with pytest.raises(DataKeyError, match=r"unknown dataset 'b' in 'train.datasets.b.data_path'; known keys: a"):
        override_data_key(tree, "train.datasets.b.data_path", "x.tar", "/")
    assert {"train.datasets.<name>.data_root", "val.datasets.<name>.data_root", "train.weights"} <= set(data_config_keys())


def test_key_type_only_multimodal():
    assert load_data_config(one(type="multimodal")).train["a"].name == "a"
    with pytest.raises(ValueError, match=r"'train.datasets.a.type' is 'huggingface': only 'multimodal' is supported"):
        load_data_config(one(type="huggingface"))


def test_key_use_wds_only_true_for_training():
    assert load_data_config(one(use_wds=True)).train["a"].name == "a"
    with pytest.raises(ValueError, match=r"'train.datasets.a.use_wds' is False: only True is supported.*--from-dir"):
        load_data_config(one(use_wds=False))
    raw = one()
    raw["val"] = {"datasets": {"a": {"use_wds": False}}}  # the original's validation never uses it
    assert "a" in load_data_config(raw).val


def test_keys_wds_repeats_and_shuffle_buffers():
    default = load_data_config(one()).train["a"]
    assert (default.wds_n_repeats, default.wds_shuffle_buffer_tar, default.wds_shuffle_buffer_repeat) == (1, 1000, 1000)
    cfg = load_data_config(one(wds_n_repeats=4, wds_shuffle_buffer_tar=0, wds_shuffle_buffer_repeat=50)).train["a"]
    assert (cfg.wds_n_repeats, cfg.wds_shuffle_buffer_tar, cfg.wds_shuffle_buffer_repeat) == (4, 0, 50)
    with pytest.raises(ValueError, match=r"'train.datasets.a.wds_shuffle_buffer_tar' must be an integer >= 0"):
        load_data_config(one(wds_shuffle_buffer_tar=-1))


@pytest.mark.parametrize("key", sorted(NO_EFFECT_KEYS))
def test_keys_without_effect_are_logged_with_the_reason(key, caplog):
    with caplog.at_level(logging.INFO, logger="egom2p.data"):
        cfg = load_data_config(one(**{key: "tok_rgb"}))
    assert cfg.train["a"] == load_data_config(one()).train["a"]
    assert any(f"'train.datasets.a.{key}' has no effect: {NO_EFFECT_KEYS[key]}" in r.getMessage() for r in caplog.records)


def test_key_modality_name_map():
    cfg = load_data_config(one(modality_name_map={"video": "tok_rgb"}))
    specs = {n: type("Spec", (), {"folder": n.removeprefix("tok_")})() for n in SPECS}
    assert cfg.train["a"].folder_modalities(specs) == {"cam": "tok_cam", "depth": "tok_depth", "rgb": "tok_rgb", "video": "tok_rgb"}


def test_key_enforce_domains(repo_root):
    path = preset_file("alphas", "mix_mod4_all2all_uni")
    cfg = load_data_config(one(out_domains="tok_cam-tok_depth", alphas_config=path, input_alphas=None, target_alphas=None,
                               enforce_domains=True))
    _, b_tg = budgets_of(cfg)
    assert (b_tg[:, 2] == 0).all() and torch.any(b_tg[:, 1] > 0)


def test_key_s3_retry_seconds():
    assert load_data_config(one()).s3_retry_seconds is None  # $EGOM2P_S3_RETRY_SECONDS, else 300 s
    raw = one()
    raw["train"]["s3_retry_seconds"] = 30
    assert load_data_config(raw).s3_retry_seconds == 30.0
    for bad in (-1, "soon", True):
        raw["train"]["s3_retry_seconds"] = bad
        with pytest.raises(ValueError, match=r"'train.s3_retry_seconds' must be a number of seconds >= 0"):
            load_data_config(raw)

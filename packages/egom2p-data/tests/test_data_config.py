"""Data configs: budgets in one place, strict keys with dotted names, relative paths, the shipped files."""

from __future__ import annotations

import pytest
from egom2p.data.config import DATASET_KEYS, IGNORED_DATASET_KEYS, PATH_KEYS, TRAIN_KEYS, VAL_KEYS, load_data_config


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
    # Val entries fall back to their train entry, then to the train-level default.
    assert budgets(cfg.val["a"]) == (16, 12) and budgets(cfg.val["b"]) == (64, 8) and budgets(cfg.val["c"]) == (16, 12)
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


def test_ignored_original_keys_are_accepted(repo_root):
    cfg = load_data_config(config({"a": entry(type="multimodal", use_wds=True, wds_shuffle_buffer_tar=1000)},
                                  num_input_tokens=4, num_target_tokens=4))
    assert cfg.train["a"].wds_n_repeats == 1
    assert set(IGNORED_DATASET_KEYS).isdisjoint(DATASET_KEYS) and set(PATH_KEYS) <= set(DATASET_KEYS)
    assert {"num_input_tokens", "num_target_tokens", "datasets", "weights"} <= set(TRAIN_KEYS) and VAL_KEYS == ("datasets",)


def test_relative_paths(repo_root, tmp_path):
    cfg = load_data_config(config({"a": entry(data_path="d/[rgb]/a/s.tar", alphas_config="al.yaml")},
                                  num_input_tokens=4, num_target_tokens=4), base_dir=tmp_path)
    assert cfg.train["a"].data_path == f"{tmp_path}/d/[rgb]/a/s.tar" and cfg.train["a"].alphas_config == f"{tmp_path}/al.yaml"
    cfg = load_data_config(config({"a": entry(data_path="s3://b/[rgb]/a/s.tar")}, num_input_tokens=4, num_target_tokens=4))
    assert cfg.train["a"].data_path == "s3://b/[rgb]/a/s.tar"


def test_shipped_configs(repo_root):
    demo = load_data_config(repo_root / "configs/data/demo.yaml")
    assert demo.train["synth_full"].data_path.startswith(str(repo_root / "data/demo/train"))
    assert demo.train["synth_full"].alphas_config == str(repo_root / "configs/alphas/demo_rgb2all_all2all.yaml")
    assert demo.val["synth_nogaze"].modalities == ("tok_cam", "tok_depth", "tok_rgb")
    # The budgets the demo trains with (they were the trainer's num_input_tokens / num_target_tokens).
    assert (demo.max_input_tokens, demo.max_target_tokens) == (40, 40)
    assert all((d.num_input_tokens, d.num_target_tokens) == (40, 40) for d in (*demo.train.values(), *demo.val.values()))
    released = load_data_config(repo_root / "configs/data/egom2p-released.yaml")
    assert len(released.train) == 8 and len(released.val) == 6 and released.weights[2] == pytest.approx(0.49349421)
    assert {(d.num_input_tokens, d.num_target_tokens, d.min_input_tokens) for d in released.train.values()} == {(2048, 2048, None)}
    assert released.train["hot3d_quest"].out_domains == ("tok_depth", "tok_cam")
    assert released.train["holoassist"].wds_n_repeats == 4

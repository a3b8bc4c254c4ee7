"""A resume compares the whole resolved config with the checkpoint's: every change is logged, one line per key, and
a change of what is trained is refused unless ``resume.allow_changes`` lists it (issue 25)."""

import pytest
from egom2p.data.config import load_data_config
from egom2p.train.config import (
    RESUME_RUN_KEYS,
    RESUME_TRAINED_KEYS,
    UNSET,
    ConfigError,
    changes_what_is_trained,
    config_changes,
    config_keys,
    load_config,
    save_resolved_config,
)
from test_trainer_loop import make_cfg
from test_trainer_resume import trainer_for

DATA = {"train": {"datasets": {"a": {"data_path": "/shards/a-{000..003}.tar", "in_domains": ["tok_rgb"],
                                     "out_domains": ["tok_rgb"], "input_alphas": "1", "target_alphas": "1"}},
                  "num_input_tokens": 16, "num_target_tokens": 16},
        "val": {"datasets": {"a": {"data_path": "/shards/a-val.tar"}}}}


def with_data(cfg, val=DATA["val"], **train):
    """``cfg`` with a copy of ``DATA`` whose dataset ``a`` entry is updated by ``train`` (and ``val`` as its val)."""
    cfg.data = load_data_config({"train": {**DATA["train"], "datasets": {"a": {**DATA["train"]["datasets"]["a"], **train}}},
                                 "val": val})
    return cfg


def _under(key, prefix):
    return key == prefix or key.startswith(f"{prefix}.")


def test_every_config_key_is_classified():
    keys = config_keys()
    unclassified = [k for k in keys if not any(_under(k, p) for p in (*RESUME_TRAINED_KEYS, *RESUME_RUN_KEYS))]
    assert not unclassified, f"add them to RESUME_TRAINED_KEYS or RESUME_RUN_KEYS in train/config.py: {unclassified}"
    assert not set(RESUME_TRAINED_KEYS) & set(RESUME_RUN_KEYS)
    stale = [p for p in (*RESUME_TRAINED_KEYS, *RESUME_RUN_KEYS) if not any(_under(k, p) for k in keys)]
    assert not stale, f"no config key under {stale}"


@pytest.mark.parametrize("key", [
    "seed", "recipe", "loss_type", "data.train.datasets.a.data_path", "data.train.datasets.a.in_domains",
    "data.train.datasets.a.input_alphas", "data.train.datasets.a.alphas_config", "data.train.num_input_tokens",
    "data.train.weights", "data.train.datasets", "model.dim", "model.modalities", "model.modalities.tok_rgb.vocab_size",
    "tokenizer.codebook_size", "tokenizer_data.train", "tokenizer_data.stride"])
def test_what_is_trained(key):
    assert changes_what_is_trained(key)


@pytest.mark.parametrize("key", [
    "optim.blr", "optim.weight_decay", "optim.clip_grad", "schedule.epochs", "schedule.total_tokens",
    "checkpoint.every_steps", "metrics.log_every_steps", "loader.num_workers", "loader.batch_size", "dtype",
    "model.attn_backend", "data.val.datasets.a.data_path", "data.train.max_bad_fraction", "tokenizer_data.val",
    "resume.allow_changes"])
def test_how_it_is_trained(key):
    assert not changes_what_is_trained(key)


def test_config_changes_lists_every_leaf_in_order():
    old = {"seed": 0, "optim": {"blr": 1e-4, "opt_betas": (0.9, 0.95)}, "data": {"train": {"weights": [1.0],
           "datasets": {"a": {"data_path": "/a"}, "b": {"data_path": "/b"}}}}, "gone": 1}
    new = {"seed": 0, "optim": {"blr": 2e-4, "opt_betas": [0.9, 0.95]}, "data": {"train": {"weights": [1.0],
           "datasets": {"a": {"data_path": "/a2"}, "c": {"data_path": "/c"}}}}}
    assert config_changes(old, new) == [
        ("optim.blr", 1e-4, 2e-4), ("data.train.datasets.a.data_path", "/a", "/a2"),
        ("data.train.datasets.c", UNSET, {"data_path": "/c"}), ("data.train.datasets.b", {"data_path": "/b"}, UNSET),
        ("gone", 1, UNSET)]
    assert config_changes(new, new) == []


def test_a_data_change_is_refused_then_allowed_and_logged(tmp_path):
    first, _ = trainer_for(with_data(make_cfg(tmp_path, max_steps=4)))
    first.fit()
    key = "data.train.datasets.a.data_path"
    refused, _ = trainer_for(with_data(make_cfg(tmp_path), data_path="/elsewhere/a.tar"))
    with pytest.raises(ConfigError) as err:
        refused.try_resume()
    assert err.value.key == key
    assert f"'{key}': '/shards/a-{{000..003}}.tar' -> '/elsewhere/a.tar' since {tmp_path}" in str(err.value)
    assert f"list it in resume.allow_changes to resume with the change (resume.allow_changes=[{key}])" in str(err.value)

    cfg = with_data(make_cfg(tmp_path), data_path="/elsewhere/a.tar")
    cfg.resume.allow_changes = ["data.train.datasets"]
    resumed, logs = trainer_for(cfg)
    resumed.try_resume()
    assert resumed.step == 4 and resumed.train_loader.position == first.train_loader.position  # streams continue
    assert f"resume: {key}: '/shards/a-{{000..003}}.tar' -> '/elsewhere/a.tar' (allowed by resume.allow_changes)" in logs


def test_the_refusal_names_every_changed_key_and_run_side_changes_pass(tmp_path):
    trainer_for(with_data(make_cfg(tmp_path, max_steps=4)))[0].fit()
    cfg = with_data(make_cfg(tmp_path, seed=1), in_domains=["tok_rgb", "tok_depth"])
    cfg.model.qk_norm = True
    with pytest.raises(ConfigError, match=r"'seed': 0 -> 1 \(and model.qk_norm, data.train.datasets.a.in_domains\) "
                                          r"since .* list them in resume.allow_changes") as err:
        trainer_for(cfg)[0].try_resume()
    assert err.value.key == "seed"
    # Changes of how the same thing is trained are logged, one line each, and the run goes on.
    cfg = with_data(make_cfg(tmp_path), val={"datasets": {}}, data_path="/shards/a-{000..003}.tar")
    cfg.model.attn_backend, cfg.loader.num_workers, cfg.optim.clip_grad = "sdpa", 3, 0.5
    resumed, logs = trainer_for(cfg)
    resumed.try_resume()
    assert resumed.step == 4
    for line in ("resume: model.attn_backend: None -> 'sdpa'", "resume: loader.num_workers: 10 -> 3",
                 "resume: optim.clip_grad: 1.0 -> 0.5", "resume: schedule.max_steps: 4 -> None",
                 "resume: data.val.datasets.a: {'data_path': '/shards/a-val.tar'} -> (unset)"):
        assert line in logs, logs
    assert any(line.startswith("resume: 5 config change(s) since") for line in logs), logs


def test_an_allowed_new_seed_restarts_the_data_streams(tmp_path):
    first, _ = trainer_for(make_cfg(tmp_path, max_steps=4))
    first.fit()
    cfg = make_cfg(tmp_path, seed=7)
    cfg.resume.allow_changes = ["seed"]
    resumed, logs = trainer_for(cfg)
    resumed.try_resume()
    assert resumed.step == 4 and first.train_loader.position > 0 and resumed.train_loader.position == 0
    assert "resume: seed: 0 -> 7 (allowed by resume.allow_changes)" in logs
    assert "resume: the seed or the training data changed; data streams and RNG restart (reseeded with the step)" in logs


def test_an_older_checkpoint_compares_with_the_run_config_or_the_optimizer_settings(tmp_path):
    cfg = make_cfg(tmp_path)
    trainer, logs = trainer_for(cfg)
    assert trainer._saved_config({}) is None  # no config.yaml yet
    save_resolved_config(cfg, tmp_path)
    assert config_changes(trainer._saved_config({}), cfg.to_dict()) == []
    saved = {**trainer.resume_settings(), "optim.blr": 1.0}
    assert trainer._report_changes(saved, None, "old") is False
    assert "resume: optim.blr: 1.0 -> 2.0" in logs


def test_allow_changes_names_keys_or_sections():
    base = ["recipe=tokenizer", "tokenizer_data.train=[{synthetic: {windows: 8, seed: 0}}]", "output_dir=/tmp/run"]
    good = ["data.train.datasets.any_name", "optim", "model.modalities", "tokenizer_data.train"]
    assert load_config(overrides=[*base, f"resume.allow_changes=[{','.join(good)}]"]).resume.allow_changes == good
    for bad, hint in (("optim.blrr", "optim.blr"), ("model.modalities.tok_rgb", "model.modalities")):
        with pytest.raises(ConfigError, match=rf"'resume.allow_changes': '{bad}' is not a config key or section "
                                              rf"\(did you mean '{hint}'\?\)") as err:
            load_config(overrides=[*base, f"resume.allow_changes=[{bad}]"])
        assert err.value.key == "resume.allow_changes"

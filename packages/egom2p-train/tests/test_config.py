"""The config tree: defaults -> YAML -> dotted overrides, every key reachable, strict validation naming the key."""

import dataclasses
import os
import re
from pathlib import Path

import pytest
import yaml
from egom2p.core.presets import preset_file
from egom2p.model import EgoM2PConfig, preset_config
from egom2p.train.config import ConfigError, TrainConfig, config_keys, load_config, save_resolved_config

ROOT = Path(__file__).resolve().parents[3]
DEMO_DATA = Path(preset_file("data", "demo"))
BASE = {"data": str(DEMO_DATA), "output_dir": "/tmp/run", "schedule": {"epoch_size": 1000}}
BASE_OVERRIDES = ["data=demo", "output_dir=/tmp/run", "schedule.epoch_size=1000"]

# Every key of the tree, data subtree included (torchtitan's test_no_new_cli_options habit). A new key
# fails this test until it is added here, so the README's key table and the docs stay in step.
FROZEN_KEYS = [
    'activation_checkpointing', 'check_memory', 'checkpoint.async_save', 'checkpoint.auto_resume', 'checkpoint.every_steps',
    'checkpoint.init_from', 'checkpoint.keep_last_k', 'checkpoint.s3_save_dir', 'checkpoint.save_ckpt_freq',
    'compile', 'data',
    'data.train.datasets.<name>.alphas_config', 'data.train.datasets.<name>.data_path',
    'data.train.datasets.<name>.data_root', 'data.train.datasets.<name>.enforce_domains', 'data.train.datasets.<name>.in_domains',
    'data.train.datasets.<name>.input_alphas', 'data.train.datasets.<name>.min_input_tokens',
    'data.train.datasets.<name>.min_target_tokens', 'data.train.datasets.<name>.modality_name_map',
    'data.train.datasets.<name>.num_input_tokens', 'data.train.datasets.<name>.num_target_tokens',
    'data.train.datasets.<name>.out_domains', 'data.train.datasets.<name>.target_alphas',
    'data.train.datasets.<name>.wds_n_repeats', 'data.train.datasets.<name>.wds_shuffle_buffer_repeat',
    'data.train.datasets.<name>.wds_shuffle_buffer_tar', 'data.train.max_bad_fraction',
    'data.train.min_input_tokens', 'data.train.min_target_tokens', 'data.train.num_input_tokens',
    'data.train.num_target_tokens', 'data.train.s3_retry_seconds', 'data.train.weights',
    'data.val.datasets.<name>.data_path', 'data.val.datasets.<name>.data_root', 'data.val.datasets.<name>.in_domains',
    'data.val.datasets.<name>.min_input_tokens', 'data.val.datasets.<name>.min_target_tokens',
    'data.val.datasets.<name>.modality_name_map', 'data.val.datasets.<name>.num_input_tokens',
    'data.val.datasets.<name>.num_target_tokens', 'data.val.datasets.<name>.out_domains', 'device', 'dtype',
    'eval_only', 'finetune.frozen_embedding_domain', 'finetune.frozen_model_blr', 'finetune.frozen_model_epochs',
    'finetune.frozen_model_tokens', 'finetune.lora.alpha', 'finetune.lora.blocks', 'finetune.lora.dropout',
    'finetune.lora.rank', 'finetune.lora.target_modules', 'fsdp', 'loader.batch_size', 'loader.num_workers', 'loader.pack', 'loader.pack_multiple',
    'loader.pack_rows', 'loss_type', 'max_bad_steps',
    'metrics.eval_freq', 'metrics.log_every_steps', 'metrics.log_wandb', 'metrics.val_every_steps',
    'metrics.wandb_entity', 'metrics.wandb_project', 'metrics.wandb_run_name', 'model.attn_backend',
    'model.decoder_causal_mask', 'model.decoder_depth', 'model.decoder_sep_mask', 'model.dim', 'model.encoder_depth',
    'model.fused_loss', 'model.fused_loss_chunk_size', 'model.gated_mlp', 'model.init_std', 'model.mlp_bias',
    'model.mlp_ratio', 'model.modalities', 'model.norm_bias', 'model.num_heads', 'model.preset', 'model.proj_bias',
    'model.qk_norm', 'model.qkv_bias', 'optim.blr', 'optim.clip_grad', 'optim.min_blr', 'optim.opt_betas',
    'optim.opt_eps', 'optim.weight_decay', 'output_dir', 'recipe', 'resume.allow_changes', 'schedule.accum_iter',
    'schedule.epoch_size',
    'schedule.epochs', 'schedule.global_batch_size', 'schedule.max_steps', 'schedule.total_tokens', 'schedule.warmup_epochs',
    'schedule.warmup_tokens', 'seed',
    'tokenizer.code_replacement_policy', 'tokenizer.codebook_size', 'tokenizer.commitment_weight', 'tokenizer.depth',
    'tokenizer.dim_tokens', 'tokenizer.ema_decay', 'tokenizer.eps', 'tokenizer.in_channels', 'tokenizer.kind',
    'tokenizer.latent_dim', 'tokenizer.mlp_ratio', 'tokenizer.num_frames', 'tokenizer.num_heads', 'tokenizer.post_mlp',
    'tokenizer.preset', 'tokenizer.temporal_compress', 'tokenizer.threshold_ema_dead_code', 'tokenizer_data.basis',
    'tokenizer_data.fps', 'tokenizer_data.gaze_frame', 'tokenizer_data.stride', 'tokenizer_data.train',
    'tokenizer_data.val',
]


def write(tmp_path: Path, data: dict, name: str = "train.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_key_list_is_frozen():
    assert config_keys() == FROZEN_KEYS


def test_model_section_has_every_egom2p_config_field():
    model_keys = {k.split(".", 1)[1] for k in config_keys() if k.startswith("model.")}
    assert model_keys == {"preset"} | {f.name for f in dataclasses.fields(EgoM2PConfig)}


def test_yaml_then_overrides_win(tmp_path):
    path = write(tmp_path, {**BASE, "optim": {"blr": 2e-4}, "loader": {"batch_size": 8}})
    cfg = load_config(path, ["loader.batch_size=4", "optim.opt_betas=[0.9,0.99]", "model.dim=48",
                             "optim.clip_grad=1.0"])
    assert cfg.optim.blr == 2e-4 and cfg.loader.batch_size == 4
    assert cfg.optim.opt_betas == [0.9, 0.99] and cfg.model.dim == 48 and cfg.optim.clip_grad == 1.0
    assert cfg.loader.num_workers == TrainConfig().loader.num_workers  # untouched default


def test_model_section_is_the_preset_with_explicit_fields_on_top(tmp_path):
    cfg = load_config(write(tmp_path, {**BASE, "model": {"preset": "egom2p-tiny", "num_heads": 4}}), ["model.dim=48"])
    tiny = preset_config("egom2p-tiny")
    assert (cfg.model.dim, cfg.model.num_heads, cfg.model.encoder_depth) == (48, 4, tiny.encoder_depth)
    assert cfg.model.mlp_ratio == tiny.mlp_ratio and cfg.model.init_std == tiny.init_std  # filled in
    assert cfg.model_config() == preset_config("egom2p-tiny", dim=48, num_heads=4)


def test_yaml_scientific_notation_string_is_a_float(tmp_path):
    # YAML 1.1 reads "1e-4" (no dot) as a string; it must still be accepted as a float.
    cfg = load_config(write(tmp_path, {**BASE, "optim": {"clip_grad": 1.0}}), ["optim.blr=1e-4", "optim.clip_grad=null"])
    assert cfg.optim.blr == pytest.approx(1e-4) and cfg.optim.clip_grad is None


@pytest.mark.parametrize("section, key, value, expected", [
    ("loader", "batch_size", 1e6, 1000000),  # YAML reads 1e6 as a float: an integral one is an int
    ("optim", "blr", 3, 3.0),  # an int where a float is expected
    ("metrics", "wandb_project", "1e-4", "1e-4"),  # a string stays a string
    ("metrics", "log_wandb", False, False),
])
def test_scalar_values_accepted_from_yaml(tmp_path, section, key, value, expected):
    got = getattr(getattr(load_config(write(tmp_path, {**BASE, section: {key: value}})), section), key)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("section, key, value", [
    ("loader", "batch_size", 2.5), ("loader", "batch_size", True), ("loader", "batch_size", "4"),
    ("optim", "blr", True), ("optim", "blr", "fast"), ("optim", "blr", [1e-4]),
    ("metrics", "log_wandb", 1), ("metrics", "log_wandb", "yes"), ("metrics", "wandb_project", 3),
])
def test_scalar_values_refused_name_the_key_and_the_type(tmp_path, section, key, value):
    with pytest.raises(ConfigError, match=rf"'{section}\.{key}'.*expected .*got {re.escape(repr(value))}"):
        load_config(write(tmp_path, {**BASE, section: {key: value}}))


def test_unknown_key_names_the_dotted_key_the_file_and_the_closest_key(tmp_path):
    with pytest.raises(ConfigError, match=r"'optim\.bllr'.*train\.yaml.*did you mean 'optim\.blr'"):
        load_config(write(tmp_path, {**BASE, "optim": {"bllr": 1e-4}}))


def test_a_config_file_given_as_an_override_suggests_config():
    with pytest.raises(ConfigError, match=r"override 'configs/train/demo-cpu.yaml' is not of the form key=value \(a "
                                          r"config file is given with --config: --config configs/train/demo-cpu.yaml\)"):
        load_config(None, ["configs/train/demo-cpu.yaml"])
    with pytest.raises(ConfigError, match=r"\(a config file is given with --config: --config demo-cpu\)"):
        load_config(None, ["demo-cpu"])  # a shipped config's name
    with pytest.raises(ConfigError, match=r"override 'optim.blr' is not of the form key=value$"):
        load_config(None, ["optim.blr"])


@pytest.mark.parametrize("override, hint", [
    ("blr=1e-3", "optim.blr"),  # keys of the earlier flat config point to their new place
    ("batch_size=4", "loader.batch_size"),
    ("model_overrides.dim=48", "model"),
    ("data_config=x.yaml", "data"),
    ("num_input_tokens=32", "data.train.num_input_tokens"),
    ("checkpoint_every_steps=3", "checkpoint.every_steps"),
    ("data.train.weight=[1,1]", "data.train.weights"),
    ("data.train.datasets.synth_full.data_pth=x", "data.train.datasets.synth_full.data_path"),
])
def test_unknown_override_names_the_key_and_the_new_spelling(override, hint):
    with pytest.raises(ConfigError, match="unknown config key") as info:
        load_config(write_base(), [override])
    message = str(info.value)
    assert f"'{override.split('=')[0]}'" in message and f"command-line override '{override}'" in message
    assert f"did you mean '{hint}'" in message


def write_base() -> Path:
    import tempfile

    return write(Path(tempfile.mkdtemp()), BASE)


def test_a_section_given_a_value_says_so():
    with pytest.raises(ConfigError, match=r"'model' .* is a section.*'model\.preset'"):
        load_config(write_base(), ["model=egom2p-tiny"])


@pytest.mark.parametrize("override, key", [
    ("loader.batch_size=abc", "loader.batch_size"),
    ("metrics.log_wandb=3", "metrics.log_wandb"),
    ("optim.blr=-1e-4", "optim.blr"),
    ("dtype=float8", "dtype"),
    ("loss_type=l2", "loss_type"),
    ("model.attn_backend=flash", "model.attn_backend"),
    ("schedule.total_tokens=10", "schedule.warmup_tokens"),  # with warmup_tokens=20 below
    ("schedule.epoch_size=0", "schedule.epoch_size"),
    ("schedule.max_steps=0", "schedule.max_steps"),
    ("optim.opt_betas=[0.9]", "optim.opt_betas"),
    ("checkpoint.keep_last_k=0", "checkpoint.keep_last_k"),
    ("model.dim=50", "model.dim"),  # EgoM2PConfig's own check: not divisible by the heads
    ("model.preset=egom2p-huge", "model.preset"),
])
def test_bad_values_name_the_key(tmp_path, override, key):
    path = write(tmp_path, {**BASE, "schedule": {"epoch_size": 1000, "warmup_tokens": 20}})
    with pytest.raises(ConfigError, match=f"'{key}'") as info:
        load_config(path, [override])
    assert info.value.key == key


def test_value_error_names_its_source_file(tmp_path):
    with pytest.raises(ConfigError, match=r"'optim\.blr'.*train\.yaml"):
        load_config(write(tmp_path, {**BASE, "optim": {"blr": -1.0}}))


def test_warmup_longer_than_run_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="'schedule.warmup_epochs'"):
        load_config(write(tmp_path, {**BASE, "schedule": {"epoch_size": 1000, "epochs": 2, "warmup_epochs": 3}}))


def test_data_overrides_reach_the_included_data_config(tmp_path):
    cfg = load_config(write_base(), ["data.train.num_input_tokens=32", "data.train.weights=[1,2]",
                                     "data.train.datasets.synth_nogaze.num_target_tokens=24"])
    data = cfg.data_config()
    assert data.weights == (1.0, 2.0)
    assert data.train["synth_full"].num_input_tokens == 32 and data.train["synth_nogaze"].num_target_tokens == 24
    assert (data.max_input_tokens, data.max_target_tokens) == (32, 40)  # the model's forward budgets


def test_data_errors_name_the_data_file_and_the_overrides(tmp_path):
    with pytest.raises(ConfigError, match=r"demo\.yaml.*data\.train\.weights.*'train\.weights'") as info:
        load_config(write_base(), ["data.train.weights=[1]"])
    assert info.value.key == "data"
    with pytest.raises(ConfigError, match=r"unknown dataset 'synth_ful'.*did you mean 'synth_full'"):
        load_config(write_base(), ["data.train.datasets.synth_ful.data_path=x"])


def test_a_folder_as_data_path_fails_at_start_in_one_line_naming_data_root(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write_base(), [f"data.train.datasets.synth_full.data_path={tmp_path}"])
    message = str(info.value)
    assert "\n" not in message and info.value.key == "data"
    assert f"'train.datasets.synth_full.data_path': '{tmp_path}' is not a shard pattern" in message
    assert "goes in data_root" in message
    # An override of the other source key replaces the entry's: the val entry now reads a root.
    cfg = load_config(write_base(), [f"data.val.datasets.synth_full.data_root={tmp_path}"])
    assert (cfg.data.val["synth_full"].data_root, cfg.data.val["synth_full"].data_path) == (str(tmp_path), None)
    assert cfg.to_dict()["data"]["val"]["datasets"]["synth_full"] == {"data_root": str(tmp_path)}


def test_inline_data_mapping(tmp_path):
    inline = yaml.safe_load(DEMO_DATA.read_text())
    cfg = load_config(write(tmp_path, {**BASE, "data": inline}), ["data.train.num_target_tokens=16"])
    assert cfg.data_config().max_target_tokens == 16


def test_relative_paths_follow_the_file_or_the_working_directory(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "configs/train").mkdir(parents=True)
    (project / "configs/data").mkdir()
    (project / "configs/data/d.yaml").write_text(DEMO_DATA.read_text())
    path = write(project / "configs/train", {**BASE, "data": "configs/data/d.yaml", "output_dir": "runs/a",
                                             "model": {"modalities": "tiny"}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(path)
    # In a file: against the file's project root (the folder holding configs/), from any working directory.
    assert cfg.output_dir == str(project / "runs/a")
    assert cfg.data.train["synth_full"].alphas_config == preset_file("alphas", "demo_rgb2all_all2all")  # by name
    assert cfg.data.train["synth_full"].data_path.startswith(str(project / "data/demo/train/"))
    # On the command line: against the working directory; URLs unchanged.
    cfg = load_config(path, ["output_dir=out", "data.train.datasets.synth_full.data_path=shards/x.tar",
                             "data.val.datasets.synth_full.data_path=s3://bucket/val.tar"])
    assert cfg.output_dir == os.path.join(elsewhere, "out")
    assert cfg.data.train["synth_full"].data_path == str(elsewhere / "shards/x.tar")
    assert cfg.data.val["synth_full"].data_path == "s3://bucket/val.tar"


def test_shipped_configs_are_named_and_resolve_where_they_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing of the checkout is reachable: the names find the installed files
    cfg = load_config("demo-cpu")
    assert cfg.output_dir == str(tmp_path / "runs/demo-cpu")  # relative paths: against the working directory
    assert cfg.data.train["synth_full"].data_path.startswith(f"{tmp_path}/data/demo/train/")
    assert cfg.data.train["synth_full"].alphas_config == preset_file("alphas", "demo_rgb2all_all2all")
    assert sorted(cfg.model_config().modalities) == ["tok_cam", "tok_depth", "tok_gaze", "tok_rgb"]
    assert cfg.model_config().modalities["tok_rgb"].grid == (2, 4, 4)  # the tiny set, not the released one
    assert load_config("cam-demo-cpu").recipe == "tokenizer"
    hand = load_config("demo-hand-finetune")
    assert "tok_hand" in hand.model_config().modalities and hand.checkpoint.init_from == str(tmp_path / "runs/demo-cpu")
    # Named in a config file: the shipped data config's paths resolve against that file's project root.
    (tmp_path / "proj/configs").mkdir(parents=True)
    path = write(tmp_path / "proj/configs", {**BASE, "data": "demo", "model": {"modalities": "tiny"}})
    assert load_config(path).data.val["synth_full"].data_path.startswith(f"{tmp_path}/proj/data/demo/val/")
    # A data override takes a name too.
    cfg = load_config("demo-cpu", ["data.train.datasets.synth_full.alphas_config=mix_mod4_all2all_uni"])
    assert cfg.data.train["synth_full"].alphas_config == preset_file("alphas", "mix_mod4_all2all_uni")


def test_an_existing_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, {**BASE, "output_dir": "mine"}, name="demo-cpu")
    assert load_config("demo-cpu").output_dir == str(tmp_path / "mine")


@pytest.mark.parametrize("args, message", [
    (("demo-cpuu", []), "config file not found: demo-cpuu, and the train presets are cam-demo-cpu, demo-cpu, "),
    ((None, [*BASE_OVERRIDES, "model.modalities=tinyy"]), "config key 'model.modalities' (command-line override "
     "'model.modalities=tinyy'): config file not found: {cwd}/tinyy, and the modalities presets are egom2p, tiny, tiny-hand"),
    ((None, ["data=demoo"]), "config key 'data' (command-line override 'data=demoo'): config file not found: {cwd}/demoo, "
     "and the data presets are demo, demo-hand"),
])
def test_an_unknown_name_is_one_line_with_the_known_names(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(*args)
    assert "\n" not in str(err.value) and str(err.value).startswith(message.format(cwd=tmp_path)), str(err.value)


def test_resolved_config_round_trips(tmp_path, monkeypatch):
    cfg = load_config(write(tmp_path, BASE), ["model.dim=48", "seed=7", "data.train.num_input_tokens=32"])
    saved = save_resolved_config(cfg, tmp_path / "out")
    assert saved == tmp_path / "out" / "config.yaml"
    monkeypatch.chdir(tmp_path / "out")  # absolute paths: it reproduces the run from anywhere
    assert load_config(saved) == cfg


def test_readme_documents_every_key():
    readme = (ROOT / "packages/egom2p-train/README.md").read_text()
    missing = [k for k in config_keys() if not k.startswith("data.") and f"`{k}`" not in readme]
    assert not missing, f"add these keys to the README's key table: {missing}"

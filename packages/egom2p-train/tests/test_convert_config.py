"""``egom2p-convert config``: the original EgoM2P's released configs translate to our released recipe (the same
derived schedule at 256 and 8 GPUs, the same data mixture), every key is carried or reported, fine-tuning keys
reach ``finetune.*``, and mistakes are one line with exit 2."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from egom2p.data.alphas import load_alphas_config
from egom2p.model.convert import main as convert_main
from egom2p.train.config import load_config
from egom2p.train.convert_config import ORIGINAL_DEFAULTS, check, translate
from egom2p.train.convert_config import main as config_main
from egom2p.train.schedule import dry_run_report

ROOT = Path(__file__).resolve().parents[3]
# The original's released configs, verbatim (Apache-2.0, upstream commit 5909857; see NOTICE).
ORIGINALS = Path(__file__).parent / "fixtures" / "original-configs"
MAIN = "ego-b_mod4_500b_clariden_2048_camcv_depthdenoise.yaml"
DATA = "mix_mod4_all2all_2048.yaml"
ALPHAS = "mix_mod4_all2all_uni.yaml"
RELEASED = ROOT / "configs" / "train" / "egom2p-b-released.yaml"


def _originals(folder: Path) -> Path:
    """The three released original configs in ``folder`` (the data config under the file name the main one names)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (MAIN, DATA, ALPHAS):
        shutil.copy(ORIGINALS / name, folder / name)
    return folder / MAIN


def _convert(capsys, *argv: str | Path) -> tuple[int, str, str]:
    """``egom2p-convert config ARGV`` in-process through the model wheel's console script: (code, stdout, stderr)."""
    code = convert_main(["config", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _write(path: Path, tree: dict) -> Path:
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def _folders_and_tail(data_path: str) -> tuple[frozenset[str], str]:
    """A shard pattern without its root: the set of modality folders (their order does not matter) and the rest."""
    match = re.fullmatch(r".*/\[([^\]]+)\]/(.+)", data_path)
    assert match, data_path
    return frozenset(match.group(1).split(",")), match.group(2)


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    """The released originals translated once with --world-size 256: the output folder."""
    folder = tmp_path_factory.mktemp("convert")
    main = _originals(folder / "original")
    assert config_main([str(main), "--out", str(folder / "ours"), "--world-size", "256"]) == 0
    return folder / "ours"


def test_released_configs_translate_to_our_released_recipe(released):
    out = released
    ours, reference = load_config(out / "train.yaml"), load_config(RELEASED)
    for world_size in (256, 8):
        assert dry_run_report(ours, world_size) == dry_run_report(reference, world_size)
    assert ours.schedule.global_batch_size == 1024 and ours.loader.batch_size == 4
    assert (ours.schedule.epochs, ours.schedule.total_tokens, ours.schedule.warmup_tokens) == (-1, 500, 10)
    assert ours.model.preset == reference.model.preset and ours.model_config() == reference.model_config()
    assert ours.optim == reference.optim and ours.metrics.eval_freq == 1 and ours.checkpoint.save_ckpt_freq == 1
    # train.yaml names data.yaml, and data.yaml the alphas copy, by relative paths (the folder can move).
    assert yaml.safe_load((out / "train.yaml").read_text())["data"] == "data.yaml"
    entries = yaml.safe_load((out / "data.yaml").read_text())["train"]["datasets"].values()
    assert {e["alphas_config"] for e in entries} == {f"alphas/{ALPHAS}"}


def test_released_data_config_means_ours(released):
    out = released
    ours, reference = load_config(out / "train.yaml").data_config(), load_config(RELEASED).data_config()
    assert list(ours.train) == list(reference.train) and ours.weights == reference.weights
    assert list(ours.val) == list(reference.val)
    for split in ("train", "val"):
        for name, mine in getattr(ours, split).items():
            theirs = getattr(reference, split)[name]
            skip = ("data_path", "data_root", "alphas_config")
            assert {k: v for k, v in vars(mine).items() if k not in skip} == \
                   {k: v for k, v in vars(theirs).items() if k not in skip}, name
            assert load_alphas_config(mine.alphas_config) == load_alphas_config(theirs.alphas_config)
            if split == "train":  # the same shards under another root (ours: a placeholder bucket)
                assert _folders_and_tail(mine.data_path) == _folders_and_tail(theirs.data_path)
                assert mine.data_path.startswith("/iopsstor/scratch/cscs/lgen/main_model_token/")
            else:  # the original's val data_path is a root: ours names it data_root, as the released config does
                assert (mine.data_path, theirs.data_path) == (None, None)
                assert mine.data_root == "/iopsstor/scratch/cscs/lgen/main_model_token/val_correct"


def test_report_names_what_is_not_carried(tmp_path, capsys):
    code, out, err = _convert(capsys, _originals(tmp_path / "o"), "--out", tmp_path / "ours", "--world-size", "256")
    assert code == 0 and err == ""
    lines = out.splitlines()
    for key in ("use_wds", "main_augment_domain", "aligned_captions", "tok_train_aug"):
        assert any(line.startswith(f"  train.datasets.*.{key}: ") for line in lines), key
    assert any(line.startswith("  fixed_eval: False: ours has no fixed-budget evaluation") for line in lines)
    assert any(line.startswith("  s3_data_endpoint: '/path/to/endpoint': ") and "EGOM2P_S3_ENDPOINT_URL" in line
               for line in lines)
    assert "global_batch_size: 1024 = batch_size 4 x accum_iter 1 x --world-size 256" in out
    assert lines[-1].startswith(f"wrote {tmp_path / 'ours'}") and "0 change the run" in lines[-1]
    assert "global batch 1024, peak lr 0.0004, 120048 steps (warmup 2385)" in lines[-1]
    # The same list heads train.yaml as comments, and the output can be rewritten by the converter.
    assert "#   train.datasets.*.use_wds: True" in (tmp_path / "ours" / "train.yaml").read_text()
    assert _convert(capsys, tmp_path / "o" / MAIN, "--out", tmp_path / "ours")[0] == 0


def test_without_world_size_the_global_batch_grows_as_in_the_original(tmp_path, capsys):
    code, out, _ = _convert(capsys, _originals(tmp_path / "o"), "--out", tmp_path / "ours")
    assert code == 0 and "no --world-size: the global batch stays batch_size 4 x accum_iter 1 x GPUs" in out
    cfg = load_config(tmp_path / "ours" / "train.yaml")
    assert cfg.schedule.global_batch_size is None
    assert dry_run_report(cfg, 256)["global_batch_size"] == 1024 and dry_run_report(cfg, 8)["global_batch_size"] == 32


def test_finetune_keys_are_carried(tmp_path, capsys):
    original = _originals(tmp_path / "o")
    small = _write(tmp_path / "o" / "finetune.yaml", {
        "data_config": f"cfgs/default/egom2p/data/ego/main/{DATA}", "epoch_size": 100_000, "batch_size": 4,
        "epochs": 10, "warmup_epochs": 1, "finetune": "/some/ckpt.pth", "frozen_model_tokens": 2,
        "frozen_model_blr": "5e-5", "frozen_embedding_domain": "tok_rgb-tok_depth"})
    assert original.parent == small.parent
    code, out, err = _convert(capsys, small, "--out", tmp_path / "ours", "--world-size", "8")
    assert code == 0, err
    cfg = load_config(tmp_path / "ours" / "train.yaml")
    ft = cfg.finetune
    assert (ft.frozen_model_epochs, ft.frozen_model_tokens, ft.frozen_model_blr) == (0, 2.0, 5e-5)
    assert ft.frozen_embedding_domain == ["tok_rgb", "tok_depth"] and cfg.checkpoint.init_from == "/some/ckpt.pth"
    assert (cfg.schedule.epochs, cfg.schedule.warmup_epochs, cfg.schedule.global_batch_size) == (10, 1.0, 32)
    # Keys the file leaves out take the original's code defaults where they differ from ours.
    assert cfg.data_config().train["holoassist"].num_input_tokens == 2048  # the dataset's own budget wins
    assert cfg.to_dict()["data"]["train"]["num_input_tokens"] == 128  # the original's code default, written explicitly
    assert cfg.output_dir == str(tmp_path / "ours" / "runs" / "finetune")  # no output_dir: ours needs one
    assert "fixed_eval (default): True: ours has no fixed-budget evaluation" in out


def test_original_precedence_and_unknown_keys(tmp_path, capsys):
    """warmup_epochs (default 10) wins over warmup_tokens in the original; keys neither trainer knows are reported;
    a data config of two modalities keeps the model to them."""
    folder = tmp_path / "o"
    _originals(folder)
    data = yaml.safe_load((folder / DATA).read_text())
    data["train"]["datasets"] = {"egoexo": {**data["train"]["datasets"]["egoexo"], "in_domains": "tok_rgb-tok_cam",
                                            "out_domains": "tok_rgb-tok_cam", "foo": 1}}
    data["train"]["weights"] = [1.0]
    data["val"]["datasets"] = {"egoexo": {"data_path": "/val", "wds_n_repeats": 4}}
    _write(folder / "two.yaml", data)
    main = _write(folder / "main.yaml", {"data_config": "two.yaml", "epoch_size": 100_000, "batch_size": 4,
                                         "epochs": -1, "total_tokens": 100, "warmup_tokens": 0.1,
                                         "num_input_tokens": 2048, "num_target_tokens": 2048, "my_key": 3,
                                         "scheduler": "inverse_sqrt-10000"})
    code, out, err = _convert(capsys, main, "--out", tmp_path / "ours", "--world-size", "8")
    assert code == 0, err
    cfg = load_config(tmp_path / "ours" / "train.yaml")
    assert (cfg.schedule.warmup_epochs, cfg.schedule.warmup_tokens) == (10, -1)
    assert "warmup_tokens: 0.1: the original ignores it when warmup_epochs >= 0" in out
    assert "my_key: 3: not an option of the original trainer nor of ours" in out
    assert "train.datasets.egoexo.foo: 1: not a key of the original's data config nor of ours" in out
    assert "val.datasets.egoexo.wds_n_repeats: 4: the original's validation takes it from the train entry" in out
    assert sorted(cfg.model_config().modalities) == ["tok_cam", "tok_rgb"]
    # What ours cannot reproduce is marked, and counted in the summary.
    assert "  scheduler: 'inverse_sqrt-10000': differs: ours has the cosine schedule only" in out
    assert "cooldown_epochs (default): 10: differs: ours has no inverse_sqrt cooldown" in out
    assert "(4 change the run)" in out.splitlines()[-1]


def test_every_option_of_the_original_is_carried_or_reported(tmp_path):
    """A main config that sets every option of the original trainer to its code default: each one is carried to a
    key of ours or reported, never both, never neither; and the result loads."""
    _originals(tmp_path)
    raw = {**ORIGINAL_DEFAULTS, "data_config": DATA, "epoch_size": 1_000_000}
    t = translate(_write(tmp_path / "all.yaml", raw), world_size=8)
    reported = {s.key for s in t.skipped if s.source == "all.yaml"}
    assert not t.carried_keys & reported and t.carried_keys | reported == set(raw)
    assert not t.differing
    assert check(t, 8)["global_batch_size"] == 256 * 8


@pytest.mark.parametrize("key, value, named", [
    ("epochs", 100, "key 'epochs': 100: together with total_tokens 500"),
    ("blr", -1.0, "key 'blr': config key 'optim.blr': must be > 0, got -1.0"),
    ("batch_size", "four", "key 'batch_size': 'four': expected an integer"),
    ("model", "egom2p_huge", "key 'model': 'egom2p_huge': not an architecture we know"),
    ("epoch_size", 100, "key 'epoch_size': config key 'schedule.epoch_size'"),
])
def test_an_impossible_value_is_one_line_and_exit_2(tmp_path, capsys, key, value, named):
    main = _originals(tmp_path / "o")
    raw = yaml.safe_load(main.read_text())
    _write(main, {**raw, key: value})
    code, out, err = _convert(capsys, main, "--out", tmp_path / "ours", "--world-size", "256")
    assert code == 2 and err.count("\n") == 1 and err.startswith("egom2p-convert config: error: ")
    assert str(main) in err and named in err, err
    assert not (tmp_path / "ours").exists()  # checked before anything is written


def test_bad_data_config_and_bad_yaml_name_the_file(tmp_path, capsys):
    main = _originals(tmp_path / "o")
    data = yaml.safe_load((tmp_path / "o" / DATA).read_text())
    data["train"]["datasets"]["egogen"]["type"] = "huggingface"
    _write(tmp_path / "o" / DATA, data)
    code, _, err = _convert(capsys, main, "--out", tmp_path / "ours")
    assert code == 2 and err.count("\n") == 1 and "train.datasets.egogen.type': 'huggingface'" in err
    main.write_text("blr: [unclosed\n")
    code, _, err = _convert(capsys, main, "--out", tmp_path / "ours")
    assert code == 2 and err.count("\n") == 1 and str(main) in err and "not valid YAML" in err


def test_missing_files_name_them_and_the_options_find_them(tmp_path, capsys):
    main = _originals(tmp_path / "o")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "o" / DATA).rename(elsewhere / "data.yaml")
    code, _, err = _convert(capsys, main, "--out", tmp_path / "ours")
    assert code == 2 and err.count("\n") == 1 and DATA in err and "--data-config" in err
    alphas = tmp_path / "alphas"
    alphas.mkdir()
    (tmp_path / "o" / ALPHAS).rename(alphas / ALPHAS)
    code, _, err = _convert(capsys, main, "--out", tmp_path / "ours", "--data-config", elsewhere / "data.yaml")
    assert code == 2 and err.count("\n") == 1 and ALPHAS in err and "--alphas-dir" in err
    code, _, err = _convert(capsys, main, "--out", tmp_path / "ours", "--data-config", elsewhere / "data.yaml",
                            "--alphas-dir", alphas)
    assert code == 0, err
    code, _, err = _convert(capsys, tmp_path / "nope.yaml", "--out", tmp_path / "x")
    assert code == 2 and err.count("\n") == 1 and "nope.yaml" in err


def test_a_file_the_converter_did_not_write_is_never_overwritten(tmp_path, capsys):
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "train.yaml").write_text("mine: true\n")
    code, _, err = _convert(capsys, _originals(tmp_path / "o"), "--out", tmp_path / "ours")
    assert code == 2 and "was not written by egom2p-convert config" in err
    assert (tmp_path / "ours" / "train.yaml").read_text() == "mine: true\n"


def test_console_script_dispatch(tmp_path, capsys, monkeypatch):
    # The model wheel imports the trainer only for `config` (it does not depend on egom2p-train).
    tree = ast.parse((ROOT / "packages/egom2p-model/src/egom2p/model/convert.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top for a in n.names] + [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.startswith("egom2p.train")]
    # Without egom2p-train: one line saying what to install.
    monkeypatch.setitem(sys.modules, "egom2p.train.convert_config", None)
    code, _, err = _convert(capsys, tmp_path / "x.yaml", "--out", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1 and "pip install egom2p-train" in err
    monkeypatch.undo()
    # The checkpoint form is unchanged.
    assert convert_main(["--checkpoint", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.pth" in capsys.readouterr().err
    # The real console path, in a fresh interpreter.
    main = _originals(tmp_path / "orig")
    proc = subprocess.run([sys.executable, "-m", "egom2p.model.convert", "config", str(main), "--out",
                           str(tmp_path / "ours"), "--world-size", "256"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in (tmp_path / "ours").iterdir()} == {"train.yaml", "data.yaml", "alphas"}
    assert proc.stdout.splitlines()[-1].startswith("wrote ")

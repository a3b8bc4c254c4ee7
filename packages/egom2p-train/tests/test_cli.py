"""The command-line surface: frozen options, examples in --help, config errors exit 2 naming the key."""

import pytest
from egom2p.train.cli import build_parser, main


def test_cli_surface_is_frozen():
    actions = {a.dest: a.option_strings for a in build_parser()._actions}
    assert actions == {"help": ["-h", "--help"], "config": ["--config", "-c"], "overrides": []}


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "torchrun --standalone --nproc_per_node=8 -m egom2p.train" in text and "max_steps=20" in text


def test_bad_override_exits_2_naming_the_key(capsys, tmp_path):
    code = main([f"output_dir={tmp_path}", "data_config=x", "epoch_size=10", "batch_sise=3"])
    assert code == 2
    assert "unknown config key 'batch_sise'" in capsys.readouterr().err


def test_unknown_model_override_exits_2_naming_the_key(capsys, tmp_path):
    code = main([f"output_dir={tmp_path}", "data_config=x", "epoch_size=10", "model=egom2p-tiny",
                 "model_overrides.dimm=48"])
    assert code == 2
    assert "'model_overrides.dimm'" in capsys.readouterr().err

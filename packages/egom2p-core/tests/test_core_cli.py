"""The shared command-line helpers: defaults in --help, one-line usage errors, run_cli's exit codes and warnings."""

from __future__ import annotations

import argparse
import warnings

import pytest
import torch
from egom2p.core.cli import (
    CliParser,
    add_device_option,
    add_seed_option,
    parse_device,
    positive_int,
    run_cli,
)
from egom2p.core.errors import MissingExtraError, ShardError


def test_help_shows_meaningful_defaults_and_errors_are_one_line(capsys):
    parser = CliParser(prog="tool", description="d")
    add_seed_option(parser)
    add_device_option(parser)
    parser.add_argument("--count", type=positive_int, default=3, help="how many")
    parser.add_argument("--name", help="a name")
    parser.add_argument("--flag", action="store_true", help="a switch")
    parser.add_argument("--scale", type=float, default=0.0, help="zero is a real default")
    text = parser.format_help()
    assert "how many (default: 3)" in text and "random seed (default: 0)" in text and "(default: auto)" in text
    assert "zero is a real default (default: 0.0)" in text
    assert "a name (default" not in text and "a switch (default" not in text
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--count", "0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err == ("tool: error: argument --count: expected a positive integer, got '0' "
                                                 "(see tool --help)\n")


def test_parse_device():
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown device 'gpu'"):
        parse_device("gpu")


def test_parse_device_refuses_cuda_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(argparse.ArgumentTypeError, match="CUDA is not available"):
        parse_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert parse_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(argparse.ArgumentTypeError, match="has 1 CUDA devices"):
        parse_device("cuda:3")


@pytest.mark.parametrize("error", [ValueError("bad value\n  on two lines"), FileNotFoundError("x: missing"),
                                   ShardError("shard broken"), MissingExtraError("pip install 'x[y]'"),
                                   PermissionError("denied")])
def test_run_cli_turns_user_errors_into_one_line_exit_2(error, capsys):
    def command():
        raise error

    assert run_cli("tool", command) == 2
    err = capsys.readouterr().err
    assert err.startswith("tool: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_run_cli_shows_warnings_as_one_line_and_keeps_bugs_loud(capsys):
    def command():
        warnings.warn("clamped\nto 8", UserWarning, stacklevel=2)
        return 0

    assert run_cli("tool", command) == 0
    assert capsys.readouterr().err == "tool: warning: clamped to 8\n"

    def interrupted():
        raise KeyboardInterrupt

    assert run_cli("tool", interrupted) == 130

    def bug():
        raise KeyError("internal")

    with pytest.raises(KeyError):  # a bug is not a user error: its traceback stays
        run_cli("tool", bug)

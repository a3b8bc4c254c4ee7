"""Config files are data, not programs: the one reader refuses what a plain safe load lets through, in one line
naming the file (and the line)."""

from __future__ import annotations

import os
import re
import time
import tracemalloc
from pathlib import Path

import pytest
from egom2p.core import config_files
from egom2p.core.config_files import MAX_ALIAS_NODES, parse_yaml, read_config_file

REPO = Path(__file__).resolve().parents[3]


def refused(path: object, *fragments: str) -> str:
    """The one-line ValueError ``read_config_file(path)`` raises; it must hold the path and every fragment."""
    with pytest.raises(ValueError) as err:
        read_config_file(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_every_shipped_config_reads_as_a_plain_safe_load_does():
    import yaml

    # the repository's templates and the configs the wheels ship (egom2p.core.presets)
    shipped = sorted((REPO / "configs").rglob("*.yaml")) + sorted(REPO.glob("packages/*/src/egom2p/*/configs/*/*.yaml"))
    assert len(shipped) > 15
    for path in shipped:
        assert read_config_file(path) == yaml.safe_load(path.read_text()), path


@pytest.mark.parametrize("text, line, key", [
    ("a: 1\nb: 2\na: 3\n", 3, "a"),  # top level
    ("optim:\n  blr: 1\n  wd: 0\n  blr: 2\n", 4, "blr"),  # nested block mapping
    ("train: {weights: [1], weights: [2]}\n", 1, "weights"),  # one flow mapping on one line
    ("- {x: 1}\n- {y: 1,\n   y: 2}\n", 3, "y"),  # inside a list
    ("1: a\n1.0: b\n", 2, 1.0),  # equal keys of different spelling would merge into one
])
def test_duplicate_keys_are_refused_with_their_line(tmp_path, text, line, key):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    refused(path, f"line {line}: duplicate key {key!r} (first at line ")


def test_merge_keys_may_still_be_overridden():
    assert parse_yaml("base: &b {x: 1, y: 2}\nmine:\n  <<: *b\n  y: 3\n", "f") == {
        "base": {"x": 1, "y": 2}, "mine": {"x": 1, "y": 3}}


def aliases_adding(nodes_each: int, count: int) -> str:
    """An anchored list of ``nodes_each - 1`` scalars, then ``count`` aliases of it (each adds ``nodes_each`` nodes)."""
    return f"a: &a [{', '.join(['0'] * (nodes_each - 1))}]\nuses:\n" + "".join("  - *a\n" for _ in range(count))


def test_aliases_are_bounded_by_the_nodes_they_add():
    ok = parse_yaml(aliases_adding(1000, MAX_ALIAS_NODES // 1000), "ok.yaml")
    assert len(ok["uses"]) == MAX_ALIAS_NODES // 1000 and ok["uses"][0] == [0] * 999
    with pytest.raises(ValueError, match=rf"^big.yaml: line {MAX_ALIAS_NODES // 1000 + 3}: aliases expand the "
                                         rf"document beyond {MAX_ALIAS_NODES} nodes \(at \*a\)"):
        parse_yaml(aliases_adding(1000, MAX_ALIAS_NODES // 1000 + 1), "big.yaml")


def billion_laughs(levels: int) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [9, 30])
def test_a_billion_laughs_is_refused_fast_and_small(tmp_path, levels):
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs(levels))  # 10**levels "lol"s once expanded
    tracemalloc.start()
    start = time.perf_counter()
    try:
        message = refused(path, "line 5: aliases expand the document beyond")  # l4 takes it past 100000
        seconds, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 2 and peak < 20 * 2**20, (seconds, peak, message)


def test_a_recursive_alias_and_deep_nesting_are_refused():
    with pytest.raises(ValueError, match=r"^r.yaml: line 2: alias \*me refers to its own anchor"):
        parse_yaml("x: &me\n  - *me\n", "r.yaml")
    with pytest.raises(ValueError, match=r"^deep.yaml: nested too deeply"):
        parse_yaml("[" * 5_000 + "]" * 5_000, "deep.yaml")


def test_yaml_errors_and_json_files(tmp_path):
    with pytest.raises(ValueError, match=r"^o: not valid YAML at line 1: found undefined alias 'nope'"):
        parse_yaml("a: *nope", "o")
    path = tmp_path / "config.json"
    path.write_text('{"dim": 48, "modalities": {"tok_cam": {"vocab_size": 256, "length": 30}}}')
    assert read_config_file(path) == {"dim": 48, "modalities": {"tok_cam": {"vocab_size": 256, "length": 30}}}
    path.write_text('{"dim": 48,\n "dim": 64}')
    refused(path, "line 2: duplicate key 'dim'")


def test_paths_that_are_not_a_text_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"^config file not found: {re.escape(str(tmp_path / 'nope.yaml'))}$"):
        read_config_file(tmp_path / "nope.yaml")
    refused(tmp_path, "is a folder, not a config file")
    loop = tmp_path / "loop.yaml"
    loop.symlink_to("loop.yaml")
    refused(loop, "a symlink loop")
    dangling = tmp_path / "dangling.yaml"
    dangling.symlink_to(tmp_path / "gone.yaml")
    with pytest.raises(FileNotFoundError, match=f"dangling.yaml is a symlink to {re.escape(str(tmp_path))}/gone.yaml"):
        read_config_file(dangling)
    (tmp_path / "train.yaml").write_text("seed: 1\n")
    refused(tmp_path / "train.yaml" / "x.yaml", f"{tmp_path / 'train.yaml'} is a file, not a folder")
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # reading it would block forever
    refused(fifo, "is not a regular file")


@pytest.mark.parametrize("data, line, byte", [
    (b"seed: 1\nname: \x00\x00\x00", 2, "0x00"),  # NUL: binary whatever the encoding
    (b"seed: 1\n\nname: caf\xe9\n", 3, "0xe9"),  # latin-1, not UTF-8
    (b"\x1f\x8b\x08\x00", 1, "0x1f"),  # a gzip file
    (b"a: 1\n\tb: \xff", 2, "0xff"),  # a tab is text, the invalid byte after it is not
])
def test_binary_files_are_refused_with_their_line(tmp_path, data, line, byte):
    path = tmp_path / "bin.yaml"
    path.write_bytes(data)
    refused(path, f"line {line}: a binary file (byte {byte}", "not a text config file")


def test_oversized_files_are_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(config_files, "MAX_CONFIG_BYTES", 64)
    path = tmp_path / "big.yaml"
    path.write_text("a: 1\n" * 13)  # 65 bytes
    refused(path, "65 bytes; a config file is at most 64 bytes")
    path.write_text("a: 1\n" * 12)
    refused(path, "duplicate key 'a'")  # read, then refused for its content


def test_every_config_read_goes_through_the_one_reader():
    # No YAML parse in the packages' sources but the reader's: a second one would let a bomb or duplicate through.
    sources = sorted(REPO.glob("packages/*/src/egom2p/**/*.py"))
    parsers = [f"{p.relative_to(REPO)}" for p in sources if p.name != "config_files.py"
               and re.search(r"yaml\.(safe_)?load\(|yaml\.load_all|SafeLoader\(", p.read_text())]
    assert sources and not parsers, parsers

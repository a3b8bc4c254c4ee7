"""egom2p-data's common mistakes (issue 15): each exits with the style's code and one line naming the problem.

In-process through ``main`` (an exception escaping it fails the test, as a traceback would); the console
script itself is run in ``test_data_cli_synth.py``.
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
from egom2p.data.cli import main
from egom2p.data.shards import write_shards


@pytest.fixture
def run(capsys, monkeypatch):
    """``run(*argv, cwd=...)`` -> (returncode, stdout, stderr) of ``egom2p-data ARGV`` without AWS credentials."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL",
                "EGOM2P_S3_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                       "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)

    def call(*argv: str, cwd) -> SimpleNamespace:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse: usage errors, --help, --version
            code = exc.code
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return call


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("mistakes")
    write_shards(root / "shards", "ds", {"cam": np.zeros((4, 8), dtype=np.int64)})
    (root / "tokens/cam").mkdir(parents=True)
    np.save(root / "tokens/cam/a.npy", np.zeros(8, dtype=np.int64))
    np.save(root / "floats.npy", np.zeros((2, 8)))
    (root / "not-a-tar.tar").write_bytes(b"junk")
    return root


MISTAKES = [
    # (argv, exit code, what the one line must say)
    (["inspect", "--data", "shards/[cam]/ds/shard-{000000..000003}.tar"], 2,
     "3 of 4 shard files of shards/[cam]/ds/shard-{000000..000003}.tar are missing: shards/cam/ds/shard-000001.tar"),
    (["validate", "--data", "nowhere/[cam]/ds/shard-000000.tar"], 2, "no shard file of nowhere/[cam]/ds/shard-000000.tar exists"),
    (["inspect", "--data", "nowhere"], 2, "--data nowhere: not a shard pattern"),
    (["inspect", "--data", "shards"], 2, "--data shards is a directory: also give --dataset NAME"),
    (["inspect", "--data", "shards", "--dataset", "other"], 2, "no tar shards under shards/<folder>/other/"),
    (["inspect", "--data", "shards/[cam]/ds/shard-000000.tar", "--dataset", "ds"], 2, "--dataset applies to a root directory"),
    (["validate", "--data", "shards/[cam]/ds/shard-000000.tar", "--modalities", "nope.yaml"], 2, "config file not found: nope.yaml"),
    # a misspelt preset name: the path tried and the names egom2p-core ships
    (["validate", "--data", "shards/[cam]/ds/shard-000000.tar", "--modalities", "tinyy"], 2,
     "config file not found: tinyy, and the modalities presets are egom2p, tiny, tiny-hand"),
    (["validate", "--data", "shards/[cam]/ds/shard-000000.tar", "--expect-samples-per-shard", "0"], 2,
     "argument --expect-samples-per-shard: expected a positive integer, got '0'"),
    (["inspect", "--data", "not-a-tar.tar"], 1, "nothing to inspect: no readable sample"),
    # with the [s3] extra: no credentials for the bucket; without it: the one-line install hint
    (["validate", "--data", "s3://bucket/[cam]/ds/shard-000000.tar"], 2,
     "access denied" if importlib.util.find_spec("boto3") else "s3:// paths need boto3"),
    (["inspect"], 2, "the following arguments are required: --data"),
    (["write", "--stacked", "cam=floats.npy", "--dataset", "x"], 2, "the following arguments are required: --out"),
    (["write", "--stacked", "cam=floats.npy", "--out", "o", "--dataset", "x"], 2, "floats.npy: token array has dtype float64"),
    (["write", "--stacked", "cam=missing.npy", "--out", "o", "--dataset", "x"], 2, "cannot read missing.npy"),
    (["write", "--from-dir", "tokens", "--out", "o", "--dataset", "../../x"], 2, "dataset '../../x' must be a plain name"),
    (["write", "--from-dir", "tokens", "--out", "o", "--dataset", "x", "--samples-per-shard", "-3"], 2,
     "expected a positive integer, got '-3'"),
    (["synth", "--train-samples", "0"], 2, "argument --train-samples: expected a positive integer"),
    (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize("argv, code, message", MISTAKES, ids=[" ".join(m[0])[:60] for m in MISTAKES])
def test_common_mistakes_exit_with_one_line(run, work, argv, code, message):
    result = run(*argv, cwd=work)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("egom2p-data") and message in lines[0], result.stderr


def test_help_shows_every_option_with_help_and_defaults(run, work):
    for command in ("write", "inspect", "validate", "synth"):
        out = run(command, "--help", cwd=work).stdout
        assert "examples:" in out
        options = [line.split()[0] for line in out.splitlines() if line.startswith("  --")]
        assert options, out
    synth = run("synth", "--help", cwd=work).stdout
    assert "(default: data/demo)" in synth and "(default: 2048)" in synth and "(default: 0)" in synth
    write = run("write", "--help", cwd=work).stdout
    assert "(default: 1000)" in write and "--root" not in write  # the old name is a hidden alias
    assert run("--version", cwd=work).stdout.startswith("egom2p-data 0.")

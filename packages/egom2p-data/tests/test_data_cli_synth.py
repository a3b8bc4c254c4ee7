"""The egom2p-data CLI and the synthetic demo dataset's rules."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from egom2p.core.layout import expand_shard_pattern
from egom2p.core.modalities import load_modality_specs
from egom2p.core.pairing import read_shard
from egom2p.core.shards import decode_tokens
from egom2p.data import __version__
from egom2p.data.cli import main
from egom2p.data.shards import write_shards
from egom2p.data.synth import MOTIONS, PERMUTATION, SALIENT_TOKEN, chance_accuracy, generate_samples, perfect_accuracy


def test_synth_rules_hold():
    s = generate_samples(200, seed=5)
    assert s["rgb"].shape == (200, 2, 4, 4) and s["cam"].shape == (200, 8) and s["gaze"].shape == (200, 8)
    assert np.array_equal(s["depth"], PERMUTATION[s["rgb"]])
    assert ((s["rgb"][:, 0] == SALIENT_TOKEN).sum((1, 2)) == 1).all()
    # Frame 1 is frame 0 moved by one of the motions, and cam tokens identify that motion.
    for rgb, cam in zip(s["rgb"][:20], s["cam"][:20]):
        motion = cam[0] // 8
        assert np.array_equal(np.roll(rgb[0], MOTIONS[motion], axis=(0, 1)), rgb[1])
        assert np.array_equal(cam, (8 * motion + 3 * np.arange(8)) % 64)
    # Gaze tokens 0-3 locate the salient cell in frame 0, tokens 4-7 in frame 1.
    for f, tokens in ((0, slice(0, 4)), (1, slice(4, 8))):
        _, y, x = np.nonzero(s["rgb"][:, f] == SALIENT_TOKEN)
        assert np.array_equal(s["gaze"][:, tokens], (4 * y + x)[:, None] + 5 * np.arange(8)[tokens])
    assert np.array_equal(generate_samples(10, seed=1)["rgb"], generate_samples(10, seed=1)["rgb"])
    for k in ("rgb", "depth"):
        assert s[k].max() < 64
    assert s["cam"].max() < 64 and s["gaze"].max() < 64


def test_accuracy_levels():
    assert perfect_accuracy("rgb2depth") == 1.0 and chance_accuracy("rgb2cam") == 1 / 8
    assert chance_accuracy("rgb2depth") == pytest.approx(2 / 32)
    with pytest.raises(ValueError, match="unknown synth task"):
        perfect_accuracy("rgb2audio")


def test_cli_synth_then_validate(tmp_path, repo_root, capsys):
    assert main(["synth", "--out", str(tmp_path), "--train-samples", "20", "--val-samples", "6", "--samples-per-shard", "8"]) == 0
    out = capsys.readouterr().out
    assert "train/synth_nogaze" in out and "shard-{000000..000002}.tar" in out
    pattern = f"{tmp_path}/train/[cam,depth,gaze,rgb]/synth_full/shard-{{000000..000002}}.tar"
    assert main(["validate", "--data", pattern, "--modalities", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "samples: 20; samples per shard: 8 x2, 4 x1" in out
    # Wrong modality file: shapes and vocabularies no longer fit -> non-zero exit naming the problem.
    assert main(["validate", "--data", pattern, "--modalities", "egom2p"]) == 1
    assert "tok_cam has shape (8,), expected [30] (training skips it: bad_tokens)" in capsys.readouterr().out
    assert main(["validate", "--data", pattern, "--modalities", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    # A root directory and a dataset name instead of a pattern.
    assert main(["validate", "--data", str(tmp_path / "train"), "--dataset", "synth_nogaze",
                 "--modalities", "tiny"]) == 0
    assert "samples: 20" in capsys.readouterr().out


def test_cli_validate_flags_misaligned_keys(tmp_path, capsys):
    write_shards(tmp_path, "d", {"rgb": np.zeros((3, 4), dtype=np.int64)}, keys=["a", "b", "c"])
    write_shards(tmp_path, "d", {"cam": np.zeros((3, 4), dtype=np.int64)}, keys=["a", "c", "b"])
    assert main(["validate", "--data", f"{tmp_path}/[rgb,cam]/d/shard-000000.tar"]) == 1
    assert "different order" in capsys.readouterr().out
    assert main(["inspect", "--data", f"{tmp_path}/[rgb,cam]/d/shard-000000.tar"]) == 0


def test_cli_write_from_dir_and_stacked(tmp_path, capsys):
    src = tmp_path / "tokens"
    for folder in ("rgb", "cam"):
        (src / folder).mkdir(parents=True)
        for i in range(3):
            np.save(src / folder / f"clip{i}.npy", np.full(4, i, dtype=np.int32))
    assert main(["write", "--from-dir", str(src), "--out", str(tmp_path / "out"), "--dataset", "ds", "--subdir", "token"]) == 0
    pattern = capsys.readouterr().out.strip()
    assert pattern == f"{tmp_path}/out/[cam,rgb]/ds/token/shard-000000.tar"
    samples = read_shard(pattern)
    assert [k for k, _ in samples] == ["clip0", "clip1", "clip2"]
    assert decode_tokens(*samples[2][1]["rgb"]).tolist() == [2, 2, 2, 2]
    np.save(tmp_path / "cam.npy", np.arange(10).reshape(5, 2))
    assert main(["write", "--stacked", f"cam={tmp_path / 'cam.npy'}", "--root", str(tmp_path / "o2"), "--dataset", "s",
                 "--samples-per-shard", "2"]) == 0  # --root: the old name of --out, still accepted
    assert len(expand_shard_pattern(capsys.readouterr().out.strip())) == 3
    np.save(tmp_path / "float.npy", np.zeros((2, 3)))
    (src / "cam" / "clip2.npy").unlink()
    for argv, message in (
        (["--from-dir", str(src)], "different sample keys"),
        (["--from-dir", str(tmp_path / "nope")], "nope is not a folder"),
        (["--stacked", "cam"], "FOLDER=FILE"),
        (["--stacked", f"cam={tmp_path / 'float.npy'}"], "dtype float64"),
    ):
        capsys.readouterr()
        assert main(["write", *argv, "--out", str(tmp_path / "o3"), "--dataset", "ds"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("egom2p-data: error: ") and message in err and err.count("\n") == 1


def test_console_script_help_and_version():
    out = subprocess.run([sys.executable, "-m", "egom2p.data.cli", "--help"], capture_output=True, text=True, check=True).stdout
    assert "egom2p-data synth --out data/demo" in out and "validate" in out
    out = subprocess.run([sys.executable, "-m", "egom2p.data.cli", "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"egom2p-data {__version__}"


def test_tiny_modalities_match_synth(repo_root):
    specs = load_modality_specs("tiny")
    s = generate_samples(4)
    for spec in specs.values():
        assert all(spec.check_tokens(sample) is None for sample in s[spec.folder])

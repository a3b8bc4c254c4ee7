"""``egom2p-data validate`` agrees with training (issue 16): every sample training skips is a problem, and so is
every lost sample training cannot see (truncated or empty tars, key-count mismatches, short shards)."""

from __future__ import annotations

import io
import logging
import tarfile

import numpy as np
import pytest
from egom2p.core.shards import encode_tokens, write_tar
from egom2p.data import build_val_loaders, load_data_config
from egom2p.data.checks import inspect_shards
from egom2p.data.cli import main
from egom2p.data.shards import write_shards
from egom2p.data.synth import generate_samples

PATTERN = "{root}/[cam,rgb]/ds/shard-{{000000..000003}}.tar"


@pytest.fixture
def shards(tmp_path):
    """4 shards of 8 samples (rgb + cam of the demo rules)."""
    s = generate_samples(32, seed=1)
    write_shards(tmp_path, "ds", {"rgb": s["rgb"], "cam": s["cam"]}, samples_per_shard=8)
    return tmp_path


def cut_at_member(path, keep: int) -> None:
    """Truncate a tar right after its first ``keep`` members (a copy cut short at a member boundary)."""
    data = path.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        offset = tar.getmembers()[keep].offset
    path.write_bytes(data[:offset])


def validate(root, tiny_path, *extra):
    return main(["validate", "--data", PATTERN.format(root=root), "--modalities", str(tiny_path), *extra])


def test_tar_truncated_at_a_member_boundary_in_every_folder(shards, repo_root, capsys):
    """The keys still agree across folders, yet samples are gone: the end-of-archive marker and the count catch it."""
    for folder in ("rgb", "cam"):
        cut_at_member(shards / folder / "ds/shard-000001.tar", keep=3)
    tiny = "tiny"
    assert validate(shards, tiny) == 1
    out = capsys.readouterr().out
    assert "samples: 27; samples per shard: 8 x3, 3 x1" in out
    assert "rgb/ds/shard-000001.tar: ends without the tar end-of-archive marker after 3 members" in out
    assert "[cam,rgb]/ds/shard-000001.tar: 3 samples while the other shards of the pattern hold 8" in out
    assert "keys differ" not in out


def test_truncated_last_shard_needs_the_marker_or_the_expected_count(shards, repo_root, capsys):
    tiny = "tiny"
    for folder in ("rgb", "cam"):
        path = shards / folder / "ds/shard-000003.tar"
        cut_at_member(path, keep=5)
        path.write_bytes(path.read_bytes() + bytes(1024))  # even with an end marker appended ...
    assert validate(shards, tiny) == 0  # ... a short last shard is normal without more knowledge
    capsys.readouterr()
    assert validate(shards, tiny, "--expect-samples-per-shard", "8") == 0  # 1..8 in the last shard
    capsys.readouterr()
    for folder in ("rgb", "cam"):
        cut_at_member(shards / folder / "ds/shard-000002.tar", keep=7)
        path = shards / folder / "ds/shard-000002.tar"
        path.write_bytes(path.read_bytes() + bytes(1024))
    assert validate(shards, tiny, "--expect-samples-per-shard", "8") == 1
    assert "shard-000002.tar: 7 samples, expected 8" in capsys.readouterr().out


def test_empty_tar_and_key_count_mismatch(shards, repo_root, capsys):
    write_tar(shards / "rgb/ds/shard-000002.tar", [])
    write_tar(shards / "cam/ds/shard-000002.tar", [])
    cut_at_member(shards / "rgb/ds/shard-000003.tar", keep=6)
    assert validate(shards, "tiny") == 1
    out = capsys.readouterr().out
    assert "rgb/ds/shard-000002.tar: holds no samples" in out and "cam/ds/shard-000002.tar: holds no samples" in out
    assert "shard-000003.tar: folder 'rgb' vs 'cam': keys differ (6 vs 8 samples" in out
    assert "shard-000003.tar:sample-00000030: no file for modality 'tok_rgb' (training skips it: missing_modality)" in out


def test_duplicate_keys_are_a_problem(tmp_path, capsys):
    member = encode_tokens(np.zeros(8, dtype=np.int64))
    write_tar(tmp_path / "cam/ds/shard-000000.tar", [("a.npz", member), ("b.npz", member), ("a.npz", member)])
    assert main(["validate", "--data", f"{tmp_path}/[cam]/ds/shard-000000.tar"]) == 1
    assert "members a.npz and a.npz have the same sample key 'a'" in capsys.readouterr().out  # core's reader refuses it


def test_validate_flags_exactly_the_samples_training_skips(tmp_path, tiny, repo_root, caplog, capsys):
    s = generate_samples(24, seed=2)
    rgb, cam = list(s["rgb"]), list(s["cam"])
    rgb[2] = rgb[2].copy()
    rgb[2][0, 0, 0] = 500                                   # outside the vocabulary
    cam[5] = np.zeros(9, dtype=np.int64)                    # wrong shape
    rgb[9] = np.zeros((2, 4, 4), dtype=np.int64) - 1        # negative ids
    write_shards(tmp_path, "ds", {"rgb": rgb, "cam": cam}, samples_per_shard=8)
    bad = tmp_path / "cam/ds/shard-000002.tar"              # a float member where training expects tokens
    with tarfile.open(bad) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, np.zeros(8, dtype=np.float32))
    members[4] = (members[4][0], buffer.getvalue())
    write_tar(bad, members)

    report = inspect_shards(PATTERN.format(root=tmp_path).replace("000003", "000002"), tiny)
    flagged = {p.split(".tar:")[1].split(":")[0] for p in report.problems}
    cfg = load_data_config({"train": {"datasets": {"ds": {"in_domains": "tok_rgb-tok_cam", "out_domains": "tok_rgb-tok_cam",
                                                          "input_alphas": "1.0", "target_alphas": "1.0", "data_path": "x.tar"}},
                                      "num_input_tokens": 8, "num_target_tokens": 8, "max_bad_fraction": 1.0},
                            "val": {"datasets": {"ds": {"data_path": PATTERN.format(root=tmp_path).replace("000003", "000002")}}}})
    with caplog.at_level(logging.WARNING, logger="egom2p.data"):
        batches = list(build_val_loaders(cfg, tiny, batch_size=4)["ds"])
    skipped = {r.getMessage().split(".tar:")[1].split(" ")[0] for r in caplog.records if r.getMessage().startswith("skipping sample")}
    assert skipped == flagged == {"sample-00000002", "sample-00000005", "sample-00000009", "sample-00000020"}
    assert sum(len(b["tok_rgb"]["tensor"]) for b in batches) == 20 == report.samples - len(flagged)

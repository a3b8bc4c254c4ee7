"""``egom2p-data write`` never writes over a dataset unless told: refused, ``--overwrite``, ``--append`` (issue 25)."""

from __future__ import annotations

import numpy as np
import pytest
from egom2p.core.pairing import read_shard
from egom2p.core.shards import decode_tokens
from egom2p.data.cli import main
from egom2p.data.shards import write_shards


def _stacked(tmp_path, n: int, value: int) -> list[str]:
    """``--stacked`` arguments of ``n`` samples in rgb and cam, sample i holding ``value + i``."""
    for folder, width in (("rgb", 4), ("cam", 2)):
        np.save(tmp_path / f"{folder}{value}.npy", value + np.arange(n)[:, None] + np.zeros((1, width), np.int64))
    return ["--stacked", f"rgb={tmp_path / f'rgb{value}.npy'}", f"cam={tmp_path / f'cam{value}.npy'}"]


def _write(capsys, tmp_path, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["write", *map(str, argv), "--out", str(tmp_path / "out"), "--dataset", "ds", "--samples-per-shard", "3"])
    captured = capsys.readouterr()
    return code, captured.out.strip(), captured.err


def _samples(pattern: str) -> list[tuple[str, int, int]]:
    """(key, rgb value, cam value) of every sample of ``pattern``."""
    from egom2p.core.layout import expand_shard_pattern

    rows = []
    for url in expand_shard_pattern(pattern):
        for key, raw in read_shard(url):
            rgb, cam = (decode_tokens(*raw[f]) for f in ("rgb", "cam"))
            rows.append((key, int(rgb[0]), int(cam[0])))
    return rows


def _validate(capsys, pattern: str) -> int:
    code = main(["validate", "--data", pattern, "--expect-samples-per-shard", "3"])
    capsys.readouterr()
    return code


def test_an_existing_dataset_is_refused_then_overwritten(tmp_path, capsys):
    code, first, _ = _write(capsys, tmp_path, *_stacked(tmp_path, 7, 10))
    assert code == 0 and first == f"{tmp_path}/out/[cam,rgb]/ds/shard-{{000000..000002}}.tar"
    before = _samples(first)
    code, out, err = _write(capsys, tmp_path, *_stacked(tmp_path, 4, 50))
    assert code == 2 and out == ""
    assert err == (f"egom2p-data: error: {tmp_path / 'out/cam/ds'} already holds 3 shard file(s); pass --overwrite to "
                   "replace them, --append to add to them, or choose another --dataset or --out\n")
    assert _samples(first) == before

    code, out, err = _write(capsys, tmp_path, *_stacked(tmp_path, 4, 50), "--overwrite")
    assert code == 0 and err == "" and out == f"{tmp_path}/out/[cam,rgb]/ds/shard-{{000000..000001}}.tar"
    assert _samples(out) == [(f"sample-{i:08d}", 50 + i, 50 + i) for i in range(4)]
    assert sorted(p.name for p in (tmp_path / "out/rgb/ds").iterdir()) == ["shard-000000.tar", "shard-000001.tar"]
    assert sorted(p.name for p in (tmp_path / "out/rgb").iterdir()) == ["ds"]  # nothing staged is left
    assert _validate(capsys, out) == 0


def test_append_continues_numbering_and_keys(tmp_path, capsys):
    _write(capsys, tmp_path, *_stacked(tmp_path, 7, 10))
    code, out, err = _write(capsys, tmp_path, *_stacked(tmp_path, 4, 50), "--append")
    assert code == 0 and err == "" and out == f"{tmp_path}/out/[cam,rgb]/ds/shard-{{000000..000004}}.tar"
    samples = _samples(out)
    assert samples[:7] == [(f"sample-{i:08d}", 10 + i, 10 + i) for i in range(7)]
    assert samples[7:] == [(f"sample-{7 + i:08d}", 50 + i, 50 + i) for i in range(4)]
    assert _validate(capsys, out) == 1  # shard 2 holds 1 sample and is not the last: validate says so
    assert _validate(capsys, f"{tmp_path}/out/[cam,rgb]/ds/shard-{{000000..000001}}.tar") == 0

    # A key already in the dataset is refused, naming it and its shard; nothing is written.
    src = tmp_path / "tokens"
    for folder in ("rgb", "cam"):
        (src / folder).mkdir(parents=True)
        np.save(src / folder / "sample-00000008.npy", np.zeros(4, np.int64))
    code, out, err = _write(capsys, tmp_path, "--from-dir", src, "--append")
    assert code == 2 and err == (f"egom2p-data: error: --append: sample key 'sample-00000008' is already in "
                                 f"{tmp_path / 'out/cam/ds/shard-000003.tar'}\n")
    assert _samples(f"{tmp_path}/out/[cam,rgb]/ds/shard-{{000000..000004}}.tar") == samples


def test_overwrite_and_append_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        _write(capsys, tmp_path, *_stacked(tmp_path, 2, 0), "--overwrite", "--append")
    assert info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


class _Failing:
    """A lazy sequence of ``n`` samples whose item ``fail_at`` cannot be read (a disk error mid-write)."""

    def __init__(self, n: int, fail_at: int):
        self.n, self.fail_at = n, fail_at

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        if i == self.fail_at:
            raise OSError(f"cannot read sample {i}")
        return np.full(4, i, np.int64)


@pytest.mark.parametrize("mode", ["new", "overwrite", "append"])
def test_a_failed_write_leaves_the_dataset_as_it_was(tmp_path, mode):
    root = tmp_path / "out"
    if mode != "new":
        write_shards(root, "ds", {"rgb": np.zeros((5, 4), np.int64), "cam": np.zeros((5, 4), np.int64)},
                     samples_per_shard=2)
    before = sorted((str(p.relative_to(tmp_path)), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    with pytest.raises(OSError, match="cannot read sample 7"):
        write_shards(root, "ds", {"rgb": np.ones((9, 4), np.int64), "cam": _Failing(9, 7)}, samples_per_shard=2,
                     mode=mode, keys=[f"k{i}" for i in range(9)])
    after = sorted((str(p.relative_to(tmp_path)), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    assert after == before  # rgb's finished shards never appear without their cam partners

"""Batch inference reruns: egom2p-generate --data/--task/--out DIR on the demo's val
shards. One real console-script run checks the exit code and the one line; the others call its main in-process."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from egom2p.core.layout import expand_folders
from egom2p.core.shards import write_tar
from egom2p.generate.cli import main as generate_main
from helpers import assert_user_error, cli, members, scenario


def _rgb(shards: dict[str, str]) -> Path:
    """The demo's val rgb shard (8 samples)."""
    return Path(expand_folders(shards["val/synth_full"])["rgb"])


def _argv(checkpoint: Path, data: str, out: Path, *extra: str) -> list[str]:
    return ["--checkpoint", str(checkpoint), "--device", "cpu", "--data", data, "--task", "rgb2cam",
            "--out", str(out), *extra]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = generate_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@scenario("batch-rerun-changed-settings")
def test_batch_rerun_changed_settings(checkpoint, shards, tmp_path, capsys):
    out = tmp_path / "preds"
    argv = _argv(checkpoint, shards["val/synth_full"], out)
    assert _run(argv, capsys)[0] == 0
    proc = cli("egom2p-generate", *argv, "--temp", "0.5")
    assert_user_error(proc, "temperature", "0.01", "0.5", "--new-root")
    code, stdout, _ = _run([*argv, "--temp", "0.5", "--new-root"], capsys)
    assert code == 0 and f"writing to {out}-2" in stdout
    assert len(members(out.with_name("preds-2") / "cam" / "synth_full" / "shard-000000.tar")) == 8


@scenario("batch-rerun-same")
def test_batch_rerun_same(checkpoint, shards, tmp_path, capsys):
    argv = _argv(checkpoint, shards["val/synth_full"], tmp_path / "preds")
    assert _run(argv, capsys)[0] == 0
    shard = tmp_path / "preds" / "cam" / "synth_full" / "shard-000000.tar"
    before = os.stat(shard).st_mtime_ns
    code, stdout, stderr = _run(argv, capsys)
    assert code == 0 and "0 samples in 0 new shards" in stdout and "1 finished shards skipped" in stdout, stdout
    assert os.stat(shard).st_mtime_ns == before and not stderr


@scenario("batch-truncated-output-shard")
def test_batch_truncated_output_shard(checkpoint, shards, tmp_path, capsys):
    argv = _argv(checkpoint, shards["val/synth_full"], tmp_path / "preds")
    assert _run(argv, capsys)[0] == 0
    shard = tmp_path / "preds" / "cam" / "synth_full" / "shard-000000.tar"
    good = shard.read_bytes()
    shard.write_bytes(good[:700])  # cut inside the first member
    code, stdout, stderr = _run(argv, capsys)
    assert code == 0 and f"{shard}: not a finished shard" in stderr and "generating it again" in stderr
    assert "1 damaged shards generated again" in stdout and shard.read_bytes() == good


@scenario("batch-colliding-names")
def test_batch_colliding_names(checkpoint, shards, tmp_path, capsys):
    for folder in ("a", "b"):  # the same file name in two folders
        target = tmp_path / "in" / folder / "rgb" / "shard-000000.tar"
        target.parent.mkdir(parents=True)
        shutil.copy(_rgb(shards), target)
    out = tmp_path / "preds"
    assert _run(_argv(checkpoint, f"{tmp_path / 'in'}/{{a,b}}/[rgb]/shard-000000.tar", out), capsys)[0] == 0
    assert [len(members(out / f / "cam" / "shard-000000.tar")) for f in ("a", "b")] == [8, 8]
    # two members of one tar whose keys collide (x/k.npz and y/k.npz): refused, naming the key
    data = members(_rgb(shards))[0][1]
    write_tar(tmp_path / "dup" / "rgb" / "shard.tar", [("x/k.npz", data), ("y/k.npz", data)])
    code, _, stderr = _run(_argv(checkpoint, f"{tmp_path / 'dup'}/[rgb]/shard.tar", tmp_path / "dup-preds"), capsys)
    assert code == 2 and "members x/k.npz and y/k.npz have the same sample key 'k'" in stderr
    assert stderr.count("\n") == 1


@scenario("batch-escaping-name")
def test_batch_escaping_name(checkpoint, shards, tmp_path, capsys):
    for folder in ("in/rgb", "x/rgb"):
        (tmp_path / folder).mkdir(parents=True)
        shutil.copy(_rgb(shards), tmp_path / folder / "shard.tar")
    # the rgb tar is in/rgb/../../x/rgb/shard.tar; its output preds/cam/../../x/rgb/shard.tar would be that input
    escaping = f"{tmp_path / 'in'}/[rgb]/../../x/rgb/shard.tar"
    code, _, stderr = _run(_argv(checkpoint, escaping, tmp_path / "preds"), capsys)
    assert code == 2 and "would leave the output root" in stderr and stderr.count("\n") == 1, stderr
    assert (tmp_path / "x" / "rgb" / "shard.tar").read_bytes() == _rgb(shards).read_bytes()
    (tmp_path / "preds").mkdir(exist_ok=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "preds" / "cam").symlink_to(tmp_path / "elsewhere")
    code, _, stderr = _run(_argv(checkpoint, f"{tmp_path / 'in'}/[rgb]/shard.tar", tmp_path / "preds"), capsys)
    assert code == 2 and f"{tmp_path / 'preds' / 'cam' / 'shard.tar'}: a symbolic link on the way leads outside" in stderr
    assert not any((tmp_path / "elsewhere").iterdir())

"""Batch inference: egom2p-generate --data/--task/--out DIR (and generate_shards) writes predictions as
shards in the input's layout, resumably; egom2p-eval on those predictions agrees with them."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from egom2p.core.shards import encode_tokens, read_tar_members, write_tar
from egom2p.generate.cli import main as generate_main
from egom2p.generate.eval_cli import main as eval_main
from egom2p.generate.infer import generate_shards
from egom2p.generate.shards import DataShard, list_data_shards
from egom2p.generate.tasks import TaskRunner


def _shards(root, counts=(3, 2)):
    rng = np.random.default_rng(0)
    rgb = {}
    for shard, count in enumerate(counts):
        members = []
        for i in range(count):
            key = f"s{shard}-{i}"
            rgb[key] = rng.integers(0, 256, (2, 4, 4))
            members.append((f"{key}.npz", encode_tokens(rgb[key])))
        write_tar(root / "rgb" / "val" / f"shard-{shard:06d}.tar", members)
    return rgb, str(root) + "/[rgb]/val/shard-{000000..000001}.tar"


def _read(path):
    return {key: np.load(io.BytesIO(data))["arr_0"] for key, _, data in read_tar_members(str(path))}


def test_output_paths_follow_the_input_layout(tmp_path):
    shards = list_data_shards("in/[rgb,cam]/val/sub/shard-{000000..000001}.tar", ["rgb", "cam", "depth"])
    assert [s.output_path("out", "depth") for s in shards] == ["out/depth/val/sub/shard-000000.tar",
                                                              "out/depth/val/sub/shard-000001.tar"]
    assert shards[1].tars == {"rgb": "in/rgb/val/sub/shard-000001.tar", "cam": "in/cam/val/sub/shard-000001.tar"}
    assert DataShard({"rgb": "r/x-rgb.tar"}, "x-", ".tar").output_path("o", "depth") == "o/x-depth.tar"
    _shards(tmp_path)
    found = list_data_shards(tmp_path, ["rgb", "depth"], "val")
    assert [s.output_path("o", "depth") for s in found] == ["o/depth/val/shard-000000.tar", "o/depth/val/shard-000001.tar"]
    (tmp_path / "cam" / "files").mkdir(parents=True)
    np.save(tmp_path / "cam" / "files" / "k.npy", np.zeros(8, np.int64))
    with pytest.raises(ValueError, match="stored as per-sample files, not tar shards"):
        list_data_shards(tmp_path, ["cam"], "files")


def test_generate_shards_writes_every_sample_and_resumes(tiny_model, tmp_path):
    rgb, pattern = _shards(tmp_path / "in")
    out = tmp_path / "preds"
    summary = generate_shards(tiny_model, pattern, "rgb2depth", out, batch_size=2)
    assert (summary["shards"], summary["written"], summary["skipped"], summary["samples"]) == (2, 2, 0, 5)
    first, second = out / "depth" / "val" / "shard-000000.tar", out / "depth" / "val" / "shard-000001.tar"
    predicted = {**_read(first), **_read(second)}
    assert list(_read(first)) == ["s0-0", "s0-1", "s0-2"] and list(predicted) == list(rgb)  # input order, every key
    assert all(tokens.shape == (2, 4, 4) and tokens.dtype == np.int64 for tokens in predicted.values())
    # the tokens are the task's generation, in the same batches (2 + 1, then 2) with the same seed
    runner = TaskRunner(tiny_model, "rgb2depth")
    want = np.concatenate([runner.predict(np.stack([rgb[k] for k in keys])) for keys in
                           (["s0-0", "s0-1"], ["s0-2"], ["s1-0", "s1-1"])])
    np.testing.assert_array_equal(np.stack([predicted[k].reshape(-1) for k in rgb]), want)
    # a run that stopped after the first shard: only the missing one is generated, with the same bytes
    before = second.read_bytes()
    second.unlink()
    mtime = os.stat(first).st_mtime_ns
    summary = generate_shards(tiny_model, pattern, "rgb2depth", out, batch_size=2)
    assert (summary["written"], summary["skipped"], summary["samples"]) == (1, 1, 2)
    assert second.read_bytes() == before and os.stat(first).st_mtime_ns == mtime
    assert generate_shards(tiny_model, pattern, "rgb2depth", out, batch_size=2, overwrite=True)["written"] == 2
    assert second.read_bytes() == before and not list(out.rglob("*.tmp*"))


def test_generate_cli_batch_mode_and_eval_on_its_predictions(checkpoint, tmp_path, capsys):
    rgb, pattern = _shards(tmp_path)
    argv = ["--checkpoint", str(checkpoint), "--device", "cpu", "--data", pattern, "--task", "rgb2cam",
            "--out", str(tmp_path), "--batch-size", "2"]
    assert generate_main(argv) == 0
    assert "rgb2cam: 5 samples in 2 new shards" in capsys.readouterr().out
    assert generate_main(argv) == 0 and "0 samples in 0 new shards" in capsys.readouterr().out  # resumed: all done
    assert _read(tmp_path / "cam" / "val" / "shard-000001.tar")["s1-1"].shape == (8,)
    # the predictions were written beside the inputs, so they are the "truth" of the same task: eval reruns the
    # same generation (same batches, same seed) and finds every token
    code = eval_main(["--checkpoint", str(checkpoint), "--device", "cpu", "--task", "rgb2cam", "--batch-size", "2",
                      "--data", str(tmp_path) + "/[rgb,cam]/val/shard-{000000..000001}.tar"])
    assert code == 0 and "rgb2cam       1.0000        40        5" in capsys.readouterr().out
    # a root + dataset works the same way
    assert generate_main([*argv[:4], "--data", str(tmp_path), "--dataset", "val", "--task", "rgb2gaze",
                          "--out", str(tmp_path / "gaze-preds")]) == 0
    assert sorted(p.name for p in (tmp_path / "gaze-preds" / "gaze" / "val").iterdir()) == ["shard-000000.tar",
                                                                                          "shard-000001.tar"]


def test_steps_and_settings_reach_the_generation(tiny_model, tmp_path):
    _, pattern = _shards(tmp_path / "in", counts=(2,))
    pattern = pattern.replace("{000000..000001}", "000000")
    a = generate_shards(tiny_model, pattern, "rgb2cam", tmp_path / "a", steps=8, temperature=0.0, seed=3)
    assert a["samples"] == 2
    runner = TaskRunner(tiny_model, "rgb2cam", 8, temperature=0.0, seed=3)
    assert len(runner.schedule) == 8
    stored = _read(tmp_path / "a" / "cam" / "val" / "shard-000000.tar")
    with pytest.raises(ValueError, match="must be a local directory"):
        generate_shards(tiny_model, pattern, "rgb2cam", "s3://bucket/preds")
    rgb = np.stack([np.load(io.BytesIO(d))["arr_0"] for _, _, d in
                    read_tar_members(str(tmp_path / "in" / "rgb" / "val" / "shard-000000.tar"))])
    np.testing.assert_array_equal(np.stack(list(stored.values())), runner.predict(rgb))

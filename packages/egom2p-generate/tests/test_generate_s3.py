"""`s3://` shard patterns in egom2p-eval and egom2p-generate --data, against a moto S3 server on 127.0.0.1."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from egom2p.core.shards import encode_tokens, read_tar_members, write_tar  # noqa: E402
from egom2p.generate.cli import main as generate_main  # noqa: E402
from egom2p.generate.eval_cli import main as eval_main  # noqa: E402
from egom2p.generate.shards import iter_samples  # noqa: E402

pytestmark = pytest.mark.xdist_group("s3")


@pytest.fixture(scope="module")
def bucket(s3_server, tmp_path_factory):
    client = s3_server.client()
    client.create_bucket(Bucket="egom2p-gen")
    root = tmp_path_factory.mktemp("s3src")
    rng = np.random.default_rng(0)
    for folder, shape, vocab in (("rgb", (2, 4, 4), 256), ("cam", (8,), 64)):
        members = [(f"k{i}.npz", encode_tokens(rng.integers(0, vocab, shape))) for i in range(3)]
        write_tar(root / folder / "val" / "shard-000000.tar", members)
        client.upload_file(str(root / folder / "val" / "shard-000000.tar"), "egom2p-gen", f"tok/{folder}/val/shard-000000.tar")
    return "s3://egom2p-gen/tok", root


def test_samples_stream_from_s3_like_local_shards(bucket):
    url, root = bucket
    remote = list(iter_samples(f"{url}/[rgb,cam]/val/shard-000000.tar", ["rgb", "cam"]))
    local = list(iter_samples(f"{root}/[rgb,cam]/val/shard-000000.tar", ["rgb", "cam"]))
    assert [k for k, _ in remote] == ["k0", "k1", "k2"] == [k for k, _ in local]
    assert all(np.array_equal(a[1][f], b[1][f]) for a, b in zip(remote, local) for f in ("rgb", "cam"))
    with pytest.raises(FileNotFoundError, match=r"data file not found: s3://egom2p-gen/tok/rgb/val/shard-000009.tar"):
        list(iter_samples(f"{url}/[rgb]/val/shard-000009.tar", ["rgb"]))
    with pytest.raises(FileNotFoundError, match="no-such-bucket"):
        list(iter_samples("s3://no-such-bucket/[rgb]/x.tar", ["rgb"]))
    # An s3:// root resolves as a local one (core's resolve_source, which names the folders to list).
    by_root = list(iter_samples(url, ["rgb", "cam"], "val"))
    assert [k for k, _ in by_root] == ["k0", "k1", "k2"]
    assert all(np.array_equal(a[1][f], b[1][f]) for a, b in zip(by_root, local) for f in ("rgb", "cam"))


def test_eval_and_batch_generation_read_s3(bucket, checkpoint, tmp_path, capsys):
    url, root = bucket
    common = ["--checkpoint", str(checkpoint), "--device", "cpu"]
    assert eval_main([*common, "--task", "rgb2cam", "--data", f"{url}/[rgb,cam]/val/shard-000000.tar",
                      "--out", str(tmp_path / "s3.json")]) == 0
    assert eval_main([*common, "--task", "rgb2cam", "--data", f"{root}/[rgb,cam]/val/shard-000000.tar",
                      "--out", str(tmp_path / "local.json")]) == 0
    remote, local = (json.loads((tmp_path / f"{n}.json").read_text())[0] for n in ("s3", "local"))
    assert remote["n_samples"] == 3 and remote["accuracy"] == local["accuracy"]
    assert generate_main([*common, "--task", "rgb2cam", "--data", f"{url}/[rgb]/val/shard-000000.tar",
                          "--out", str(tmp_path / "preds")]) == 0
    written = read_tar_members(str(tmp_path / "preds" / "cam" / "val" / "shard-000000.tar"))
    assert [key for key, _, _ in written] == ["k0", "k1", "k2"]
    assert np.load(io.BytesIO(written[0][2]))["arr_0"].shape == (8,)
    capsys.readouterr()
    code = eval_main([*common, "--task", "rgb2cam", "--data", f"{url}/[rgb,cam]/val/shard-000004.tar"])
    err = capsys.readouterr().err
    assert code == 2 and err == "egom2p-eval: error: data file not found: s3://egom2p-gen/tok/rgb/val/shard-000004.tar\n"

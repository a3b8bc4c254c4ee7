"""webdataset as core's tar engine: its URL openers (pipe:, file://), its TarWriter's headers, our errors around them,
and webdataset imported only when a tar is read or written."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from egom2p.core.errors import ShardError
from egom2p.core.shards import encode_tokens, read_tar_members, write_tar


@pytest.fixture
def shard(tmp_path):
    path = tmp_path / "s.tar"
    write_tar(path, [(f"k{i}.npz", encode_tokens(np.arange(i + 3))) for i in range(4)] + [("x/k9.npy", b"\x00" * 700)])
    return path


def test_pipe_and_file_urls_read_as_the_path_does(shard):
    members = read_tar_members(str(shard))
    assert [m[:2] for m in members] == [("k0", "npz"), ("k1", "npz"), ("k2", "npz"), ("k3", "npz"), ("k9", "npy")]
    assert read_tar_members(f"pipe:cat '{shard}'") == members
    assert read_tar_members(f"file://{shard}") == members


def test_a_failing_or_cut_pipe_is_a_shard_error_naming_the_url(shard, tmp_path):
    missing = f"pipe:cat '{tmp_path / 'nope.tar'}' 2>/dev/null"
    with pytest.raises(ShardError, match="nope.tar.*exit 1") as err:
        read_tar_members(missing)
    assert "\n" not in str(err.value)
    with tarfile.open(shard) as tar:
        inside = tar.getmember("x/k9.npy").offset_data + 300  # in the middle of the last member's bytes
    cut = f"pipe:head -c {inside} '{shard}'"
    with pytest.raises(ShardError, match=rf"^cannot read shard {re.escape(cut)}: ReadError: unexpected end of data$"):
        read_tar_members(cut)


def test_written_headers_are_fixed_and_names_need_an_extension(shard, tmp_path):
    with tarfile.open(shard) as tar:  # the standard library's reader as the reference
        members = tar.getmembers()
    assert [m.name for m in members] == ["k0.npz", "k1.npz", "k2.npz", "k3.npz", "x/k9.npy"]
    assert {(m.mtime, m.mode, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0o644, 0, 0, "", "")}
    for name in ("README", "k."):
        with pytest.raises(ValueError, match="needs an extension"):
            write_tar(tmp_path / "bad.tar", [(name, b"x")])
    assert not (tmp_path / "bad.tar").exists() and list(tmp_path.glob(".bad.tar*")) == []


def test_webdataset_is_imported_when_a_tar_is_read_not_before(shard):
    code = ("import sys\nimport egom2p.core, egom2p.core.shards\nbefore = 'webdataset' in sys.modules\n"
            f"egom2p.core.shards.read_tar_members({str(shard)!r})\nprint(before, 'webdataset' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]

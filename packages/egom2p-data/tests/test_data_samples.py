"""The per-sample check shared by the loader and ``validate``, and its guard against crafted members (issue 16)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from egom2p.core.shards import encode_tokens, read_token_header
from egom2p.data import samples as samples_module
from egom2p.data.samples import MAX_TOKEN_BYTES, SampleProblem, decode_sample, member_problem


def npz_bomb(shape: tuple[int, ...], zeros: int) -> bytes:
    """An .npz whose ``arr_0.npy`` header declares ``shape`` (int64), followed by ``zeros`` zero bytes, deflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("arr_0.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<i8", "fortran_order": False, "shape": shape})
            chunk = bytes(1 << 20)
            for _ in range(zeros // len(chunk)):
                member.write(chunk)
    return buffer.getvalue()


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if a member's data would be read: the header check must refuse it first (decoding runs the
    check on the header before it inflates anything)."""
    real = samples_module.decode_tokens

    def guarded(name, data, check):
        def check_then_refuse(head):
            check(head)  # raises for the members these tests hand in
            raise AssertionError(f"{name} passed its header check and would be decoded")

        return real(name, data, check_then_refuse)

    monkeypatch.setattr(samples_module, "decode_tokens", guarded)


def test_a_zlib_bomb_is_rejected_before_it_is_inflated(tiny, no_decoding):
    """80 MB of int64 from ~80 KB (the probe's 800 MB from 800 KB, scaled down): rejected from its header."""
    bomb = npz_bomb((10_000_000,), zeros=80 << 20)
    assert len(bomb) < 200_000 and read_token_header("x.npz", bomb).stored_bytes == 128 + (80 << 20)
    result = decode_sample({"tok_cam": ("k.npz", bomb)}, ("tok_cam",), tiny)
    assert result == SampleProblem("bad_tokens", "tok_cam has shape (10000000,), expected [8]")
    assert member_problem("k.npz", bomb, None) == (f"k.npz: token array of shape (10000000,) holds 80000000 bytes, "
                                                   f"more than {MAX_TOKEN_BYTES}")


def test_a_member_declaring_more_than_its_header_is_rejected(tiny, no_decoding):
    padded = npz_bomb((8,), zeros=8 << 20)  # a right-sized header, then megabytes more than it describes
    assert member_problem("k.npz", padded, tiny["tok_cam"]) == (
        f"k.npz: declares {128 + (8 << 20)} bytes uncompressed but its header describes 192 (a corrupt or crafted file)")


def test_a_huge_npy_header_is_rejected_without_allocating(tiny, no_decoding):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (1 << 40,)})
    result = decode_sample({"tok_cam": ("k.npy", header.getvalue())}, ("tok_cam",), tiny)
    assert result == SampleProblem("bad_tokens", f"tok_cam has shape ({1 << 40},), expected [8]")


def test_good_and_bad_samples(tiny):
    rgb, cam = np.arange(32).reshape(2, 4, 4) % 60, np.arange(8)
    good = {"tok_rgb": ("k.npz", encode_tokens(rgb)), "tok_cam": ("k.npz", encode_tokens(cam.astype(np.int16)))}
    out = decode_sample(good, ("tok_cam", "tok_rgb"), tiny)
    assert out["tok_rgb"].tolist() == rgb.reshape(-1).tolist() and out["tok_cam"].dtype == np.int64
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(8, dtype=np.float32))
    cases = {
        "missing_modality": ({"tok_rgb": good["tok_rgb"]}, "no file for modality 'tok_cam'"),
        "decode_error": ({**good, "tok_cam": ("k.npz", b"junk")}, "tok_cam: k.npz: not a readable token file"),
        "bad_tokens": ({**good, "tok_cam": ("k.npy", buffer.getvalue())}, "k.npy: token array has dtype float32"),
    }
    for reason, (raw, detail) in cases.items():
        result = decode_sample(raw, ("tok_cam", "tok_rgb"), tiny)
        assert isinstance(result, SampleProblem) and result.reason == reason and detail in result.detail, result
    out_of_vocab = {**good, "tok_cam": ("k.npz", encode_tokens(np.full(8, 64)))}
    assert decode_sample(out_of_vocab, ("tok_cam",), tiny).detail == "tok_cam tokens in [64, 64] are outside the vocabulary [0, 64)"

"""The model's ``triton`` attention backend (Triton interpreter on CPU) against ``sdpa``: dispatch and a whole model."""

import pytest
import torch

pytest.importorskip("triton")

from egom2p.core.enums import AttnBackend  # noqa: E402
from egom2p.model import AttentionMask, EgoM2P  # noqa: E402
from egom2p.model.attention import attention  # noqa: E402
from egom2p.model.kernels.reference import masked_attention_reference  # noqa: E402
from model_helpers import random_batch, tiny_config  # noqa: E402


def test_attention_dispatches_to_the_kernel():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, n, 32, generator=gen) for n in (19, 23, 23))
    lengths = torch.tensor([23, 9], dtype=torch.int32)
    segments_q = torch.randint(0, 3, (2, 19), generator=gen, dtype=torch.int32)
    segments_k = torch.randint(0, 3, (2, 23), generator=gen, dtype=torch.int32)
    mask = AttentionMask(key_lengths=lengths, q_segments=segments_q, k_segments=segments_k)
    out = attention(q, k, v, mask, backend="triton")
    want = masked_attention_reference(q.double(), k.double(), v.double(), mask)
    torch.testing.assert_close(out.double(), want, atol=2e-5, rtol=1e-4)


def test_model_with_triton_backend_matches_sdpa():
    batch = random_batch(tiny_config(), seed=12)
    results = []
    for backend in ("triton", "sdpa"):
        torch.manual_seed(0)
        model = EgoM2P(tiny_config(attn_backend=backend))
        assert model.attn_backend is AttnBackend(backend)
        loss = model(batch, num_encoder_tokens=20, num_decoder_tokens=20).loss
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)

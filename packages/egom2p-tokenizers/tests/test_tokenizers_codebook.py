"""The cosine codebook against float64 re-computations of its search, EMA step and dead-code replacement,
and its synchronisation over two gloo processes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from egom2p.tokenizers.codebook import CosineSimCodebook, VectorQuantizer, codebook_stats


def _reference_step(embed, cluster_size, latents, decay):
    """The original's EMA step in float64: (indices, new cluster_size, new embed before dead-code expiry)."""
    embed, cluster_size = embed.double(), cluster_size.double()
    normed = F.normalize(latents.double().reshape(-1, embed.shape[1]), dim=-1)
    normed_embed = F.normalize(embed, dim=-1)
    indices = (normed @ normed_embed.t()).argmax(dim=-1)
    onehot = F.one_hot(indices, embed.shape[0]).double()
    bins = onehot.sum(0)
    new_cluster_size = decay * cluster_size + (1 - decay) * bins
    means = F.normalize((normed.t() @ onehot / bins.clamp(min=1)).t(), dim=-1)
    target = torch.where((bins == 0)[:, None], normed_embed, means)
    return indices, new_cluster_size, decay * embed + (1 - decay) * target


def _codebook(size=32, dim=8, decay=0.9, threshold=0.0, seed=0):
    torch.manual_seed(seed)
    return CosineSimCodebook(dim, size, decay, threshold).train()


@pytest.mark.parametrize(("size", "dim", "batch"), [(32, 8, (4, 30)), (256, 32, (3, 30)), (7, 3, (5,))])
def test_search_and_ema_step_match_a_float64_recomputation(size, dim, batch):
    codebook = _codebook(size, dim)
    codebook.cluster_size.uniform_(0, 3)  # a running average, not the fresh zeros
    codebook.embed.mul_(torch.rand(size, 1) + 0.5)  # EMA codes drift off the unit sphere
    embed_before, cluster_before = codebook.embed.clone(), codebook.cluster_size.clone()
    latents = torch.randn(*batch, dim) * 3
    codes, indices = codebook(latents)
    expected_indices, expected_cluster, expected_embed = _reference_step(embed_before, cluster_before, latents, 0.9)
    assert torch.equal(indices.reshape(-1), expected_indices)
    assert indices.shape == batch
    assert torch.equal(codes, embed_before[indices])  # the stored entry from before the update
    assert (torch.bincount(expected_indices, minlength=size) == 0).any()  # the unused-code branch is exercised
    torch.testing.assert_close(codebook.cluster_size.double(), expected_cluster, atol=1e-6, rtol=0)
    torch.testing.assert_close(codebook.embed.double(), expected_embed, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_search_is_not_autocast(dtype):
    # Under mixed precision the nearest-code search stays in the codebook's float32, as the original's.
    torch.manual_seed(3)
    codebook = CosineSimCodebook(dim=32, codebook_size=256, decay=0.99, threshold_ema_dead_code=0.0).eval()
    x = torch.randn(4, 30, 32)
    expected = codebook.search(x)
    with torch.autocast("cpu", dtype=dtype):
        assert torch.equal(codebook.search(x), expected)
        codes, indices = codebook(x.to(dtype))
    assert codes.dtype == torch.float32 and torch.equal(indices, codebook.search(x.to(dtype).float()))


def test_eval_mode_changes_nothing():
    codebook = _codebook().eval()
    before = {k: v.clone() for k, v in codebook.state_dict().items()}
    codebook(torch.randn(5, 8))
    assert all(torch.equal(before[k], v) for k, v in codebook.state_dict().items())


@pytest.mark.parametrize("num_latents", [40, 5])  # enough latents for distinct picks / fewer than dead codes
def test_dead_codes_are_replaced_by_batch_latents(num_latents):
    codebook = _codebook(size=16, dim=8, decay=0.9, threshold=2.0)
    alive = torch.arange(16) % 2 == 0
    codebook.cluster_size.copy_(torch.where(alive, 10.0, 0.0))  # stays above 2 after one step; the rest fall below
    embed_before, cluster_before = codebook.embed.clone(), codebook.cluster_size.clone()
    latents = torch.randn(num_latents, 8)
    torch.manual_seed(123)
    codebook(latents)
    _, expected_cluster, expected_embed = _reference_step(embed_before, cluster_before, latents, 0.9)
    dead = expected_cluster < 2.0
    assert torch.equal(dead, ~alive)
    torch.manual_seed(123)  # the step draws nothing else from the generator before the replacement
    num_dead = int(dead.sum())
    if num_latents >= num_dead:
        picks = torch.randperm(num_latents)[:num_dead]
    else:
        picks = torch.randint(0, num_latents, (num_dead,))
    expected_embed[dead] = F.normalize(latents.double(), dim=-1)[picks]
    torch.testing.assert_close(codebook.embed.double(), expected_embed, atol=1e-6, rtol=0)
    torch.testing.assert_close(codebook.cluster_size.double(), expected_cluster, atol=1e-6, rtol=0)


def test_threshold_zero_never_replaces():
    codebook = _codebook(size=16, threshold=0.0)
    latents = torch.randn(40, 8)
    embed_before, cluster_before = codebook.embed.clone(), codebook.cluster_size.clone()
    codebook(latents)
    torch.testing.assert_close(codebook.embed.double(), _reference_step(embed_before, cluster_before, latents, 0.9)[2],
                               atol=1e-6, rtol=0)


def test_quantizer_passes_gradients_straight_through_with_the_commitment_loss():
    torch.manual_seed(0)
    quantizer = VectorQuantizer(8, 32, decay=0.9, threshold_ema_dead_code=0.0, commitment_weight=0.25).train()
    codes_before = quantizer.codebook.clone()
    x = torch.randn(2, 5, 8, requires_grad=True)
    weights = torch.randn(2, 5, 8)
    quantized, loss, indices = quantizer(x)
    torch.testing.assert_close(quantized, codes_before[indices])  # the forward value is the code
    ((quantized * weights).sum() + loss).backward()
    difference = (x - codes_before[indices]).detach().double()
    torch.testing.assert_close(loss.double(), 0.25 * difference.pow(2).mean(), atol=1e-7, rtol=1e-6)
    expected_grad = weights.double() + 0.25 * 2 * difference / difference.numel()
    torch.testing.assert_close(x.grad.double(), expected_grad, atol=1e-6, rtol=1e-6)
    quantizer.eval()
    codes, eval_loss, eval_indices = quantizer(x.detach())
    assert eval_loss.item() == 0.0 and torch.equal(codes, quantizer.codebook[eval_indices])


def test_codebook_stats():
    stats = codebook_stats(torch.tensor([[0, 0], [1, 2]]), 4)
    assert stats["live_codes"] == 3
    assert stats["perplexity"] == pytest.approx(2 ** 1.5)  # exp(entropy of 1/2, 1/4, 1/4)
    uniform = codebook_stats(torch.arange(256), 256)
    assert uniform == {"live_codes": 256, "perplexity": pytest.approx(256.0)}
    assert codebook_stats(torch.full((10,), 7), 256) == {"live_codes": 1, "perplexity": pytest.approx(1.0)}
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 4\)"):
        codebook_stats(torch.tensor([4]), 4)


# -- two gloo processes ---------------------------------------------------------------------------------------

_DIM, _SIZE, _STEPS = 8, 64, 4


def _rank_batches(rank: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + rank)
    # Different data and different batch sizes per rank.
    return [torch.randn(rank + 3, 5, _DIM, generator=generator) for _ in range(_STEPS)]


def _synced_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # the same starting codebook on every rank
        quantizer = VectorQuantizer(_DIM, _SIZE, decay=0.9, threshold_ema_dead_code=2.0).train()
        torch.manual_seed(50 + rank)  # each rank's own generator: a rank-local draw would differ
        states = []
        for batch in _rank_batches(rank):
            quantizer(batch)
            states.append({k: v.clone() for k, v in quantizer._codebook.state_dict().items()})
        torch.manual_seed(0)
        no_expiry = VectorQuantizer(_DIM, _SIZE, decay=0.9, threshold_ema_dead_code=0.0).train()
        no_expiry(_rank_batches(rank)[0])
        torch.save({"states": states, "no_expiry": no_expiry._codebook.state_dict()}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.long(seconds=18)
def test_two_ranks_keep_bit_identical_codebooks(tmp_path):
    mp.spawn(_synced_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for step, (a, b) in enumerate(zip(results[0]["states"], results[1]["states"])):
        for name in a:
            assert torch.equal(a[name], b[name]), (step, name)
    # Dead codes were refilled, from the latents of both ranks.
    first = results[0]["states"][0]["embed"]
    normed = [F.normalize(_rank_batches(r)[0].reshape(-1, _DIM), dim=-1) for r in range(2)]
    sources = [{r for r in range(2) if torch.isclose(normed[r], row, atol=1e-6, rtol=0).all(dim=-1).any()}
               for row in first]
    replaced = [s for s in sources if s]
    assert len(replaced) > _SIZE // 2 and set().union(*replaced) == {0, 1}
    # Without expiry, the synced step equals one process's step on both ranks' latents together.
    torch.manual_seed(0)
    single = VectorQuantizer(_DIM, _SIZE, decay=0.9, threshold_ema_dead_code=0.0).train()
    single(torch.cat([_rank_batches(r)[0].reshape(-1, _DIM) for r in range(2)]))
    for name, value in single._codebook.state_dict().items():
        torch.testing.assert_close(results[0]["no_expiry"][name], value, atol=1e-6, rtol=0)
        assert torch.equal(results[0]["no_expiry"][name], results[1]["no_expiry"][name])


def test_replacement_without_a_process_group_draws_locally():
    assert not (dist.is_available() and dist.is_initialized())
    codebook = _codebook(size=4, dim=2, threshold=math.inf)  # every code is dead after every step
    latents = torch.randn(10, 2)
    codebook(latents)
    normed = F.normalize(latents, dim=-1)
    for row in codebook.embed:
        assert torch.isclose(normed, row, atol=1e-6, rtol=0).all(dim=-1).any()

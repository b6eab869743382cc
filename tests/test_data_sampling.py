"""NegativeSampler: never a known positive, uniform over the rest, fast, device-aware."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmtrec.data.sampling import NegativeSampler
from pmtrec.errors import DataError


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(2, 40), st.floats(0.0, 0.95), st.integers(0, 2**31 - 1))
def test_never_returns_a_known_positive(n_src, n_dst, density, seed):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n_src, n_dst, generator=g) < density
    mask[:, 0] = False  # every source keeps at least one negative
    src, dst = mask.nonzero(as_tuple=True)
    sampler = NegativeSampler(src, dst, n_dst, rounds=2)
    query = torch.randint(0, n_src, (500,), generator=g)
    neg = sampler.sample(query, generator=g)
    assert neg.shape == query.shape and neg.dtype == torch.int64
    assert ((neg >= 0) & (neg < n_dst)).all()
    assert not mask[query, neg].any()


def test_roughly_uniform_over_the_non_positives():
    n_dst = 20
    positives = torch.tensor([2, 3, 5, 7, 11, 13, 17])
    sampler = NegativeSampler(torch.zeros(len(positives), dtype=torch.long), positives, n_dst)
    g = torch.Generator().manual_seed(0)
    neg = sampler.sample(torch.zeros(130_000, dtype=torch.long), generator=g)
    counts = torch.bincount(neg, minlength=n_dst).double()
    assert counts[positives].sum() == 0
    free = counts[counts > 0]
    assert len(free) == n_dst - len(positives)
    expected = 130_000 / len(free)
    chi2 = float(((free - expected) ** 2 / expected).sum())
    assert chi2 < 40  # 12 dof: p(chi2 > 40) ~ 1e-4


def test_dense_source_uses_the_exact_fallback_and_stays_uniform():
    n_dst = 1000
    dst = torch.tensor([d for d in range(n_dst) if d not in (123, 877)])
    sampler = NegativeSampler(torch.zeros(len(dst), dtype=torch.long), dst, n_dst, rounds=1)
    neg = sampler.sample(torch.zeros(4000, dtype=torch.long), generator=torch.Generator().manual_seed(1))
    vals, counts = torch.unique(neg, return_counts=True)
    assert vals.tolist() == [123, 877]
    assert 1800 < counts[0] < 2200


def test_source_without_negatives_is_a_data_error():
    sampler = NegativeSampler(torch.zeros(3, dtype=torch.long), torch.arange(3), 3)
    with pytest.raises(DataError, match="source 0 is linked to all 3 destinations"):
        sampler.sample(torch.zeros(5, dtype=torch.long))


def test_unknown_sources_and_shapes():
    sampler = NegativeSampler(torch.tensor([0, 0]), torch.tensor([0, 1]), 4)
    q = torch.tensor([[0, 7], [7, 0]])  # source 7 has no positives
    neg = sampler.sample(q, generator=torch.Generator().manual_seed(0))
    assert neg.shape == (2, 2)
    assert set(neg[q == 0].tolist()) <= {2, 3}


def test_generator_makes_draws_reproducible():
    sampler = NegativeSampler(torch.arange(100) % 10, torch.arange(100) % 37, 50)
    q = torch.arange(10).repeat(50)
    a = sampler.sample(q, generator=torch.Generator().manual_seed(5))
    b = sampler.sample(q, generator=torch.Generator().manual_seed(5))
    c = sampler.sample(q, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_to_moves_state_and_output_follows_input_device():
    sampler = NegativeSampler(torch.tensor([0, 1]), torch.tensor([1, 0]), 5).to("cpu")
    assert sampler.device == torch.device("cpu") and sampler.keys.tolist() == [1, 5]
    assert sampler.sample(torch.tensor([0, 1])).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sampling():
    src, dst = torch.randint(0, 100, (5000,)), torch.randint(0, 500, (5000,))
    sampler = NegativeSampler(src.cuda(), dst.cuda(), 500)
    q = torch.randint(0, 100, (4096,), device="cuda")
    neg = sampler.sample(q)
    assert neg.device.type == "cuda"
    mask = torch.zeros(100, 500, dtype=torch.bool)
    mask[src, dst] = True
    assert not mask[q.cpu(), neg.cpu()].any()


def test_fast_on_ciao_sized_data():
    """Cost is a few vectorised passes: compared with one bare searchsorted of the same
    queries (so the bound holds on a loaded machine), plus an absolute ceiling."""
    rng = np.random.default_rng(0)
    n_users, n_items, n = 7_000, 21_000, 230_000
    src = torch.as_tensor(rng.integers(0, n_users, n))
    dst = torch.as_tensor(rng.zipf(1.3, n) % n_items)
    sampler = NegativeSampler(src, dst, n_items)
    q = torch.as_tensor(rng.integers(0, n_users, 4096))
    g = torch.Generator().manual_seed(0)
    probe = q * n_items + torch.randint(0, n_items, (4096,), generator=g)

    def median_time(fn) -> float:
        fn()
        times = []
        for _ in range(25):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    base = median_time(lambda: torch.searchsorted(sampler.keys, probe))
    cost = median_time(lambda: sampler.sample(q, generator=g))
    assert cost < 6 * base + 0.001
    assert cost < 0.05  # ~0.3 ms on an idle 2-core machine

"""RowAdam: the lazy row-wise Adam equals torch's SparseAdam on the same row gradients."""

from __future__ import annotations

import copy

import pytest
import torch

from pmtrec.optim import RowAdam


def test_row_adam_matches_sparse_adam_over_steps():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.Parameter(torch.randn(50, 8, generator=g))
    b = torch.nn.Parameter(a.detach().clone())
    row, ref = RowAdam([a], lr=0.05), torch.optim.SparseAdam([b], lr=0.05)
    for step in range(12):
        ids = torch.unique(torch.randint(50, (15,), generator=g))
        grad = torch.randn(len(ids), 8, generator=g) * (10.0 ** (step % 3 - 1))
        row.step_rows([(ids, grad)])
        b.grad = torch.sparse_coo_tensor(ids[None], grad, b.shape, check_invariants=True)
        ref.step()
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)
    st, sr = row.state[a], ref.state[b]
    torch.testing.assert_close(st["exp_avg"], sr["exp_avg"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(st["exp_avg_sq"], sr["exp_avg_sq"], rtol=1e-5, atol=1e-9)


def test_row_adam_given_current_rows_steps_exactly_as_without():
    g = torch.Generator().manual_seed(1)
    a = torch.nn.Parameter(torch.randn(40, 6, generator=g))
    b = torch.nn.Parameter(a.detach().clone())
    plain, given = RowAdam([a], lr=0.05), RowAdam([b], lr=0.05)
    for _ in range(5):
        ids = torch.unique(torch.randint(40, (12,), generator=g))
        grad = torch.randn(len(ids), 6, generator=g)
        plain.step_rows([(ids, grad)])
        now = b.detach()[ids]
        kept = now.clone()
        given.step_rows([(ids, grad, now)])
        assert torch.equal(a.detach(), b.detach())
        assert torch.equal(now, kept)  # the given rows are read, not written into


def test_row_adam_leaves_untouched_rows_and_their_moments_alone():
    p = torch.nn.Parameter(torch.randn(10, 4))
    opt = RowAdam([p], lr=0.1)
    opt.step_rows([(torch.tensor([1, 3]), torch.ones(2, 4))])
    before = p.detach().clone()
    opt.step_rows([(torch.tensor([3]), torch.ones(1, 4))])
    changed = torch.nonzero((p.detach() != before).any(1)).flatten().tolist()
    assert changed == [3]
    assert float(opt.state[p]["exp_avg"][0].abs().sum()) == 0.0
    assert float(opt.state[p]["exp_avg"][1].abs().sum()) > 0.0  # row 1's moment kept, not decayed


def test_row_adam_state_round_trips_and_refuses_step():
    p = torch.nn.Parameter(torch.randn(6, 3))
    opt = RowAdam([p], lr=0.1)
    opt.step_rows([(torch.tensor([0, 2]), torch.randn(2, 3))])
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = RowAdam([q], lr=0.1)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as through a checkpoint file
    ids, grad = torch.tensor([2, 5]), torch.randn(2, 3)
    opt.step_rows([(ids, grad)])
    opt2.step_rows([(ids, grad)])
    assert torch.equal(p.detach(), q.detach())
    with pytest.raises(RuntimeError, match="step_rows"):
        opt.step()
    with pytest.raises(ValueError, match="one \\(ids, grad\\) per parameter"):
        opt.step_rows([])

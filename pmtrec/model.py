"""The shared encoder: matrix factorisation (user and item embedding tables, dot-product score)."""

from __future__ import annotations

import torch
from torch import nn


class MF(nn.Module):
    """User and item embedding tables; score(u, i) = <e_u, e_i>.

    The tables are the parameters every task shares. Training reads and writes them
    by rows (see :mod:`pmtrec.train`), so the model itself stays a plain container.
    """

    tables = ("user", "item")

    def __init__(self, n_users: int, n_items: int, dim: int = 64, init_std: float = 0.1,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.user = nn.Parameter(torch.empty(n_users, dim))
        self.item = nn.Parameter(torch.empty(n_items, dim))
        with torch.no_grad():
            self.user.normal_(0.0, init_std, generator=generator)
            self.item.normal_(0.0, init_std, generator=generator)

    def table(self, name: str) -> nn.Parameter:
        return getattr(self, name)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of the given users against every item: [len(users), n_items]."""
        return self.user[users] @ self.item.T

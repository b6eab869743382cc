"""Uniform negative sampling that excludes known positives, vectorised in torch.

Known pairs are encoded as ``src * n_dst + dst`` in one sorted int64 tensor. A draw
is uniform over ``[0, n_dst)``; collisions with a positive (found with
``torch.searchsorted``) are redrawn, for at most ``rounds`` rounds. Entries still
colliding after that (only sources with very many positives) are resolved exactly:
draw ``r`` uniform in ``[0, n_dst - deg(src))`` and map it to the r-th non-positive
destination with a second sorted key (``src * n_dst + pos_j - j``). Either way each
returned destination is uniform over the non-positives of its source.
"""

from __future__ import annotations

import torch

from pmtrec.errors import DataError


class NegativeSampler:
    def __init__(self, src: torch.Tensor, dst: torch.Tensor, n_dst: int, rounds: int = 4) -> None:
        src = torch.as_tensor(src).long().reshape(-1)
        dst = torch.as_tensor(dst, device=src.device).long().reshape(-1)
        if src.shape != dst.shape:
            raise ValueError(f"src and dst must have the same length, got {src.numel()} and {dst.numel()}")
        n_dst = int(n_dst)
        if n_dst <= 0:
            raise ValueError(f"n_dst must be positive, got {n_dst}")
        if dst.numel() and (int(dst.min()) < 0 or int(dst.max()) >= n_dst or int(src.min()) < 0):
            raise ValueError(f"dst ids must lie in [0, {n_dst}) and src ids must be >= 0")
        self.n_dst = n_dst
        self.rounds = max(1, int(rounds))
        self.keys = torch.unique(src * n_dst + dst)  # sorted, de-duplicated
        pos_src = self.keys // n_dst
        self.n_src = int(pos_src.max()) + 1 if pos_src.numel() else 0
        self.degree = torch.bincount(pos_src, minlength=self.n_src)
        # rank of each positive within its source, for the exact fallback
        starts = torch.cumsum(self.degree, 0) - self.degree
        rank = torch.arange(self.keys.numel(), device=self.keys.device) - starts[pos_src]
        self.shifted = self.keys - rank  # = src * n_dst + (dst - rank), non-decreasing
        self.full = bool((self.degree >= n_dst).any()) if self.n_src else False

    @property
    def device(self) -> torch.device:
        return self.keys.device

    def to(self, device: torch.device | str) -> "NegativeSampler":
        for name in ("keys", "degree", "shifted"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def is_positive(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """Boolean mask: is (src[k], dst[k]) a known positive pair?"""
        if self.keys.numel() == 0:
            return torch.zeros(src.shape, dtype=torch.bool, device=src.device)
        q = src.long() * self.n_dst + dst.long()
        pos = torch.searchsorted(self.keys, q).clamp_(max=self.keys.numel() - 1)
        return self.keys[pos] == q

    def sample(self, src_ids: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One negative destination per entry of ``src_ids`` (same shape, same device)."""
        out_device = src_ids.device
        src = src_ids.reshape(-1).long()
        if src.device != self.device:
            src = src.to(self.device)
        gen_device = generator.device if generator is not None else self.device
        n = src.numel()
        neg = torch.randint(0, self.n_dst, (n,), generator=generator, device=gen_device).to(self.device)
        if self.keys.numel():
            idx = None
            for _ in range(self.rounds):
                s = src if idx is None else src[idx]
                hit = self.is_positive(s, neg if idx is None else neg[idx])
                idx = hit.nonzero().squeeze(1) if idx is None else idx[hit]
                if idx.numel() == 0:
                    break
                draw = torch.randint(0, self.n_dst, (idx.numel(),), generator=generator, device=gen_device)
                neg[idx] = draw.to(self.device)
            else:
                s = src[idx]
                hit = self.is_positive(s, neg[idx])
                idx = idx[hit]
                if idx.numel():
                    neg[idx] = self._exact(src[idx], generator, gen_device)
        return neg.reshape(src_ids.shape).to(out_device)

    def _exact(self, src: torch.Tensor, generator: torch.Generator | None, gen_device: torch.device) -> torch.Tensor:
        in_range = src < self.n_src
        deg = torch.where(in_range, self.degree[src.clamp(max=max(self.n_src - 1, 0))], torch.zeros_like(src))
        free = self.n_dst - deg
        if bool((free <= 0).any()):
            bad = int(src[free <= 0][0])
            raise DataError(f"negative sampling: source {bad} is linked to all {self.n_dst} destinations; "
                            "no negative exists")
        u = torch.rand(src.numel(), generator=generator, device=gen_device, dtype=torch.float64).to(self.device)
        r = torch.minimum((u * free).long(), free - 1)
        lo = torch.searchsorted(self.shifted, src * self.n_dst)
        hi = torch.searchsorted(self.shifted, src * self.n_dst + r, right=True)
        return r + (hi - lo)

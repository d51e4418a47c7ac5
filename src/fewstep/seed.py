"""Per-sample seeding, so a sample depends on its seed alone, not on the batch size or the device
(the idea of EDM's StackedRandomGenerator, Karras et al. 2022, generate.py)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

HELD_OUT_SEED = 9_001  # base seed of evaluation noise that no search ever fits on (searches use 0.. and +5e5)


def randn(seeds: Sequence[int], shape: Sequence[int], device: str | torch.device = "cpu",
          dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal noise [len(seeds), *shape]; row i is drawn from a CPU generator seeded with seeds[i]."""
    rows = [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s)), dtype=torch.float64)
            for s in seeds]
    return torch.stack(rows).to(device=device, dtype=dtype)


def seeds_for(n: int, seed: int = 0) -> list[int]:
    """The seeds of samples 0..n-1 of a run with base seed `seed`."""
    return [seed * 1_000_003 + i for i in range(n)]


def noise(n: int, seed: int, shape: Sequence[int], sigma: float = 1.0, device: str | torch.device = "cpu") -> Tensor:
    """x_T = sigma * n_i, n_i drawn from sample i's own seed (seeds_for(n, seed)): the noise of a seeded run."""
    return randn(seeds_for(n, seed), shape, device=device) * float(sigma)


def manual_seed(seed: int) -> torch.Generator:
    """Seed torch's global RNG (for training) and return a fresh CPU generator with the same seed."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)

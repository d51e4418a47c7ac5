"""Per-sample seeding, so a sample depends on its seed alone, not on the batch size or the device
(the idea of EDM's StackedRandomGenerator, Karras et al. 2022, generate.py)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

SEED_STRIDE = 1_000_003  # sample i of a run with base seed b has seed b * SEED_STRIDE + i
HELD_OUT_SEED = 9_001  # base seed of evaluation noise that no search ever fits on (searches use 0.. and +5e5)


def randn(seeds: Sequence[int], shape: Sequence[int], device: str | torch.device = "cpu",
          dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal noise [len(seeds), *shape]; row i is drawn from a CPU generator seeded with seeds[i]."""
    rows = [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s)), dtype=torch.float64)
            for s in seeds]
    return torch.stack(rows).to(device=device, dtype=dtype)


def seeds_for(n: int, seed: int = 0) -> list[int]:
    """The seeds of samples 0..n-1 of a run with base seed `seed`."""
    return [seed * SEED_STRIDE + i for i in range(n)]


def noise(n: int, seed: int, shape: Sequence[int], sigma: float = 1.0, device: str | torch.device = "cpu") -> Tensor:
    """x_T = sigma * n_i, n_i drawn from sample i's own seed (seeds_for(n, seed)): the noise of a seeded run."""
    return randn(seeds_for(n, seed), shape, device=device) * float(sigma)


class PerSample:
    """Noise for stochastic solver steps, per sample: draw k of sample i is randn seeded with seeds[i] + stride (k+1),
    so a sample's noise depends on its own seed alone, never on the batch (`fs.sample(..., generator=...)`)."""

    def __init__(self, seeds: Sequence[int], stride: int = SEED_STRIDE) -> None:
        self.seeds, self.stride = [int(s) for s in seeds], int(stride)

    def __call__(self, k: int, x: Tensor) -> Tensor:
        if len(self.seeds) != x.shape[0]:
            raise ValueError(f"{len(self.seeds)} seeds for a batch of {x.shape[0]}; give one seed per sample")
        return randn([s + self.stride * (k + 1) for s in self.seeds], x.shape[1:], device=x.device, dtype=x.dtype)

    def __getitem__(self, rows: slice) -> PerSample:
        """The source of a slice of the samples (a batch of a longer run)."""
        return PerSample(self.seeds[rows], self.stride)


def manual_seed(seed: int) -> torch.Generator:
    """Seed torch's global RNG (for training) and return a fresh CPU generator with the same seed."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)

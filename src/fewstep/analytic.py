"""Exact denoisers: Gaussian mixtures and the empirical-data mixture (the ideal denoiser of a finite data set).

For p(x0) = sum_k pi_k N(mu_k, diag(s_k^2)), the noisy marginal at sigma is sum_k pi_k N(mu_k, s_k^2 + sigma^2)
and E[x0 | x] = sum_k w_k(x) (mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k)), w_k the posterior responsibilities
(Karras et al. 2022, Appendix B.3 for the empirical case).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .denoiser import batch_sigma, check_finite, check_sigma_range


class GaussianMixture:
    """Exact denoiser of a Gaussian mixture of any event shape; isotropic ([K]) or diagonal ([K, *shape]) stds."""

    def __init__(
        self, means: Tensor, stds: Tensor | float, weights: Tensor | None = None,
        sigma_min: float = 0.002, sigma_max: float = 80.0,
    ) -> None:
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim < 2:
            raise ValueError(f"means must be [K, *shape] with at least one event dim, got shape {tuple(means.shape)}")
        K, shape = means.shape[0], tuple(means.shape[1:])
        stds = torch.as_tensor(stds, dtype=torch.float64)
        if stds.ndim == 0:
            stds = stds.expand(K)
        if stds.shape == (K,):
            stds = stds.reshape(K, *([1] * len(shape))).expand(K, *shape)
        if tuple(stds.shape) != (K, *shape):
            raise ValueError(f"stds must be a float, [K={K}] or [K, *shape]={(K, *shape)}, got {tuple(stds.shape)}")
        if (stds < 0).any():
            raise ValueError("stds must be non-negative")
        weights = torch.full((K,), 1.0 / K, dtype=torch.float64) if weights is None else \
            torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (K,) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be [K={K}] non-negative with a positive sum")
        check_sigma_range(sigma_min, sigma_max)
        for name, t in (("means", means), ("stds", stds), ("weights", weights)):
            check_finite(t, name)
        self.means, self.stds, self.weights = means, stds.contiguous(), weights / weights.sum()
        self.shape, self.sigma_min, self.sigma_max = shape, float(sigma_min), float(sigma_max)

    def _flat(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have shape [batch, *{self.shape}], got {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1).to(torch.float64)

    def _log_resp(self, xf: Tensor, s2: Tensor) -> tuple[Tensor, Tensor]:
        """Per-component log pi_k N(x; mu_k, s_k^2 + sigma^2), and the variances [B, K, D]."""
        mu = self.means.reshape(len(self.weights), -1).to(xf.device)
        var = self.stds.reshape(len(self.weights), -1).to(xf.device) ** 2 + s2[:, None, None]
        d = xf[:, None, :] - mu[None]
        logp = -0.5 * ((d**2 / var) + var.log() + math.log(2 * math.pi)).sum(-1)
        return logp + self.weights.to(xf.device).log()[None], var

    def __call__(self, x: Tensor, sigma: Tensor | float, cond: object = None) -> Tensor:
        """E[x0 | x] at noise level sigma (float or [batch])."""
        s = batch_sigma(sigma, x).to(torch.float64)
        xf = self._flat(x)
        logp, var = self._log_resp(xf, s**2)
        w = torch.softmax(self._restrict(logp, cond), dim=1)  # [B, K]
        mu = self.means.reshape(len(self.weights), -1).to(xf.device)
        gain = self.stds.reshape(len(self.weights), -1).to(xf.device) ** 2 / var  # s_k^2 / (s_k^2 + sigma^2)
        comp = mu[None] + gain * (xf[:, None, :] - mu[None])
        return (w[:, :, None] * comp).sum(1).reshape(x.shape).to(x.dtype)

    def _restrict(self, logp: Tensor, cond: object) -> Tensor:
        """The components a condition allows (all of them: an unconditional mixture ignores cond)."""
        return logp

    def log_prob(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """log p_sigma(x) of the noisy marginal (sigma = 0 is the data density; needs stds > 0)."""
        s = batch_sigma(sigma, x).to(torch.float64)
        logp, _ = self._log_resp(self._flat(x), s**2)
        return torch.logsumexp(logp, dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw n samples from the data distribution (float32, on the CPU)."""
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn((n, *self.shape), generator=generator, dtype=torch.float64)
        return (self.means[k] + self.stds[k] * z).to(torch.float32)


class ClassMixture(GaussianMixture):
    """A class-conditional mixture: component k belongs to class labels[k]. D(x, sigma, y) is the exact denoiser of
    p(x0 | y) (class y_i's components, renormalised), D(x, sigma, None) that of p(x0): the null label of
    classifier-free guidance (Ho & Salimans 2022), so `fs.guidance.cfg(mixture, w)` is an exact guided model."""

    def __init__(self, means: Tensor, stds: Tensor | float, labels: Tensor, weights: Tensor | None = None,
                 sigma_min: float = 0.002, sigma_max: float = 80.0) -> None:
        super().__init__(means, stds, weights, sigma_min, sigma_max)
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.shape != self.weights.shape or (labels < 0).any():
            raise ValueError(f"labels must be [K={len(self.weights)}] non-negative class indices, got shape "
                             f"{tuple(labels.shape)}")
        self.labels, self.num_classes = labels, int(labels.max()) + 1
        if len(labels.unique()) != self.num_classes:
            raise ValueError(f"every class 0..{self.num_classes - 1} needs a component, got labels {labels.tolist()}")

    def _restrict(self, logp: Tensor, cond: object) -> Tensor:
        if cond is None:
            return logp
        y = torch.as_tensor(cond, dtype=torch.long, device=logp.device).reshape(-1).expand(logp.shape[0]) \
            if not torch.is_tensor(cond) or cond.numel() == 1 else cond.to(logp.device, torch.long).reshape(-1)
        if y.shape != (logp.shape[0],) or ((y < 0) | (y >= self.num_classes)).any():
            raise ValueError(f"cond must be one class label in [0, {self.num_classes - 1}] or one per sample "
                             f"({logp.shape[0]}), got {tuple(torch.as_tensor(cond).shape)}")
        return logp.masked_fill(self.labels.to(logp.device)[None, :] != y[:, None], -math.inf)


def toy_class_mixture(dim: int = 2, classes: int = 3, per_class: int = 2, spread: float = 2.0, std: float = 0.1,
                      seed: int = 0, sigma_min: float = 0.002, sigma_max: float = 80.0) -> ClassMixture:
    """`toy_mixture` with classes * per_class components, component k in class k % classes."""
    m = toy_mixture(dim, classes * per_class, spread, std, seed, sigma_min, sigma_max)
    labels = torch.arange(classes * per_class) % classes
    return ClassMixture(m.means, m.stds, labels, m.weights, sigma_min, sigma_max)


def empirical(data: Tensor, sigma_min: float = 0.002, sigma_max: float = 80.0) -> GaussianMixture:
    """The ideal denoiser of a finite data set: a mixture of zero-width components on the data points."""
    data = torch.as_tensor(data, dtype=torch.float64)
    return GaussianMixture(data, torch.zeros(data.shape[0], dtype=torch.float64),
                           sigma_min=sigma_min, sigma_max=sigma_max)


def toy_mixture(dim: int = 2, k: int = 8, spread: float = 2.0, std: float = 0.1, seed: int = 0,
                sigma_min: float = 0.002, sigma_max: float = 80.0) -> GaussianMixture:
    """A random mixture of k isotropic Gaussians in `dim` dimensions, for tests and solver benchmarks."""
    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(k, dim, generator=g, dtype=torch.float64)
    weights = torch.rand(k, generator=g, dtype=torch.float64) + 0.5
    stds = std * (0.5 + torch.rand(k, generator=g, dtype=torch.float64))
    return GaussianMixture(means, stds, weights, sigma_min=sigma_min, sigma_max=sigma_max)

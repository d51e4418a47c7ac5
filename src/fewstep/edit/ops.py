"""Zero-shot editing with a consistency model: one operator (Song et al. 2023, Alg. 4) and the tasks built on it.

Alg. 4: y <- A^-1[(A y)(1 - Omega)]; x <- f(y + T z, T); x <- A^-1[(A y)(1 - Omega) + (A x) Omega];
for tau_n: x <- f(x + sqrt(tau_n^2 - eps^2) z, tau_n); replace again. Starting from y + T z (the noisy reference)
follows the CM code, which starts from noise with the reference pasted in; at T = 80 the two agree.
A tau may repeat: another noise-and-denoise round at the same level lets the generated part settle against the
kept one (the resampling of RePaint, Lugmayr et al. 2022). Stroke guidance (SDEdit, Meng et al. 2022), denoising
and slerp interpolation are the CM paper's App. D uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..denoiser import check_denoiser
from ..solvers.renoise import multistep
from . import transforms as Tr


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _check_omega(omega: Tensor, coef: Tensor) -> None:
    """The mask of Alg. 4 must broadcast to A y's shape and hold only 0 (keep) and 1 (generate)."""
    try:
        fits = torch.broadcast_shapes(tuple(omega.shape), tuple(coef.shape)) == coef.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(f"mask of shape {tuple(omega.shape)} does not fit images of shape {tuple(coef.shape)}; "
                         f"give a mask of shape {tuple(coef.shape)} or one that broadcasts to it")
    if not ((omega == 0) | (omega == 1)).all():
        raise ValueError("the mask must hold only 0 (keep) and 1 (generate); threshold it, e.g. (mask > 0.5).float()")


@torch.no_grad()
def algorithm4(cm: Any, y: Tensor, A: Tr.Orthogonal, omega: Tensor, sigmas: Sequence[float] | None = None,
               generator: torch.Generator | None = None, cond: Any = None, clip: float | None = 1.0,
               candidates: int = 1, check_sigma: float = 0.5, check_repeats: int = 4) -> Tensor:
    """CM Alg. 4: generate the coefficients where omega = 1 (in A's space), keep A y where omega = 0 exactly
    (up to the float64 round trip of A). `sigmas` (non-increasing; repeats resample) default [cm.sigma_max];
    clip clamps f's output as the CM code. candidates > 1: run that many chains and keep, per sample, the one
    that fits the known part best (`self_consistency`): candidates * (len(sigmas) + check_repeats) calls."""
    if candidates > 1:
        xs = [algorithm4(cm, y, A, omega, sigmas, generator, cond, clip) for _ in range(candidates)]
        return select_consistent(cm, y, A, omega, xs, check_sigma, check_repeats, generator, cond)
    check_denoiser(cm)
    Ay = A.forward(y)
    _check_omega(omega, Ay)
    s = [float(cm.sigma_max)] if sigmas is None else [float(v) for v in sigmas]
    if not s:
        raise ValueError("sigmas is empty; give at least one noise level (e.g. [cm.sigma_max])")
    if any(b > a for a, b in zip(s, s[1:], strict=False)) or s[-1] < cm.sigma_min or s[0] > cm.sigma_max:
        raise ValueError(f"sigmas must not increase and must lie inside [{cm.sigma_min}, {cm.sigma_max}], got {s}")
    known = Ay * (1 - omega.to(torch.float64))
    omega64 = omega.to(torch.float64)

    def replace(x: Tensor) -> Tensor:
        x = x if clip is None else x.clamp(-clip, clip)
        return A.inverse(known + A.forward(x) * omega64).to(y.dtype)

    y0 = A.inverse(known).to(y.dtype)
    eps = float(cm.sigma_min)
    x = replace(cm(y0 + s[0] * _noise(y, generator), s[0], cond))
    for tau in s[1:]:
        x = replace(cm(x + math.sqrt(max(tau**2 - eps**2, 0.0)) * _noise(x, generator), tau, cond))
    return x


@torch.no_grad()
def self_consistency(cm: Any, x: Tensor, y: Tensor, A: Tr.Orthogonal, omega: Tensor, sigma: float = 0.5,
                     repeats: int = 4, generator: torch.Generator | None = None, cond: Any = None) -> Tensor:
    """Per-sample misfit [B] of an edit x with the known part of y: noise x to `sigma`, denoise with the CM, and
    measure || (A f(x + sigma z, sigma) - A y) (1 - omega) ||^2, summed over `repeats` noises. An x whose generated
    part disagrees with the kept part is pulled away from it by f, so a small misfit marks a coherent edit."""
    keep = (1 - omega.to(torch.float64))
    err = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for _ in range(repeats):
        d = cm(x + sigma * _noise(x, generator), sigma, cond)
        err += ((A.forward(d) - A.forward(y)) * keep).flatten(1).square().sum(1)
    return err


def select_consistent(cm: Any, y: Tensor, A: Tr.Orthogonal, omega: Tensor, xs: Sequence[Tensor], sigma: float = 0.5,
                      repeats: int = 4, generator: torch.Generator | None = None, cond: Any = None) -> Tensor:
    """Of several edits of the same inputs, keep per sample the one with the smallest `self_consistency` misfit
    (a best-of-k selection that needs no classifier and no labels)."""
    err = torch.stack([self_consistency(cm, x, y, A, omega, sigma, repeats, generator, cond) for x in xs])
    pick = err.argmin(0)
    return torch.stack(list(xs))[pick, torch.arange(len(pick), device=pick.device)]


def inpaint(cm: Any, y: Tensor, mask: Tensor, sigmas: Sequence[float] | None = None, **kw: Any) -> Tensor:
    """Fill the pixels where mask = 1, keep the others bit for bit (A = I)."""
    _check_omega(mask, y)
    return algorithm4(cm, y, Tr.identity(), mask.expand_as(y), sigmas, **kw)


def superres(cm: Any, low: Tensor, factor: int, sigmas: Sequence[float] | None = None, **kw: Any) -> Tensor:
    """Upsample `low` [B, C, h, w] by `factor`: every output patch's mean equals its low-res pixel."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"superres factor must be a positive integer, got {factor!r}")
    y = F.interpolate(low, scale_factor=factor, mode="nearest")
    shape = getattr(cm, "shape", None)
    if shape is not None and tuple(y.shape[1:]) != tuple(shape):
        raise ValueError(f"low-res images {tuple(low.shape[1:])} upsampled by {factor} give {tuple(y.shape[1:])}, "
                         f"but the model makes {tuple(shape)}; give low-res images of the model's size / factor")
    A = Tr.patch_mean(factor)
    return algorithm4(cm, y, A, Tr.keep_first_component(A, y, factor), sigmas, **kw)


def colorize(cm: Any, gray: Tensor, sigmas: Sequence[float] | None = None, **kw: Any) -> Tensor:
    """Colour a gray image [B, 1 or 3, H, W] with a colour model: the output's luma direction is kept."""
    y = gray.expand(-1, 3, -1, -1) if gray.shape[1] == 1 else gray
    A = Tr.luma()
    return algorithm4(cm, y, A, Tr.keep_first_component(A, y), sigmas, **kw)


@torch.no_grad()
def stroke(cm: Any, y: Tensor, sigmas: Sequence[float], generator: torch.Generator | None = None,
           cond: Any = None, clip: float | None = 1.0) -> Tensor:
    """Stroke-guided generation (SDEdit with a CM): x = f(y + tau_1 z, tau_1), then Alg. 1 over the rest."""
    s = [float(v) for v in sigmas]
    return multistep(cm, y + s[0] * _noise(y, generator), s, generator=generator, cond=cond, clip=clip)


@torch.no_grad()
def denoise(cm: Any, y: Tensor, sigma: float, cond: Any = None, clip: float | None = 1.0) -> Tensor:
    """Remove Gaussian noise of known level sigma in one call: f(y, sigma) (CM App. D)."""
    check_denoiser(cm)
    if not cm.sigma_min <= sigma <= cm.sigma_max:
        raise ValueError(f"sigma={sigma} is outside the model's range [{cm.sigma_min}, {cm.sigma_max}]")
    x = cm(y, float(sigma), cond)
    return x if clip is None else x.clamp(-clip, clip)


def slerp(z0: Tensor, z1: Tensor, alpha: float) -> Tensor:
    """Spherical interpolation of two noise tensors per sample (Shoemake 1985; CM App. D)."""
    a, b = z0.reshape(z0.shape[0], -1), z1.reshape(z1.shape[0], -1)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    th = cos.clamp(-1, 1).acos()[:, None]
    out = (torch.sin((1 - alpha) * th) * a + torch.sin(alpha * th) * b) / torch.sin(th).clamp_min(1e-8)
    return out.reshape(z0.shape)


@torch.no_grad()
def interpolate(cm: Any, z0: Tensor, z1: Tensor, alphas: Sequence[float], cond: Any = None,
                clip: float | None = 1.0) -> Tensor:
    """One-step images along the slerp path between two standard-normal noises: [len(alphas), B, ...]."""
    if len(alphas) == 0:
        raise ValueError("alphas is empty; give the interpolation weights in [0, 1], e.g. [0, 0.5, 1]")
    T = float(cm.sigma_max)
    outs = [multistep(cm, T * slerp(z0, z1, float(a)), [T], cond=cond, clip=clip) for a in alphas]
    return torch.stack(outs)

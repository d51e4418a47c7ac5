"""Orthogonal transforms A for zero-shot editing (Song et al. 2023, "Consistency Models", Alg. 4 and App. D).

A maps an image [B, C, H, W] to coefficients of the same number of entries; A^-1 = A^T. The mask Omega lives in
coefficient space (1 = generate, 0 = keep from the reference y). All maps run in float64 so that the kept
coefficients survive the round trip to ~1e-15.
- identity: pixels (inpainting);
- patch_mean(p): per p x p patch, Q with first column 1/p (the patch mean, the low-res pixel) (super-resolution);
- luma: per pixel, Q with first column proportional to (0.2989, 0.5870, 0.1140) (colorization).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Orthogonal:
    """A and A^-1 = A^T as functions of [B, C, H, W] tensors, plus the mask builder of the 'known' coefficients."""

    name: str
    forward: Callable[[Tensor], Tensor]
    inverse: Callable[[Tensor], Tensor]


def basis(first: Tensor) -> Tensor:
    """An orthogonal Q [n, n] whose first column is first / ||first|| (QR as in the CM code's colorization)."""
    first = first.to(torch.float64).reshape(-1)
    n = first.numel()
    M = torch.cat([first[:, None], torch.eye(n, dtype=torch.float64)[:, 1:]], dim=1)
    Q, R = torch.linalg.qr(M)
    return Q * torch.sign(R.diagonal())[None, :]  # make the first column +first/||first||


def identity() -> Orthogonal:
    """A = I: the mask acts on pixels (inpainting)."""
    return Orthogonal("identity", lambda x: x.to(torch.float64), lambda c: c)


LUMA_WEIGHTS = (0.2989, 0.5870, 0.1140)  # ITU-R BT.601, as the CM code


def to_gray(x: Tensor) -> Tensor:
    """The luma of colour images [B, 3, H, W] as [B, 1, H, W], scaled so a gray image maps to itself."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True) / w.sum()


def luma() -> Orthogonal:
    """Per-pixel colour basis, coefficient 0 = luma / ||luma weights|| (CM `iterative_colorization`)."""
    Q = basis(torch.tensor(LUMA_WEIGHTS))

    def fwd(x: Tensor) -> Tensor:
        if x.shape[1] != 3:
            raise ValueError(f"colorization needs 3-channel images, got {x.shape[1]} channels")
        return torch.einsum("ij,bihw->bjhw", Q.to(x.device), x.to(torch.float64))

    return Orthogonal("luma", fwd, lambda c: torch.einsum("ij,bjhw->bihw", Q.to(c.device), c))


def patch_mean(p: int) -> Orthogonal:
    """Per p x p patch, coefficient 0 = p * patch mean; coefficients laid out [B, C * p^2, H/p, W/p]
    (channel-major, component-minor) (CM `iterative_superres`)."""
    Q = basis(torch.ones(p * p))

    def fwd(x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not divisible by the patch size {p}")
        patches = x.to(torch.float64).reshape(B, C, H // p, p, W // p, p).permute(0, 1, 2, 4, 3, 5)
        coef = patches.reshape(B, C, H // p, W // p, p * p) @ Q.to(x.device)
        return coef.permute(0, 1, 4, 2, 3).reshape(B, C * p * p, H // p, W // p)

    def inv(c: Tensor) -> Tensor:
        B, Cp, h, w = c.shape
        C = Cp // (p * p)
        coef = c.reshape(B, C, p * p, h, w).permute(0, 1, 3, 4, 2) @ Q.to(c.device).T
        return coef.reshape(B, C, h, w, p, p).permute(0, 1, 2, 4, 3, 5).reshape(B, C, h * p, w * p)

    return Orthogonal(f"patch_mean{p}", fwd, inv)


def keep_first_component(A: Orthogonal, x: Tensor, p: int = 1) -> Tensor:
    """Omega for superres / colorization: 0 on component 0 of each patch (or on the luma channel), 1 elsewhere."""
    c = A.forward(x)
    omega = torch.ones_like(c)
    if A.name == "luma":
        omega[:, 0] = 0
    else:
        omega.reshape(c.shape[0], -1, p * p, *c.shape[2:])[:, :, 0] = 0
    return omega

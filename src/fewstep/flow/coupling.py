"""Couplings of data and noise for flow matching: independent (Lipman et al. 2023) or minibatch optimal transport
(Tong et al. 2024, "Improving and generalizing flow-based generative models with minibatch optimal transport",
Sec. 3.2; Pooladian et al. 2023): the exact OT plan between the batch's data and noise, solved by POT."""

from __future__ import annotations

import torch
from torch import Tensor

COUPLINGS = ("independent", "ot")


def ot_permutation(x0: Tensor, n: Tensor) -> Tensor:
    """The permutation pi minimising sum_i ||x0_i - n_pi(i)||^2 (exact OT between two uniform batches of equal size:
    its plan is a permutation matrix, Birkhoff's theorem); solved with POT's network simplex (ot.emd)."""
    import ot

    B = x0.shape[0]
    if n.shape[0] != B:
        raise ValueError(f"OT coupling needs batches of equal size, got {B} data and {n.shape[0]} noise")
    M = torch.cdist(x0.reshape(B, -1).double(), n.reshape(B, -1).double()).pow(2).cpu().numpy()
    w = torch.full((B,), 1.0 / B, dtype=torch.float64).numpy()
    plan = ot.emd(w, w, M)
    return torch.from_numpy(plan.argmax(axis=1)).to(n.device)


def couple(x0: Tensor, n: Tensor, coupling: str = "independent") -> Tensor:
    """The noise paired with each data point: n itself (independent) or n re-ordered by minibatch OT."""
    if coupling == "independent":
        return n
    if coupling == "ot":
        return n[ot_permutation(x0, n)]
    raise ValueError(f"unknown coupling {coupling!r}; known: {', '.join(COUPLINGS)}")

"""The Temporal Information Block run on its own: (sigma, label) -> every block's projection of the time embedding,
the module TFMQ-DM reconstructs alone (TIAR, Huang et al. 2024, Eq. 9: the loss sums over the TIB's outputs) and
whose outputs the journal version caches per step. One adapter per network family (fewstep's UNet, diffusers'
UNet2DModel), mirroring the embedding part of their forward passes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nets import conditions as C


def _precond_of(den: Any) -> Any:
    m = den
    while not hasattr(m, "precond") and hasattr(m, "den"):
        m = m.den
    return m


def supported(net: nn.Module) -> bool:
    """Whether the TIB of this network can run alone (fewstep UNet, diffusers UNet2DModel through UNetNet)."""
    return hasattr(net, "time_embed") and hasattr(net, "cond_embed") or hasattr(getattr(net, "unet", None),
                                                                                "time_embedding")


def projections(net: nn.Module) -> list[nn.Module]:
    """The blocks' time projections, in module order."""
    names = ("emb_proj", "time_emb_proj")
    return [getattr(m, n) for m in net.modules() for n in names if isinstance(getattr(m, n, None), nn.Module)]


def features(den: Any, sigma: float | Tensor, labels: Tensor | None, batch: int) -> list[Tensor]:
    """[B, C_i] outputs of every time projection at noise level sigma (a float or [B]); labels [B] with -1 (or None)
    the null label."""
    pre = _precond_of(den)
    net = pre.net
    s = sigma if torch.is_tensor(sigma) else torch.full((batch,), float(sigma), dtype=torch.float64)
    c_noise = pre.precond.c_noise(s.to(torch.float64)).float()
    if hasattr(net, "time_embed"):
        emb = net.time_embed(c_noise.reshape(-1).expand(batch))
        if net.label_embed is not None:
            y = None if labels is None else torch.where(labels < 0, net.num_classes, labels)
            emb = emb + net.label_embed(y, batch, c_noise.device)
        emb = F.silu(net.cond_embed(emb, C.as_dict(None, net.conds, "UNet")))
        return [p(emb) for p in projections(net)]
    unet = net.unet
    emb = unet.time_embedding(unet.time_proj(c_noise.reshape(-1).expand(batch)).to(unet.dtype))
    if unet.class_embedding is not None:
        null = getattr(net, "null_label", None)
        y = torch.full((batch,), null, dtype=torch.long) if labels is None else labels
        y = torch.where(y < 0, null if null is not None else 0, y)
        emb = emb + unet.class_embedding(y).to(emb.dtype)
    blocks = [m for m in unet.modules() if isinstance(getattr(m, "time_emb_proj", None), nn.Module)]
    return [b.time_emb_proj(b.nonlinearity(emb)) for b in blocks]


def cosine(a: list[Tensor], b: list[Tensor]) -> float:
    """Mean over rows of the cosine similarity of the concatenated temporal features (TFMQ-DM Fig. 3's measure)."""
    u, v = torch.cat(a, dim=1).double(), torch.cat(b, dim=1).double()
    return float(F.cosine_similarity(u, v, dim=1).mean())

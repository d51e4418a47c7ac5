"""A quantized Conv2d / Linear swapped in for the original: input activations through a per-tensor quantizer (two for
a concatenated skip input, Q-Diffusion's split quantizer, Li et al. 2023, Sec. 3.3), weights through a per-channel
one. Its role says what the method does with it: "fp" (kept in full precision: first / last layers, shortcuts, as
TFMQ-DM's `quant_module` does after PTQD), "tib" (a Temporal Information Block layer, TFMQ-DM Sec. 4.2) or "body".
A TIB layer can serve full-precision outputs from a cache keyed by (plan step, label): the journal version's
temporal feature cache ("Temporal Feature Matters", Huang et al. 2025).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .quantizer import ActQuantizer, WeightQuantizer


@dataclass
class StepContext:
    """What the quantized layers read during one denoiser call: the plan-step key k, the labels [B] (or None),
    whether TIB layers serve cached full-precision features, and a recorder of layer inputs (calibration)."""

    key: int = 0
    labels: Tensor | None = None
    cache: bool = False
    record: Any = None
    stats: dict[str, Any] = field(default_factory=dict)


class QLayer(nn.Module):
    """Fake-quantized Conv2d / Linear: y = op(Q_a(x), Q_w(W)) + b; `split` > 0 quantizes x[:, :split] and
    x[:, split:] with separate activation quantizers."""

    def __init__(self, org: nn.Conv2d | nn.Linear, name: str, role: str, w_bits: int | None, a_bits: int | None,
                 keys: int, ctx: StepContext, split: int = 0) -> None:
        super().__init__()
        self.org, self.name, self.role, self.split = org, name, role, int(split)
        self.w_bits, self.a_bits = w_bits, a_bits
        object.__setattr__(self, "ctx", ctx)  # shared, not a submodule
        quantized = role != "fp"
        self.wq = WeightQuantizer(org.weight, w_bits) if quantized and w_bits else None
        self.aq = ActQuantizer(a_bits, keys) if quantized and a_bits else None
        self.aq2 = ActQuantizer(a_bits, keys) if quantized and a_bits and split else None
        self.use_w, self.use_a = self.wq is not None, False
        self.memo: dict[tuple[int, int], Tensor] = {}

    def weight(self) -> Tensor:
        return self.wq(self.org.weight) if self.use_w and self.wq is not None else self.org.weight

    def op(self, x: Tensor, w: Tensor) -> Tensor:
        m = self.org
        x = x.to(w.dtype)  # activation quantizers keep float32 parameters; a half-precision model computes in half
        if isinstance(m, nn.Linear):
            return F.linear(x, w, m.bias)
        return F.conv2d(x, w, m.bias, m.stride, m.padding, m.dilation, m.groups)

    def quant_input(self, x: Tensor) -> Tensor:
        k = self.ctx.key
        if self.ctx.record is not None:
            self.ctx.record(self, x)
        if not (self.use_a and self.aq is not None):
            return x
        if self.aq2 is not None:
            return torch.cat([self.aq(x[:, :self.split], k), self.aq2(x[:, self.split:], k)], dim=1)
        return self.aq(x, k)

    def forward(self, x: Tensor) -> Tensor:
        if self.role == "tib" and self.ctx.cache:
            return self.cached(x)
        return self.op(self.quant_input(x), self.weight())

    def cached(self, x: Tensor) -> Tensor:
        """Full-precision temporal features, memoised per (plan step, label); rows without a known label are
        computed in full precision (the same numbers the cache holds)."""
        labels = self.ctx.labels
        if labels is None or x.ndim != 2 or labels.shape != (x.shape[0],):
            return self.op(x, self.org.weight)
        uniq, inv = torch.unique(labels, return_inverse=True)
        rows = []
        for j, y in enumerate(uniq.tolist()):
            key = (self.ctx.key, int(y))
            if key not in self.memo:
                first = int((inv == j).nonzero()[0, 0])
                self.memo[key] = self.op(x[first:first + 1], self.org.weight)[0].detach()
            rows.append(self.memo[key])
        return torch.stack(rows)[inv].to(x.dtype)

"""Real int8 on x86 CPUs: the quantized model's network through PT2E static quantization (torch.export, torchao's
`prepare_pt2e` with `X86InductorQuantizer` and its default config, calibration on the model's own calibration data,
`convert_pt2e`), then Inductor with freezing (`torch._inductor.config.freezing = True`, without which int8 PT2E runs
far slower than float32, pytorch#144434) and `torch.compile`.

The weights are the W8A8 model's reconstructed (baked) weights, re-quantized per channel by the x86 quantizer
(symmetric int8). Activations get ONE set of parameters (PT2E observers over every calibration step): a frozen
Inductor graph holds its scales as constants, so TFMQ's per-step sets would need one graph per step (the authors used
a modified OpenVINO). The TFMQ time embedding and projections stay in float32 (the TIB is left unannotated), as the
temporal cache keeps them. W4 has no CPU kernel and stays simulated.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from ..precond import Preconditioned
from .calib import Calib
from .layers import QLayer
from .model import QuantizedDenoiser, is_tib, network, null_label


def plain_network(q: QuantizedDenoiser) -> nn.Module:
    """A float copy of q's network with every QLayer replaced by its (baked) original layer."""
    net = copy.deepcopy(network(q.den))
    for name, m in list(net.named_modules()):
        if isinstance(m, QLayer):
            parent, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, child, m.org)
    return net.eval()


class _Call(nn.Module):
    """F(x_in, c_noise, labels) with labels always a tensor (the null label for none): what torch.export traces."""

    def __init__(self, net: nn.Module, labelled: bool) -> None:
        super().__init__()
        self.net, self.labelled = net, labelled

    def forward(self, x_in: Tensor, c_noise: Tensor, labels: Tensor) -> Tensor:
        return self.net(x_in, c_noise, labels if self.labelled else None)


class Int8Net(nn.Module):
    """The compiled int8 network(s) as a fewstep network F(x_in, c_noise, cond). `fns` maps a batch size to its
    static-shape graph; a call of another size runs in chunks of the largest one, the last chunk padded."""

    def __init__(self, fns: dict[int, Any], null: int, size_bytes: int) -> None:
        super().__init__()
        self.fns, self.null, self.size_bytes = dict(fns), int(null), int(size_bytes)

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        B = x_in.shape[0]
        y = (cond if torch.is_tensor(cond) else torch.full((B,), self.null, dtype=torch.long)).long()
        c = c_noise.float().reshape(-1).expand(B).contiguous()
        x = x_in.float()
        if B in self.fns:
            return self.fns[B](x, c, y)
        size = max(self.fns)
        outs = []
        for i in range(0, B, size):
            xb, cb, yb = x[i:i + size], c[i:i + size], y[i:i + size]
            k = len(xb)
            if k < size:
                pad = size - k
                xb = torch.cat([xb, xb[:1].expand(pad, *xb.shape[1:])])
                cb, yb = torch.cat([cb, cb[:1].expand(pad)]), torch.cat([yb, yb[:1].expand(pad)])
            outs.append(self.fns[size](xb, cb, yb)[:k])
        return torch.cat(outs)


def model_bytes(gm: nn.Module) -> int:
    """Bytes of the tensors a converted graph actually reads (get_attr nodes with users: int8 weights folded by
    convert_pt2e, their scales, float32 biases and unquantized layers); the float32 originals it still carries
    unused are not counted. A module without a graph counts its state dict."""
    graph = getattr(gm, "graph", None)
    if graph is None:
        return sum(t.numel() * t.element_size() for t in gm.state_dict().values())
    seen: dict[int, int] = {}
    for node in graph.nodes:
        if node.op == "get_attr" and node.users:
            t: Any = gm
            for part in str(node.target).split("."):
                t = getattr(t, part)
            if torch.is_tensor(t):
                seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())


def _example(q: QuantizedDenoiser, c: Calib, n: int, null: int) -> tuple[Tensor, Tensor, Tensor]:
    pre = q.den
    idx = torch.randperm(len(c.x), generator=torch.Generator().manual_seed(0))[:n]
    s = c.sigma[idx]
    x_in = (c.x[idx] * pre.precond.c_in(s).reshape(-1, *([1] * (c.x.ndim - 1)))).float()
    y = c.cond[idx] if c.cond is not None else torch.full((n,), null, dtype=torch.long)
    return x_in, pre.precond.c_noise(s).float(), torch.where(y < 0, null, y).long()


def quantize_pt2e(q: QuantizedDenoiser, calib: Calib | None = None, batch: int = 256, calib_rows: int = 512,
                  keep_tib: bool = True) -> tuple[nn.Module, int]:
    """(converted int8 graph module, its size in bytes): export at a static batch size (a dynamic batch dimension
    does not export through the UNet's attention here), annotate with X86InductorQuantizer's default static config
    (TIB layers left in float32 when keep_tib), calibrate on calib_rows rows, convert."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    c = calib if calib is not None else getattr(q, "calib", None)
    if c is None:
        raise ValueError("to_int8 needs calibration data: quantize in this session (q.calib) or pass calib=")
    net = plain_network(q)
    null = null_label(q)
    labelled = c.cond is not None or getattr(net, "null_label", None) is not None or bool(
        getattr(net, "num_classes", 0))
    call = _Call(net, labelled).eval()
    ex = _example(q, c, batch, null)
    ep = torch.export.export(call, ex)
    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
    if keep_tib:
        for name, m in net.named_modules():
            if isinstance(m, nn.Linear) and is_tib(name):
                quantizer.set_module_name_qconfig(f"net.{name}", None)
    gm = prepare_pt2e(ep.module(), quantizer)
    rows = _example(q, c, max(calib_rows // batch, 1) * batch, null)
    with torch.no_grad():
        for i in range(0, len(rows[0]), batch):
            gm(*(t[i:i + batch] for t in rows))
    gm = convert_pt2e(gm)
    return gm, model_bytes(gm)


def to_int8(q: QuantizedDenoiser, calib: Calib | None = None, compile: bool = True, keep_tib: bool = True,
            batch: int = 256) -> nn.Module:
    """The real-int8 denoiser of a W8A8 quantized model (same contract D(x, sigma, cond)), one static graph of
    `batch` rows (other call sizes run in padded chunks); `compile`: Inductor with freezing (compiles on the first
    call, minutes on a small CPU)."""
    if q.bits.lower() != "w8a8":
        raise ValueError(f"real int8 needs a W8A8 model; {q.bits} has no CPU kernel and stays simulated")
    gm, size = quantize_pt2e(q, calib, batch=batch, keep_tib=keep_tib)
    fn: Any = gm
    if compile:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        fn = torch.compile(gm)
    pre = q.den
    out = Preconditioned(Int8Net({batch: fn}, null_label(q), size), pre.precond, pre.sigma_min, pre.sigma_max,
                         getattr(pre, "shape", None))
    out.config = dict(getattr(q, "config", None) or {})
    if q.autoencoder is not None:
        from ..latent.denoiser import LatentDenoiser

        lat = LatentDenoiser(out, q.autoencoder)
        lat.config = out.config
        return lat
    return out

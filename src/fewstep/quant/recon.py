"""Reconstruction: AdaRound weights per block on the block-output error (BRECQ, Li et al. 2021, Eq. 7; Q-Diffusion's
`block_recon`), Q-Diffusion's activation-step learning, and TFMQ-DM's TIAR: the Temporal Information Block alone,
loss summed over its outputs, TIB layers excluded from every block (Huang et al. 2024, Sec. 4.2, Eq. 9).

CPU-sized: `iters` per unit (the papers use 20 000 for weights, 5 000 for activations), batch 32, the rounding
regulariser weighted 0.01 with beta annealed 20 -> 2 after 20% warm-up (the released defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .calib import Calib, batches
from .layers import QLayer
from .model import BLOCKS, QuantizedDenoiser, network, null_label
from .tib import cosine, features, supported


@dataclass
class ReconConfig:
    iters: int = 200
    act_iters: int = 100
    batch: int = 32
    lr: float = 3e-3
    act_lr: float = 4e-4
    weight: float = 0.01
    warmup: float = 0.2
    beta: tuple[float, float] = (20.0, 2.0)


class _Stop(Exception):
    pass


def units(q: QuantizedDenoiser, fp: nn.Module, c: Calib) -> list[tuple[str, nn.Module, list[QLayer]]]:
    """(name, module, its trainable QLayers) in forward order: BRECQ blocks (ResBlocks, attention), then every other
    quantized layer as its own unit."""
    net = network(q.den)
    blocks = [(n, m) for n, m in net.named_modules() if type(m).__name__ in BLOCKS]
    outer = [(n, m) for n, m in blocks if not any(n.startswith(o + ".") for o, _ in blocks if o != n)]
    inside = {id(layer) for _, m in outer for layer in m.modules() if isinstance(layer, QLayer)}
    cand = outer + [(layer.name, layer) for layer in q.qlayers() if id(layer) not in inside]
    order: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda mod, a, n=n: order.append(n) if n not in order else None)
             for n, m in cand]
    x, s, y = batches(c, 2, null_label(q))[0]
    with torch.no_grad():
        q(x, s, y)
    for h in hooks:
        h.remove()
    by_name = dict(cand)
    out = []
    for n in order:
        m = by_name[n]
        layers = [m] if isinstance(m, QLayer) else [la for la in m.modules() if isinstance(la, QLayer)]
        out.append((n, m, layers))
    return out


def _cat(parts: list[Any]) -> Any:
    first = parts[0]
    if torch.is_tensor(first):
        return torch.cat(parts)
    if isinstance(first, (tuple, list)):
        return type(first)(_cat([p[i] for p in parts]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _cat([p[k] for p in parts]) for k in first}
    return first


def _index(v: Any, idx: Tensor, n: int) -> Any:
    if torch.is_tensor(v):
        return v[idx] if v.ndim and v.shape[0] == n else v
    if isinstance(v, (tuple, list)):
        return type(v)(_index(u, idx, n) for u in v)
    if isinstance(v, dict):
        return {k: _index(u, idx, n) for k, u in v.items()}
    return v


@torch.no_grad()
def capture(model: nn.Module, module: nn.Module, c: Calib, batch: int = 256) -> tuple[Any, Any, Tensor]:
    """(args, kwargs, output) of `module` over the calibration rows, the forward stopped right after it."""
    got: list[tuple[Any, Any, Tensor]] = []

    def hook(mod: nn.Module, args: Any, kwargs: Any, out: Tensor) -> None:
        got.append((tuple(a.detach() if torch.is_tensor(a) else a for a in args), dict(kwargs), out.detach()))
        raise _Stop

    h = module.register_forward_hook(hook, with_kwargs=True)
    inner = model.den if isinstance(model, QuantizedDenoiser) else model  # one activation set while capturing
    try:
        for i in range(0, len(c.x), batch):
            y = None if c.cond is None else c.cond[i:i + batch]
            y = None if y is None or bool((y < 0).all()) else torch.where(y < 0, null_label(model), y)
            try:
                inner(c.x[i:i + batch], c.sigma[i:i + batch], y)
            except _Stop:
                pass
    finally:
        h.remove()
    return _cat([g[0] for g in got]), _cat([g[1] for g in got]), torch.cat([g[2] for g in got])


def rec_loss(pred: Tensor, tgt: Tensor) -> Tensor:
    """BRECQ's lp_loss(p=2): squared error summed over channels, mean over the rest."""
    d = (pred - tgt).square()
    return d.sum(1).mean() if d.ndim > 1 else d.mean()


def _beta(cfg: ReconConfig, i: int) -> float | None:
    start = cfg.warmup * cfg.iters
    if i < start:
        return None
    r = (i - start) / max(cfg.iters - start, 1)
    return cfg.beta[1] + (cfg.beta[0] - cfg.beta[1]) * (1 - r)


def adaround(layers: list[QLayer], forward: Any, n: int, cfg: ReconConfig, seed: int) -> float:
    """Learn the rounding of `layers` so that forward(idx) (a prediction and its target, or lists of them whose
    losses add up) match; hard rounding after. Returns the final reconstruction loss."""
    trainable = [la for la in layers if la.use_w and la.wq is not None]
    if not trainable:
        return float("nan")
    for la in trainable:
        la.wq.init_adaround(la.org.weight)
    opt = torch.optim.Adam([la.wq.alpha for la in trainable], lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    for i in range(cfg.iters):
        idx = torch.randint(n, (min(cfg.batch, n),), generator=g)
        pred, tgt = forward(idx)
        loss = (sum(rec_loss(a, b) for a, b in zip(pred, tgt, strict=True)) if isinstance(pred, list)
                else rec_loss(pred, tgt))
        beta = _beta(cfg, i)
        total = loss if beta is None else loss + cfg.weight * sum(la.wq.round_loss(beta) for la in trainable)
        opt.zero_grad()
        total.backward()
        opt.step()
    for la in trainable:
        la.wq.soft = False
        la.wq.alpha.requires_grad_(False)
    return float(loss.detach())


def learn_act_steps(layers: list[QLayer], forward: Any, n: int, cfg: ReconConfig, seed: int) -> None:
    """Q-Diffusion's activation reconstruction: the activation step sizes learnt on the block error (LSQ-style)."""
    deltas = [a.delta for la in layers if la.use_a for a in (la.aq, la.aq2) if a is not None]
    if not deltas or cfg.act_iters <= 0:
        return
    for d in deltas:
        d.requires_grad_(True)
    opt = torch.optim.Adam(deltas, lr=cfg.act_lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(cfg.act_iters):
        idx = torch.randint(n, (min(cfg.batch, n),), generator=g)
        pred, tgt = forward(idx)
        loss = (sum(rec_loss(a, b) for a, b in zip(pred, tgt, strict=True)) if isinstance(pred, list)
                else rec_loss(pred, tgt))
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for d in deltas:
                d.clamp_(min=1e-8)
    for d in deltas:
        d.requires_grad_(False)


def reconstruct_blocks(q: QuantizedDenoiser, fp: nn.Module, c: Calib, cfg: ReconConfig, seed: int = 0,
                       acts: bool = False) -> dict[str, float]:
    """BRECQ over every unit in forward order: inputs from the quantized model so far, targets from the full-precision
    one. TIB layers are trained here only for Q-Diffusion (TFMQ handles them by TIAR or the cache). `acts`: the
    second, activation pass (Q-Diffusion), weights fixed."""
    fp_net = network(fp)
    out = {}
    for k, (name, module, layers) in enumerate(units(q, fp, c)):
        train = [la for la in layers if la.role == "body" or (la.role == "tib" and q.method == "qdiffusion")]
        if not train:
            continue
        args, kwargs, _ = capture(q, module, c)
        _, _, tgt = capture(fp, fp_net.get_submodule(name), c)
        n = len(tgt)

        def forward(idx: Tensor, module: nn.Module = module, args: Any = args, kwargs: Any = kwargs,
                    tgt: Tensor = tgt, n: int = n) -> tuple[Tensor, Tensor]:
            return module(*_index(args, idx, n), **_index(kwargs, idx, n)), tgt[idx]
        if acts:
            q.ctx.key = 0
            learn_act_steps(train, forward, n, cfg, seed + k)
        else:
            out[name] = adaround(train, forward, n, cfg, seed + k)
    return out


def tiar(q: QuantizedDenoiser, fp: nn.Module, c: Calib, cfg: ReconConfig, seed: int = 0) -> float:
    """TIAR: the TIB's layers reconstructed together on (sigma, label) rows, the loss summed over every time
    projection's output (TFMQ-DM Eq. 9, `LossFuncTimeEmbedding`)."""
    layers = [la for la in q.qlayers() if la.role == "tib"]
    if not layers or not supported(network(q.den)):
        return float("nan")
    labels = c.cond
    sig = c.sigma
    with torch.no_grad():
        tgt = [t.detach() for t in features(fp, sig, labels, len(sig))]
    n = len(sig)

    def run(idx: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        return features(q.den, sig[idx], None if labels is None else labels[idx], len(idx)), [t[idx] for t in tgt]

    return adaround(layers, run, n, cfg, seed)


@torch.no_grad()
def temporal_cosines(q: QuantizedDenoiser, fp: nn.Module, c: Calib, per_key: int = 64) -> list[float]:
    """Cosine similarity of the quantized model's temporal features to full precision at each calibrated sigma
    (TFMQ-DM Fig. 3), over the calibration labels."""
    if not supported(network(q.den)):
        return []
    out = []
    for s in c.keys:
        idx = (c.sigma == s).nonzero().squeeze(1)[:per_key]
        y = None if c.cond is None else c.cond[idx]
        q.ctx.key, q.ctx.labels = q.key_of(s), (y if y is not None else torch.full((len(idx),), -1))
        a = features(q.den, s, y, len(idx))
        b = features(fp, s, y, len(idx))
        out.append(cosine(a, b))
    return out

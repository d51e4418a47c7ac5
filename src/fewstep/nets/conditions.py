"""Generic conditions of the fewstep networks: class labels, scalars and spatial maps, and CFG condition dropout.

A network declares its conditions as JSON data, `conds={"y": {"kind": "label", "num_classes": 10},
"w": {"kind": "scalar"}, "inpaint": {"kind": "map", "channels": 2}}`; `cond` is then a tensor (the labels "y") or a
dict of tensors, and a missing entry (or cond=None) is that condition's null:
- label: the null label num_classes (Ho & Salimans 2022, Sec. 3), embedded by `LabelEmbed` (nets/layers.py);
- scalar: LCM's guidance-scale input w (Luo et al. 2023, Sec. 4.2; diffusers `cond_proj`): sinusoidal features of
  w through a zero-initialised projection, so a fresh scalar input leaves the network's output unchanged; NaN marks
  a null value, embedded by a learned null vector (zero-initialised too);
- map: extra input channels concatenated to x (LFM's inpainting mask + masked latent, Dao et al. 2023; layouts;
  UFOGen's low-res input), null = zeros; the first layer's weights for them start at zero (`widen_in`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import NoiseEmbedding, check_uncond

KINDS = ("label", "scalar", "map")
LABEL = "y"  # the label condition a plain-tensor cond stands for; its embedding is the network's `label_embed`
_KEYS = {"label": {"num_classes"}, "scalar": {"dim", "scale", "max_period"}, "map": {"channels", "resize"}}


def parse(conds: Mapping[str, Any] | None = None, num_classes: int = 0) -> dict[str, dict[str, Any]]:
    """Check and complete a conds declaration; `num_classes=K` is short for {"y": {"kind": "label", ...: K}}."""
    out: dict[str, dict[str, Any]] = {}
    if num_classes:
        out[LABEL] = {"kind": "label", "num_classes": int(num_classes)}
    for name, spec in dict(conds or {}).items():
        if not isinstance(spec, Mapping) or spec.get("kind") not in KINDS:
            raise ValueError(f"condition {name!r} needs a dict with kind in {KINDS}, got {spec!r}")
        kind, extra = spec["kind"], set(spec) - _KEYS[spec["kind"]] - {"kind"}
        if extra:
            raise ValueError(f"condition {name!r} ({kind}) has unknown keys {sorted(extra)}; known: "
                             f"{sorted(_KEYS[kind])}")
        s = dict(spec)
        if kind == "label":
            if int(s.get("num_classes", 0)) < 1:
                raise ValueError(f"label condition {name!r} needs num_classes >= 1, got {s.get('num_classes')}")
            if name != LABEL:
                raise ValueError(f"the label condition must be named {LABEL!r}, got {name!r} (one label per net)")
            if name in out and out[name] != s:
                raise ValueError(f"num_classes={num_classes} disagrees with conds[{name!r}]={spec}; give one")
        elif kind == "scalar":
            s = {"kind": "scalar", "dim": 256, "scale": 1000.0, "max_period": 1e4, **s}
        elif int(s.get("channels", 0)) < 1:
            raise ValueError(f"map condition {name!r} needs channels >= 1, got {s.get('channels')}")
        elif s.setdefault("resize", None) not in (None, "nearest", "bilinear"):
            raise ValueError(f"map condition {name!r}: resize must be null, 'nearest' or 'bilinear'")
        out[name] = s
    return out


def map_channels(specs: Mapping[str, Mapping[str, Any]]) -> int:
    """Total extra input channels of the map conditions."""
    return sum(int(s["channels"]) for s in specs.values() if s["kind"] == "map")


def as_dict(cond: Any, specs: Mapping[str, Mapping[str, Any]], name: str = "network") -> dict[str, Any]:
    """cond (None, labels tensor, or dict) -> {condition name: value or None}, rejecting unknown names."""
    if cond is None:
        return {}
    if not isinstance(cond, Mapping):
        if LABEL not in specs:
            check_uncond(cond, name)
        return {LABEL: cond}
    unknown = set(cond) - set(specs)
    if unknown:
        raise ValueError(f"this {name} has no conditions {sorted(unknown)}; declared: {sorted(specs) or 'none'}")
    return dict(cond)


class ScalarEmbed(nn.Module):
    """A scalar [B] (e.g. LCM's guidance scale w) -> sinusoidal features -> zero-initialised linear -> [B, emb_dim].

    LCM (Luo et al. 2023, Sec. 4.2) embeds w with `dim` sinusoids of w * scale (diffusers `cond_proj`); the
    projection and the null vector (used where w is NaN) start at zero and draw no random numbers.
    """

    def __init__(self, emb_dim: int, dim: int = 256, scale: float = 1000.0, max_period: float = 1e4) -> None:
        super().__init__()
        self.features = NoiseEmbedding(dim, scale, max_period)
        self.weight = nn.Parameter(torch.zeros(emb_dim, dim))
        self.bias = nn.Parameter(torch.zeros(emb_dim))
        self.null = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, w: Tensor | float | None, batch: int, device: torch.device) -> Tensor:
        if w is None:
            return self.null.expand(batch, -1)
        w = torch.as_tensor(w, device=device)
        w = w.expand(batch) if w.ndim == 0 else w
        if w.dtype == torch.bool or w.is_complex() or w.shape != (batch,):
            raise ValueError(f"a scalar condition must be a number or a tensor [batch={batch}], got {w.dtype} "
                             f"{tuple(w.shape)}")
        w = w.float()
        null = torch.isnan(w)[:, None]
        feats = self.features(torch.nan_to_num(w, nan=0.0)).to(self.weight.dtype)
        return torch.where(null, self.null, F.linear(feats, self.weight, self.bias))


class CondEmbed(nn.ModuleDict):
    """The scalar conditions' embeddings, summed into one [B, emb_dim] term (labels stay in `label_embed`)."""

    def __init__(self, specs: Mapping[str, Mapping[str, Any]], emb_dim: int) -> None:
        super().__init__({k: ScalarEmbed(emb_dim, s["dim"], s["scale"], s["max_period"])
                          for k, s in specs.items() if s["kind"] == "scalar"})

    def forward(self, emb: Tensor, cond: Mapping[str, Any]) -> Tensor:  # type: ignore[override]
        for k, m in self.items():
            emb = emb + m(cond.get(k), emb.shape[0], emb.device)
        return emb


def concat_maps(x: Tensor, cond: Mapping[str, Any], specs: Mapping[str, Mapping[str, Any]]) -> Tensor:
    """[x, map_1, map_2, ...] along channels in declaration order; a missing map is zeros (LFM, Sec. 4)."""
    maps = [x]
    for k, s in specs.items():
        if s["kind"] != "map":
            continue
        c, m = int(s["channels"]), cond.get(k)
        if m is None:
            maps.append(x.new_zeros(x.shape[0], c, *x.shape[2:]))
            continue
        m = torch.as_tensor(m, device=x.device).to(x.dtype)
        if m.ndim != x.ndim or m.shape[:2] != (x.shape[0], c):
            raise ValueError(f"map condition {k!r} must have shape [batch={x.shape[0]}, {c}, ...], got "
                             f"{tuple(m.shape)}")
        if m.shape[2:] != x.shape[2:]:
            if s.get("resize") is None:
                raise ValueError(f"map condition {k!r} has size {tuple(m.shape[2:])} but x has "
                                 f"{tuple(x.shape[2:])}; resize it or declare 'resize': 'nearest' in its spec")
            m = F.interpolate(m, size=x.shape[2:], mode=s["resize"])
        maps.append(m)
    return torch.cat(maps, dim=1) if len(maps) > 1 else x


def widen_in(layer: nn.Conv2d | nn.Linear, extra: int) -> nn.Conv2d | nn.Linear:
    """The same first layer with `extra` more input channels whose weights are zero (draws no random numbers)."""
    if extra == 0:
        return layer
    if isinstance(layer, nn.Conv2d):
        wide: nn.Module = nn.utils.skip_init(
            nn.Conv2d, layer.in_channels + extra, layer.out_channels, layer.kernel_size, layer.stride,
            layer.padding, layer.dilation, layer.groups, layer.bias is not None, layer.padding_mode)
    elif isinstance(layer, nn.Linear):
        wide = nn.utils.skip_init(nn.Linear, layer.in_features + extra, layer.out_features, layer.bias is not None)
    else:
        raise TypeError(f"widen_in takes a Conv2d or Linear input layer, got {type(layer).__name__}")
    with torch.no_grad():
        wide.weight.copy_(pad_in(layer.weight, wide.weight.shape[1]))
        if layer.bias is not None:
            wide.bias.copy_(layer.bias)
    return wide


def pad_in(weight: Tensor, in_channels: int) -> Tensor:
    """Zero-pad a layer weight [out, in, ...] along its input dimension to `in_channels`."""
    extra = in_channels - weight.shape[1]
    if extra < 0:
        raise ValueError(f"cannot narrow an input layer from {weight.shape[1]} to {in_channels} channels")
    return torch.cat([weight, weight.new_zeros(weight.shape[0], extra, *weight.shape[2:])], dim=1)


def widen_state(state: Mapping[str, Tensor], net: nn.Module, inp: str = "inp") -> dict[str, Tensor]:
    """A trained net's state dict made loadable into `net` built with new conditions: the input layer `inp`
    (any key prefix) gets zero weights for the new map channels and new scalar embeddings take `net`'s fresh
    (zero) values, so the widened network computes what the trained one did."""
    target, w = net.state_dict(), f"{inp}.weight"
    prefix = min((k[: -len(w)] for k in target if k == w or k.endswith(f".{w}")), key=len, default="")
    out = dict(state)
    if prefix + w in out and out[prefix + w].shape != target[prefix + w].shape:
        out[prefix + w] = pad_in(out[prefix + w], target[prefix + w].shape[1])
    for k, v in target.items():
        if k not in out and k[len(prefix):].startswith("cond_embed."):
            out[k] = v.clone()
    return out


def drop_cond(cond: Any, p: float, specs: Mapping[str, Any], generator: torch.Generator,
              keys: Any = None) -> Any:
    """Condition dropout for classifier-free guidance (Ho & Salimans 2022, Alg. 1): each sample independently
    with probability p gets the null of every condition in `keys` (default all): labels -> num_classes, scalars
    -> NaN (the learned null), maps -> zeros. One uniform draw per sample, as `train.loop.drop_labels`."""
    specs = parse(specs)
    if cond is None:
        return None
    if not isinstance(cond, Mapping):
        if LABEL not in specs:
            raise ValueError(f"got labels to drop but no label condition is declared ({sorted(specs)})")
        return drop_cond({LABEL: cond}, p, specs, generator)[LABEL]
    cond, keys = dict(cond), list(specs if keys is None else keys)
    if set(keys) - set(specs):
        raise ValueError(f"cannot drop conditions {sorted(set(keys) - set(specs))}: declared are {sorted(specs)}")
    present = [k for k in keys if cond.get(k) is not None]
    if not present:
        return cond
    first = torch.as_tensor(cond[present[0]])
    drop = torch.rand(first.shape[:1], generator=generator, device=first.device) < p
    for k in present:
        v, s = torch.as_tensor(cond[k], device=drop.device), specs[k]
        if v.shape[:1] != drop.shape:
            raise ValueError(f"condition {k!r} has batch {tuple(v.shape[:1])}, expected {tuple(drop.shape)}")
        d = drop.reshape(-1, *(1,) * (v.ndim - 1))
        if s["kind"] == "label":
            cond[k] = torch.where(d, torch.full_like(v, s["num_classes"]), v)
        elif s["kind"] == "scalar":
            cond[k] = torch.where(d, torch.full_like(v.float(), math.nan), v.float())
        else:
            cond[k] = torch.where(d, torch.zeros_like(v), v)
    return cond


__all__ = ["CondEmbed", "KINDS", "LABEL", "ScalarEmbed", "as_dict", "concat_maps", "drop_cond", "map_channels",
           "pad_in", "parse", "widen_in", "widen_state"]

"""The quantized denoiser: a copy of a denoiser whose network's Conv2d / Linear layers are QLayers, keyed by plan step.

TIB detection (TFMQ-DM, Huang et al. 2024, Sec. 4.2; released `QuantModel.get_tib`): the time embedding (`time_embed`
in fewstep's UNet, `time_embedding` in diffusers) and every block's projection of it (`emb_proj`, `time_emb_proj`,
`temb_proj`, `emb_layers`). Full precision as the released code keeps it: the first and last layers and, for TFMQ,
names holding `skip`, `shortcut` or a downsampling conv (after PTQD). Activation parameter set k belongs to the k-th
sigma the model was calibrated at (a finite set: the plan's), chosen per call by the nearest log sigma (FSC).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from ..denoiser import batch_sigma
from .layers import QLayer, StepContext

TIB_ROOTS = ("time_embed", "time_embedding", "temb")
TIB_PROJ = ("emb_proj", "time_emb_proj", "temb_proj", "emb_layers")
SHORTCUTS = ("skip", "shortcut", "downsample", "downsamplers")
BLOCKS = ("ResBlock", "Attention", "ResnetBlock2D")


def parse_bits(bits: str) -> tuple[int, int | None]:
    """"w8a8" -> (8, 8); "w4a32" -> (4, None): 32-bit activations are not quantized."""
    s = bits.lower().strip()
    if not (s.startswith("w") and "a" in s):
        raise ValueError(f"bits must look like 'w8a8', 'w4a8' or 'w4a32', got {bits!r}")
    w, a = s[1:].split("a")
    wb, ab = int(w), int(a)
    if not (2 <= wb <= 8) or ab not in (4, 6, 8, 16, 32):
        raise ValueError(f"weights need 2-8 bits and activations 4-16 or 32 (not quantized), got {bits!r}")
    return wb, (None if ab == 32 else ab)


def network(den: Any) -> nn.Module:
    """The network F inside a denoiser (Preconditioned.net; a latent denoiser's inner denoiser's)."""
    m = den
    while not hasattr(m, "net") and hasattr(m, "den"):
        m = m.den
    if not isinstance(getattr(m, "net", None), nn.Module):
        raise TypeError(f"cannot find the network of a {type(den).__name__}: quantization needs a Preconditioned "
                        "denoiser (a fewstep checkpoint, a diffusers model wrapped by fs.from_diffusers)")
    return m.net


def is_tib(name: str) -> bool:
    parts = name.split(".")
    return any(p in TIB_ROOTS for p in parts) or any(p in TIB_PROJ for p in parts)


def layer_names(net: nn.Module) -> list[str]:
    return [n for n, m in net.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]


def roles(net: nn.Module, method: str) -> dict[str, str]:
    """name -> "fp" | "tib" | "body" for every Conv2d / Linear of the network."""
    names = layer_names(net)
    convs = [n for n in names if isinstance(net.get_submodule(n), nn.Conv2d)]
    first, last = (convs[0], convs[-1]) if convs else (None, None)
    out = {}
    for n in names:
        parts = n.split(".")
        m = net.get_submodule(n)
        strided = isinstance(m, nn.Conv2d) and m.stride[0] > 1
        if n in (first, last) or (method == "tfmq" and (strided or any(p in SHORTCUTS for p in parts))):
            out[n] = "fp"
        elif method == "tfmq" and n.split(".")[0] in TIB_ROOTS and n == _first_linear(net, n):
            out[n] = "fp"  # TFMQ-DM `disable_out_quantization`: modules[0], the first time-embedding linear
        else:
            out[n] = "tib" if is_tib(n) else "body"
    return out


def _first_linear(net: nn.Module, name: str) -> str | None:
    root = name.split(".")[0]
    for n in layer_names(net):
        if n.split(".")[0] == root:
            return n
    return None


def skip_splits(net: nn.Module) -> dict[str, int]:
    """Channel split of the concatenated [h, skip] input of each up-path block's first conv (fewstep's UNet):
    recomputed from the channel list the constructor builds (Q-Diffusion's `split`)."""
    if not all(hasattr(net, a) for a in ("inp", "down", "up")):
        return {}
    chs = [net.inp.out_channels]
    for m in net.down:
        chs.append(m.conv1.out_channels if hasattr(m, "conv1") else m.out_channels)
    out = {}
    for i, m in enumerate(net.up):
        if hasattr(m, "conv1"):
            out[f"up.{i}.conv1"] = m.norm1.num_channels - chs.pop()
    return out


class QuantizedDenoiser(nn.Module):
    """D_q(x, sigma, cond): the base denoiser with quantized layers; set k = argmin_k |log sigma - log sigma_k| over
    the calibrated sigmas picks the activation parameters (and the TIB cache entry) of the call."""

    def __init__(self, den: nn.Module, bits: str, method: str, keys: list[float], init_weights: bool = True) -> None:
        super().__init__()
        if method not in ("tfmq", "qdiffusion"):
            raise ValueError(f"method must be 'tfmq' or 'qdiffusion', got {method!r}")
        ae = getattr(den, "autoencoder", None)
        object.__setattr__(self, "autoencoder", ae)  # decoded by fs.generate; not part of the quantized state
        self.den = den.den if ae is not None and hasattr(den, "den") else den
        self.bits, self.method = bits, method
        self.sigma_min, self.sigma_max = den.sigma_min, den.sigma_max
        self.shape = getattr(den, "shape", None)
        self.config: dict[str, Any] = {}
        self.ctx = StepContext()
        w_bits, a_bits = parse_bits(bits)
        self.fsc = method == "tfmq"
        self.register_buffer("log_sigmas", torch.tensor([math.log(s) for s in keys], dtype=torch.float64))
        net = network(self.den)
        splits = skip_splits(net) if method == "qdiffusion" else {}
        for name, role in roles(net, method).items():
            parent, _, child = name.rpartition(".")
            holder = net.get_submodule(parent) if parent else net
            org = getattr(holder, child)
            setattr(holder, child, QLayer(org, name, role, w_bits if init_weights else None, a_bits,
                                          len(keys) if self.fsc else 1, self.ctx, splits.get(name, 0)))
            holder.get_submodule(child).w_bits = w_bits if role != "fp" else None

    def bake(self) -> None:
        """Write the (hard-rounded) quantized weights into the layers and drop the weight quantizers: the weights are
        then values on each channel's b-bit grid, stored as floats."""
        with torch.no_grad():
            for m in self.qlayers():
                if m.use_w and m.wq is not None:
                    m.org.weight.copy_(m.wq(m.org.weight))
                m.wq, m.use_w = None, False

    def qlayers(self) -> list[QLayer]:
        return [m for m in self.modules() if isinstance(m, QLayer)]

    def key_of(self, sigma: float) -> int:
        return int((self.log_sigmas - math.log(max(sigma, 1e-12))).abs().argmin()) if self.fsc else 0

    def forward(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        s = batch_sigma(sigma, x)
        uniq = torch.unique(s)
        if len(uniq) > 1:  # one key per call: split a batch of mixed sigmas
            out = torch.empty_like(x)
            for u in uniq:
                idx = (s == u).nonzero().squeeze(1)
                out[idx] = self(x[idx], s[idx], _take(cond, idx))
            return out
        self.ctx.key = self.key_of(float(uniq[0]))
        self.ctx.labels = labels_of(cond, x.shape[0])
        return self.den(x, sigma, cond)

    def decode(self, z: Tensor) -> Tensor:
        if self.autoencoder is None:
            raise AttributeError("this quantized model is not a latent model; it has no autoencoder")
        return self.autoencoder.decode(z)

    def set_act(self, on: bool) -> None:
        for m in self.qlayers():
            m.use_a = on and m.aq is not None

    def temporal_features(self, x_sigma: float, labels: Tensor | None, batch: int) -> list[Tensor]:
        """The TIB projections' outputs at sigma for `labels` (see tib.features)."""
        from .tib import features

        self.ctx.key, self.ctx.labels = self.key_of(x_sigma), labels
        return features(self.den, x_sigma, labels, batch)


def null_label(model: nn.Module) -> int:
    """The null label of a class-conditional network (fewstep UNet: num_classes; diffusers: null_label)."""
    net = network(model.den if isinstance(model, QuantizedDenoiser) else model)
    null = getattr(net, "null_label", None)
    return int(null if null is not None else getattr(net, "num_classes", 0))


def labels_of(cond: Any, batch: int) -> Tensor:
    """The per-row label the TIB cache is keyed by: the label tensor (a dict's "y"), -1 for none."""
    y = cond.get("y") if isinstance(cond, dict) and len(cond) == 1 else cond
    if torch.is_tensor(y) and y.shape == (batch,) and not y.is_floating_point():
        return y.long()
    if cond is None:
        return torch.full((batch,), -1, dtype=torch.long)
    return None  # other conditions: TIB rows computed in full precision, not memoised


def _take(cond: Any, idx: Tensor) -> Any:
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {k: _take(v, idx) for k, v in cond.items()}
    return cond[idx] if torch.is_tensor(cond) and cond.ndim > 0 else cond


def fresh_copy(den: nn.Module) -> nn.Module:
    """A deep copy of the base denoiser, frozen, in float32 (the quantizers' reference arithmetic)."""
    out = copy.deepcopy(den).float().eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out

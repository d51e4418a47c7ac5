"""The bottleneck hook: capture the UNet's middle-block output h and re-inject an edited h (Kwon et al. 2023,
"Asyrp", the h-space; Zhu et al. 2023, BoundaryDiffusion Sec. 3.2, `mid_h` after `mid.block_2`).

A forward hook on the middle block (fewstep's UNet: the last module of `mid`; diffusers' UNet2DModel and
UNet2DConditionModel: `mid_block`) records h on every call; when an edit is set, the hook returns edit(h) in its
place, so the decoder half of the network sees the edited bottleneck. The denoiser is untouched: a wrapped model
with the hook removed is the same model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn

from ...nets.unet import UNet

HEdit = Callable[[Tensor, Tensor | None], Tensor]  # (h, sigma [B] or None) -> h'


def middle_block(den: Any) -> nn.Module:
    """The bottleneck module of a denoiser's network: fewstep UNet `mid[-1]`, diffusers `mid_block`."""
    if not isinstance(den, nn.Module):
        raise TypeError(f"the h-space needs a torch module denoiser with a UNet inside, got {type(den).__name__}")
    for m in den.modules():
        if isinstance(m, UNet):
            return m.mid[-1]
        mid = getattr(m, "mid_block", None)
        if isinstance(mid, nn.Module):
            return mid
    raise TypeError(f"no UNet middle block found in {type(den).__name__}: the h-space needs fewstep's UNet or a "
                    "diffusers UNet2DModel / UNet2DConditionModel inside the denoiser")


class Bottleneck:
    """Capture h at the middle block and optionally replace it: `with Bottleneck(den) as hb: den(x, s); hb.h`.

    `hb.edit = fn` makes the next calls use fn(h, sigma) instead of h (sigma: the batch's sigma as set by
    `hb.sigma`, or None); `hb.edit = None` restores the plain network. `hb.h` is the last h the network computed
    (before any edit), `hb.used` the h it went on with."""

    def __init__(self, den: Any) -> None:
        self.module = middle_block(den)
        self.h: Tensor | None = None
        self.used: Tensor | None = None
        self.edit: HEdit | None = None
        self.sigma: Tensor | None = None
        self._handle: Any = None

    def _hook(self, module: nn.Module, args: Any, out: Any) -> Any:
        h = out[0] if isinstance(out, tuple) else out
        self.h = h.detach()
        if self.edit is None:
            self.used = self.h
            return None
        new = self.edit(h, self.sigma)
        self.used = new.detach()
        return (new, *out[1:]) if isinstance(out, tuple) else new

    def __enter__(self) -> Bottleneck:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


@contextmanager
def capture(den: Any) -> Iterator[Bottleneck]:
    """Context manager form of `Bottleneck(den)`."""
    with Bottleneck(den) as hb:
        yield hb

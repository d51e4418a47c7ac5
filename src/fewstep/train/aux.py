"""An online auxiliary network: a module trained beside the model with an optimiser of its own, e.g. DMD's fake
denoiser (Yin et al. 2024, Alg. 1) or UFOGen's discriminator (Xu et al. 2024). The objective that owns it computes
its loss and calls `step(loss)`; the training loop wraps it in DDP under torch.distributed and checkpoints it with
its optimiser state (fewstep.train.loop)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class AuxNet:
    """`net` (any nn.Module) with the optimiser `optimizer(net.parameters())`. `module` is what its own loss is
    computed through (the DDP wrapper once the loop has wrapped it, else `net`); calling the AuxNet evaluates
    the bare `net` (e.g. under no_grad inside the model's loss)."""

    def __init__(self, name: str, net: nn.Module, optimizer: OptimizerFactory) -> None:
        if not isinstance(net, nn.Module):
            raise ValueError(f"an auxiliary network must be a torch nn.Module, got {type(net).__name__}")
        self.name, self.net = name, net
        self.opt = optimizer(net.parameters())
        self.module: nn.Module = net

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.net(*args, **kwargs)

    def wrap(self, wrapper: Callable[[nn.Module], nn.Module]) -> None:
        """Train through `wrapper(net)` from now on (the loop passes DistributedDataParallel)."""
        self.module = wrapper(self.net)

    def step(self, loss: Tensor) -> float:
        """One optimiser step on `loss` (a scalar computed through `module`); returns its value."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.item())

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["optimizer"])

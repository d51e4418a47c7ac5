"""What the training loop drives: an Objective (the per-sample loss of a batch, a hook after each optimiser step,
auxiliary networks with optimisers of their own, state for exact resume), and the denoising objective of
fewstep.train.losses (EDM, eps/VP) that plain `fewstep train` runs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from . import losses
from .aux import AuxNet


class Objective(ABC):
    """The loop calls, in order: setup(model) once (with the bare online model, before any resume), then per step
    loss(model, x0, cond, generator, step) -> [B] (model may be DDP-wrapped), the optimiser step, after_step(model,
    step). `aux` lists the objective's auxiliary networks: the loop DDP-wraps and checkpoints them (under their
    names, beside state_dict()'s keys)."""

    aux: Sequence[AuxNet] = ()

    def setup(self, model: nn.Module) -> None:
        """Called once with the online model before any resume (e.g. to rebuild a target network around it)."""
        return None

    @abstractmethod
    def loss(self, model: nn.Module, x0: Tensor, cond: Any, generator: torch.Generator, step: int) -> Tensor:
        """The per-sample loss [B] of the batch x0 (labels cond) at `step`, drawing noise from `generator`."""

    def __call__(self, model: nn.Module, x0: Tensor, cond: Any, generator: torch.Generator, step: int) -> Tensor:
        return self.loss(model, x0, cond, generator, step)

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after each optimiser step with the bare online model (e.g. an EMA target update)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What exact resume needs beyond the model, EMA and optimiser (the loop adds the auxiliary networks)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore state_dict()'s keys; called eagerly on resume, after setup(model)."""
        return None


def objective_state(objective: Objective) -> dict[str, Any]:
    """The checkpointed state of an objective: its own keys and each auxiliary network under its name."""
    state = objective.state_dict()
    for a in objective.aux:
        if a.name in state:
            raise ValueError(f"auxiliary network name {a.name!r} clashes with a key of the objective's state_dict")
        state[a.name] = a.state_dict()
    return state


def load_objective_state(objective: Objective, state: dict[str, Any], path: Any = None) -> None:
    """Inverse of objective_state: restore the objective's keys, then each auxiliary network by name."""
    objective.load_state_dict(state)
    for a in objective.aux:
        if state.get(a.name) is None:
            raise CheckpointError(f"{path} holds no state for the auxiliary network {a.name!r}; it was written by "
                                  "another objective: resume with the same command or use another checkpoint path")
        a.load_state_dict(state[a.name])


class DenoisingObjective(Objective):
    """A denoiser's training loss by name: 'edm' (Karras et al. 2022, Eq. 2) or 'vp' (Ho et al. 2020, Eq. 14),
    with its keyword arguments (fewstep.train.losses)."""

    def __init__(self, loss: str = "edm", kwargs: dict[str, Any] | None = None) -> None:
        self.fn, self.kwargs = losses.get(loss), dict(kwargs or {})

    def loss(self, model: nn.Module, x0: Tensor, cond: Any, generator: torch.Generator, step: int) -> Tensor:
        return self.fn(model, x0, cond, generator, **self.kwargs)

"""Training denoisers: one loop (EMA, checkpoints, exact resume, DDP) driving declared objectives (fewstep.train.
objective: the EDM / eps-VP denoising losses, distillation objectives) with online auxiliary networks (aux).
Submodules load on first use, so the torch-free TrainConfig (train.config) imports without torch."""

from __future__ import annotations

import importlib
from typing import Any

_ATTRS = {
    "TrainConfig": "config", "TrainResult": "loop", "load_checkpoint": "loop", "train": "loop",
    "edm_loss": "losses", "vp_loss": "losses", "Objective": "objective", "DenoisingObjective": "objective",
    "AuxNet": "aux",
}

__all__ = sorted(_ATTRS)


def __getattr__(name: str) -> Any:
    if name in _ATTRS:
        return getattr(importlib.import_module(f".{_ATTRS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ATTRS))

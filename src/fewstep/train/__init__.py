"""Training denoisers: one loop (EMA, checkpoints, exact resume, DDP) driving declared objectives (fewstep.train.
objective: the EDM / eps-VP denoising losses, distillation objectives) with online auxiliary networks (aux).
Submodules load on first use, so the torch-free TrainConfig (train.config) imports without torch."""

from __future__ import annotations

from ..lazy import attach

_ATTRS = {
    "TrainConfig": "config", "TrainResult": "loop", "load_checkpoint": "loop", "train": "loop",
    "edm_loss": "losses", "vp_loss": "losses", "Objective": "objective", "DenoisingObjective": "objective",
    "AuxNet": "aux",
}

__all__ = sorted(_ATTRS)


__getattr__, __dir__ = attach(__name__, _ATTRS)

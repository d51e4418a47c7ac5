"""Training denoisers: losses (EDM, eps/VP) and one loop with EMA, checkpoints, exact resume and DDP."""

from __future__ import annotations

from .loop import TrainConfig, TrainResult, load_checkpoint, train
from .losses import edm_loss, vp_loss

__all__ = ["TrainConfig", "TrainResult", "edm_loss", "load_checkpoint", "train", "vp_loss"]

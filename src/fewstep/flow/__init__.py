"""Latent flow matching (Dao et al. 2023): couplings, the velocity <-> denoiser adapter and the exact-ODE
reference; the objective is fewstep.train.losses.flow_loss and the model the latent stack's UNet
(`fewstep latent train-lfm`)."""

from .coupling import COUPLINGS, couple, ot_permutation
from .velocity import Solved, solve, velocity, velocity_denoiser

__all__ = ["COUPLINGS", "Solved", "couple", "ot_permutation", "solve", "velocity", "velocity_denoiser"]

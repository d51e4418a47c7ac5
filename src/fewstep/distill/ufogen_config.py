"""What a UFOGen run trains, as data (no torch import, so the CLI builds its options from these fields).

Xu et al. (2024), "UFOGen: You Forward Once Large Scale Text-to-Image Generation via Diffusion GANs", Eq. 9
(objective), with the choices of the first author's unofficial code (xuyanwu/SIDDMs-UFOGen, UFO_DiT/train_ufo.py):
gap T/num_times, clamped BCE, D every second step, epsilon-MSE reconstruction, Adam with D betas (0, 0.999).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..train.config import option

RECONS = ("eps", "x0", "none")  # the code's epsilon-MSE, the paper's gamma_t-weighted x0 term, no term
TIMES = ("grid", "uniform")  # t on the K sampling times T, T - gap, ... (each 1/K); the code's t ~ U{1..T}
DISCS = ("unet", "encoder")  # the whole teacher net with a zero head (the code); its encoder + pooled zero head


@dataclass
class UFOGenConfig:
    """Discrete time t in {0..T} on the teacher's Karras sigma ramp (sigma(T) = sigma_max, sigma(0) = sigma_min);
    the discriminator sees x_s, s = max(t - gap, 0), not x_t (JSON-able)."""

    mode: ClassVar[str] = "ufogen"
    uses_teacher: ClassVar[bool] = True
    T: int = option(1000, "discrete time steps of the time map (t = T is sigma_max)", min=1)
    gap: int = option(250, "t - s: the discriminator's x_s lies this many steps below the generator's x_t (the code: "
                           "T / num_times = 250)", min=1)
    num_times: int = option(4, "sampling times T, T - T/K, ... of --times grid and of the multistep sampler", min=1)
    times: str = option("grid", "t ~ the K sampling times (grid) or U{1..T} (uniform, the code)", choices=TIMES)
    rho: float = option(7.0, "rho of the Karras ramp the discrete times are placed on")
    sigma_min: float = option(0.002)
    sigma_max: float = option(80.0)
    recon: str = option("eps", "reconstruction term: eps-MSE (the code), x0 weighted by gamma_t (the paper), none",
                        choices=RECONS)
    recon_weight: float = option(1.0, "lambda of the reconstruction term", min=0)
    gamma_max: float | None = option(None, "cap on gamma_t (recon x0; None = none)")
    adv_weight: float = option(1.0, "weight of the generator's adversarial term", min=0)
    clamp: float = option(0.5, "logit clamp of the code's BCE (0 = plain non-saturating BCE)", min=0)
    r1: float = option(0.0, "R1 penalty gamma/2 E||grad_x D(x_real)||^2 on the discriminator (0 = none, the code)",
                       min=0)
    d_every: int = option(2, "discriminator step every N generator steps (the code: 2)", min=1)
    d_lr: float = option(1e-4, "discriminator learning rate (Adam, betas (0, 0.999))", min=0, min_open=True)
    disc: str = option("unet", "discriminator: the teacher's whole net with a zero-initialised head, or its encoder "
                                "+ a pooled zero-initialised head", choices=DISCS)

    def __post_init__(self) -> None:
        if self.recon not in RECONS or self.times not in TIMES or self.disc not in DISCS:
            raise ValueError(f"recon in {RECONS}, times in {TIMES}, disc in {DISCS}; got {self.recon!r}, "
                             f"{self.times!r}, {self.disc!r}")
        if not 1 <= self.gap <= self.T or self.num_times < 1 or self.num_times > self.T:
            raise ValueError(f"need 1 <= gap <= T and 1 <= num_times <= T; got gap={self.gap}, T={self.T}, "
                             f"num_times={self.num_times}")
        if self.clamp < 0:
            raise ValueError(f"clamp (the BCE logit clamp) must be >= 0 (0 = none), got {self.clamp}")
        if self.gamma_max is not None and self.gamma_max <= 0:
            raise ValueError(f"gamma_max must be > 0 or None, got {self.gamma_max}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")

"""What a distillation run trains, as data (no torch import, so the CLI builds its options from these fields):
ConsistencyConfig (CD / CT / iCT, Song et al. 2023; Song & Dhariwal 2024) and DMDConfig (Yin et al. 2024)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from ..train.config import option

MODES = ("cd", "ct", "ict")
DISTANCES = ("l2", "l1", "pseudo_huber", "cauchy", "lpips")
WEIGHTINGS = ("uniform", "snr", "snr+1", "karras", "truncated-snr", "ict")  # = schedules.WEIGHTINGS (a test checks)
# fewstep.distill.teacher.ONE_STEP_NFE's keys, spelled out so `--help` needs no torch import (a test keeps them equal)
TEACHER_SOLVERS = ("euler", "ddim", "heun", "dpm_solver_2s", "dpm_solver_pp_2s", "dpm_solver_3s", "dpm_solver_pp_3s")

_REG = "weight of a regression of f onto the teacher's ODE samples along stored teacher trajectories (CD/DMD; 0 = " \
       "the CM paper's CD)"
_REG_PATHS = "teacher trajectories generated for --reg (cached beside the checkpoint)"


def _check_reg(reg: float, reg_paths: int) -> None:
    if reg < 0 or reg_paths < 1:
        raise ValueError(f"reg (the ODE-pair regression weight) must be >= 0 and reg_paths >= 1; got reg={reg}, "
                         f"reg_paths={reg_paths}")


@dataclass
class ConsistencyConfig:
    """What is trained: mode cd|ct|ict and its schedule, distance, weighting and teacher solver (JSON-able)."""

    mode: str = option("cd", "cd: distillation from a teacher; ct/ict: training from scratch", choices=MODES)
    N: int = option(18, "CD grid size", flag="--N")
    mu: float = option(0.0, "CD target EMA rate (0 = stop-gradient, as the CIFAR-10 CD runs)")
    s0: int | None = option(None, "CT/iCT curriculum start [ct 2, ict 10]")
    s1: int | None = option(None, "CT/iCT curriculum end [ct 150, ict 1280]")
    mu0: float = option(0.9, "CT initial target EMA rate")
    dist: str | None = option(None, "distance [cd/ct l2, ict pseudo_huber]; lpips: perceptual, on a shipped net for "
                                    "the image shape", choices=DISTANCES)
    c: float | None = option(None, "pseudo-Huber constant (None = 0.00054 sqrt(d))")
    weight: str | None = option(None, "lambda [cd/ct uniform, ict ict]", choices=WEIGHTINGS)
    solver: str = option("heun", "CD teacher step: a one-step plan of the solver engine", choices=TEACHER_SOLVERS)
    skip: int = option(1, "CD: grid intervals the teacher spans per target (LCM's skipping step k; 1 = the CM paper)")
    P_mean: float = option(-1.1)
    P_std: float = option(2.0)
    rho: float = option(7.0)
    sigma_min: float = option(0.002)
    sigma_max: float = option(80.0)
    sigma_data: float = option(0.5)
    horizon: int | None = option(None, "K of the N(k) curriculum [--steps]")
    reg: float = option(0.0, _REG, min=0)
    reg_paths: int = option(20000, _REG_PATHS, min=1)

    def __post_init__(self) -> None:
        if self.mode == "dmd":
            raise ValueError("mode 'dmd' has its own config: fewstep.distill.dmd.DMDConfig (fewstep distill dmd), or "
                             "fewstep.distill.config.make_config('dmd', ...) for the options of --mode dmd")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        ict = self.mode == "ict"
        self.s0 = self.s0 if self.s0 is not None else (10 if ict else 2)
        self.s1 = self.s1 if self.s1 is not None else (1280 if ict else 150)
        self.dist = self.dist or ("pseudo_huber" if ict else "l2")
        self.weight = self.weight or ("ict" if ict else "uniform")
        if self.dist not in DISTANCES:
            raise ValueError(f"dist must be one of {', '.join(DISTANCES)}, got {self.dist!r}")
        if self.weight not in WEIGHTINGS:
            raise ValueError(f"weight must be one of {', '.join(WEIGHTINGS)}, got {self.weight!r}")
        if not 0 <= self.mu < 1 or not 0 <= self.mu0 < 1 or self.N < 2:
            raise ValueError("need 0 <= mu < 1, 0 <= mu0 < 1 and N >= 2")
        if not 1 <= self.skip <= (self.N - 1 if self.mode == "cd" else 1):
            raise ValueError(f"skip must be 1 for ct/ict/dmd and in 1..N-1 = {self.N - 1} for cd, got {self.skip}")
        _check_reg(self.reg, self.reg_paths)
        if self.reg > 0 and self.mode != "cd":
            raise ValueError(f"reg (the ODE-pair regression weight) needs mode 'cd' or 'dmd' (a teacher); got "
                             f"reg={self.reg}, mode={self.mode!r}")

    @property
    def uses_teacher(self) -> bool:
        """CD starts from and distils a teacher; CT / iCT only borrow its architecture."""
        return self.mode == "cd"


@dataclass
class DMDConfig:
    """Distribution matching of a consistency student's one-step map (Yin et al. 2024, Alg. 1), with the ODE-pair
    regression (Eq. 6) on teacher trajectories of the N-point CD grid (JSON-able)."""

    mode: ClassVar[str] = "dmd"
    uses_teacher: ClassVar[bool] = True  # the fake denoiser is a copy of the teacher
    N: int = option(18, "grid size of the teacher trajectories of --reg", flag="--N")
    dist: str = option("l2", "distance of --reg; lpips: perceptual, on a shipped net for the image shape",
                       choices=DISTANCES)
    c: float | None = option(None, "pseudo-Huber constant (None = 0.00054 sqrt(d))")
    solver: str = option("heun", "teacher step of the --reg trajectories", choices=TEACHER_SOLVERS)
    rho: float = option(7.0)
    sigma_min: float = option(0.002)
    sigma_max: float = option(80.0)
    sigma_data: float = option(0.5)
    reg: float = option(0.0, _REG, min=0)
    reg_paths: int = option(20000, _REG_PATHS, min=1)
    fake_lr: float = option(1e-4, "learning rate of the online fake denoiser (a copy of the teacher)", min=0,
                            min_open=True)

    def __post_init__(self) -> None:
        if self.dist not in DISTANCES:
            raise ValueError(f"dist must be one of {', '.join(DISTANCES)}, got {self.dist!r}")
        if self.N < 2:
            raise ValueError(f"need N >= 2, got {self.N}")
        _check_reg(self.reg, self.reg_paths)
        if not self.fake_lr > 0:
            raise ValueError(f"fake_lr (DMD's fake denoiser learning rate) must be > 0, got {self.fake_lr}")


def make_config(mode: str, **opts: Any) -> ConsistencyConfig | DMDConfig:
    """The config of `fewstep distill consistency --mode MODE ...` (and the bench recipes): a ConsistencyConfig, or
    for 'dmd' a DMDConfig. The consistency options --mode dmd shared must keep the values that meant "none" (mu 0,
    skip 1); the others it never used (horizon, weight, s0, s1, mu0, P_mean, P_std) are ignored, as they were, and
    so is DMD's fake_lr in the consistency modes."""
    if mode != "dmd":
        return ConsistencyConfig(mode=mode, **{k: v for k, v in opts.items() if k != "fake_lr"})
    if (opts.get("mu") or 0.0) > 0:
        raise ValueError(f"mu (the CD target's EMA rate) has no use in mode 'dmd', which has no target network; "
                         f"leave it at 0, got {opts['mu']}")
    if (opts.get("skip") or 1) != 1:
        raise ValueError(f"skip must be 1 for ct/ict/dmd, got {opts['skip']}")
    keep = {f.name for f in dataclasses.fields(DMDConfig)}
    return DMDConfig(**{k: v for k, v in opts.items() if k in keep and v is not None})


@dataclass
class LCMConfig:
    """Guided latent consistency distillation (Luo et al. 2023, Alg. 1): the student takes the guidance scale w,
    drawn per sample from [w_min, w_max] (diffusers' convention D_u + w (D_c - D_u), 1 = none), and is trained on
    pairs `skip` points apart on an N-point Karras grid, the teacher spanning them in one step of the CFG-augmented
    PF-ODE (JSON-able)."""

    mode: ClassVar[str] = "lcm"
    uses_teacher: ClassVar[bool] = True
    w_min: float = option(1.0, "smallest guidance scale drawn (1 = no guidance)", min=1.0)
    w_max: float = option(4.0, "largest guidance scale drawn", min=1.0)
    N: int = option(100, "points of the Karras grid the pairs are drawn on", flag="--N")
    skip: int = option(5, "grid intervals between the student's point and the target's (LCM's skipping step k)")
    solver: str = option("ddim", "teacher step over the skip: a one-step plan of the solver engine",
                         choices=TEACHER_SOLVERS)
    mu: float = option(0.95, "target EMA rate (0 = stop-gradient); 0.95 as the official scripts")
    dist: str = option("pseudo_huber", "distance (the constant c scales with the latent's size, see --c)",
                       choices=("l2", "pseudo_huber", "cauchy"))
    c: float | None = option(None, "pseudo-Huber / Cauchy constant (None = 0.00054 sqrt(d), iCT's rule)")
    w_dim: int = option(256, "size of the w-embedding (zero-initialised projection into the time embedding)")
    rho: float = option(7.0)
    sigma_min: float = option(0.002)
    sigma_max: float = option(80.0)
    lora_rank: int = option(0, "0: train the whole UNet; r > 0: train rank-r LoRA adapters only (LCM-LoRA, peft)",
                            min=0)
    lora_targets: str = option("attn+conv", "LoRA target modules: attn (q/k/v/out), attn+conv (also the resnet "
                                             "convs and time projections)", choices=("attn", "attn+conv"))

    def __post_init__(self) -> None:
        if not 1.0 <= self.w_min <= self.w_max:
            raise ValueError(f"need 1 <= w_min <= w_max (guidance scales), got w_min={self.w_min}, w_max={self.w_max}")
        if self.N < 3 or not 1 <= self.skip <= self.N - 2:
            raise ValueError(f"need N >= 3 and 1 <= skip <= N - 2, got N={self.N}, skip={self.skip}")
        if not 0 <= self.mu < 1:
            raise ValueError(f"mu (the target EMA rate) must be in [0, 1), got {self.mu}")
        if self.lora_rank and self.w_min != self.w_max:
            raise ValueError("LCM-LoRA has no w-input (the adapter applies to any copy of the teacher's UNet): give "
                             "one guidance scale, --w-min = --w-max")

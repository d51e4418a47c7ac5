"""UFOGen: a one-step diffusion-GAN generator initialised from the teacher (Xu et al. 2024).

Objective (Xu et al. 2024, Eq. 9): min_G max_D E[log D(x_s, s) + log(1 - D(x'_s, s))] + lambda gamma_t
||x0 - x'0||^2, with x_t ~ q(x_t | x0), x'0 = G(x_t, t), real x_s ~ q(x_s | x0), fake x'_s ~ q(x_s | x'0), and the
discriminator seeing x_s and s, not x_t (SIDDM's marginal matching). As in the first author's code (UFO_DiT/
train_ufo.py): s = t - gap (gap 250 of T = 1000), BCE on clamped logits, D every second step, epsilon-MSE as the
reconstruction term (`recon="eps"`), Adam with D betas (0, 0.999). Discrete t lives on the teacher's Karras sigma
ramp (`sigma_of`), VE coordinates x = x0 + sigma n. G is a denoiser G(x, sigma, cond) -> x0 (the teacher's network
and preconditioning); it samples by the re-noising loop of the diffusers community `UFOGenScheduler` (one step from
sigma_max; multistep x_{t'} = x'0 + sigma(t') z), which is fewstep's consistency sampler (kind "ufogen").
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..denoiser import append_dims
from ..errors import CheckpointError
from ..grids import karras_at
from ..train.aux import AuxNet
from ..train.loop import load_checkpoint, train
from ..train.objective import Objective
from .discriminator import make_discriminator
from .ufogen_config import UFOGenConfig

__all__ = ["Discriminator", "UFOGenConfig", "UFOGenObjective", "adversarial_losses", "distill_ufogen", "gamma",
           "generator_config", "img2img", "sample_times", "sampling_sigmas", "sigma_of"]


def sigma_of(t: Tensor | float, cfg: UFOGenConfig) -> Tensor:
    """sigma(t) of discrete time t in {0..T}: position 1 - t/T on the teacher's Karras ramp (Karras et al. 2022,
    Eq. 5), so sigma(T) = sigma_max and sigma(0) = sigma_min (x_0 is the data up to sigma_min)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    return karras_at(1 - t / cfg.T, cfg.sigma_min, cfg.sigma_max, cfg.rho)


def gamma(sigma_t: Tensor, sigma_s: Tensor) -> Tensor:
    """gamma_t of the x0 reconstruction term, from the DDPM KL term (Ho et al. 2020, Eq. 5, 7): KL(q(x_s | x_t, x0)
    || q(x_s | x_t, x'0)) = abar_s beta_{t|s} / (2 (1 - abar_t)(1 - abar_s)) ||x0 - x'0||^2 with beta_{t|s} =
    1 - abar_t / abar_s; with abar = 1 / (1 + sigma^2) this is (SNR(s) - SNR(t)) / 2 = (1/sigma_s^2 - 1/sigma_t^2) / 2
    (Kingma et al. 2021, VDM Eq. 13). The 'gamma_t = (1 - beta_t) abar_{t-1} / (2 beta_t)' of earlier notes is not
    this KL."""
    return 0.5 * (sigma_s.to(torch.float64) ** -2 - sigma_t.to(torch.float64) ** -2)


def sampling_times(steps: int, cfg: UFOGenConfig) -> list[int]:
    """The K-step sampler's times T, T - T/K, ..., T/K (diffusers UFOGenScheduler's trailing spacing)."""
    return [round(cfg.T - k * cfg.T / steps) for k in range(steps)]


def sampling_sigmas(steps: int, cfg: UFOGenConfig) -> list[float]:
    """sigma(t) of `sampling_times`: what fs.generate re-noises to between generator calls."""
    return [float(sigma_of(t, cfg)) for t in sampling_times(steps, cfg)]


def sample_times(batch: int, cfg: UFOGenConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(t, s) [B] long: t on the num_times sampling times (times='grid') or U{1..T} (the code), s = max(t - gap, 0)."""
    if cfg.times == "grid":
        grid = torch.tensor(sampling_times(cfg.num_times, cfg))
        t = grid[torch.randint(len(grid), (batch,), generator=generator, device=generator.device).cpu()]
    else:
        t = torch.randint(1, cfg.T + 1, (batch,), generator=generator, device=generator.device).cpu()
    return t, (t - cfg.gap).clamp_min(0)


def _clamped(logits: Tensor, lo: float | None = None, hi: float | None = None) -> Tensor:
    return logits.clamp(min=lo, max=hi)


def adversarial_losses(real: Tensor | None, fake: Tensor, clamp: float | None) -> tuple[Tensor | None, Tensor]:
    """Per-sample (D loss, G loss) of the code's clamped BCE, mean over logit positions:
    D: BCE(fake.clamp(min=-c), 0) + BCE(real.clamp(max=c), 1); G (non-saturating): BCE(fake.clamp(max=c), 1).
    clamp=None: plain BCE (Goodfellow et al. 2014, the non-saturating form). For the D loss pass fake detached."""
    c = clamp
    g = F.softplus(-_clamped(fake, hi=c)).flatten(1).mean(1)
    if real is None:
        return None, g
    d = (F.softplus(_clamped(fake, lo=-c if c is not None else None)) + F.softplus(-_clamped(real, hi=c)))
    return d.flatten(1).mean(1), g


class Discriminator(AuxNet):
    """D as the loop's auxiliary network: a copy of the teacher's network with a zero-initialised head
    (fewstep.distill.discriminator), trained by Adam(lr, betas (0, 0.999)) as in the code."""

    def __init__(self, teacher: nn.Module, cfg: UFOGenConfig) -> None:
        net = make_discriminator(cfg.disc, teacher)  # checks that the teacher is a fewstep UNet denoiser
        net = net.to(next(teacher.parameters()).device)
        super().__init__("disc", net, functools.partial(torch.optim.Adam, lr=cfg.d_lr, betas=(0.0, 0.999)))

    def update(self, real: Tensor, fake: Tensor, sigma_s: Tensor, cond: Any, clamp: float | None,
               r1: float = 0.0) -> float:
        """One step on the BCE (and R1 gamma/2 ||grad_x D(x_real)||^2, Mescheder et al. 2018, Eq. 9, if r1 > 0)."""
        real = real.detach().requires_grad_(r1 > 0)
        l_real = self.module(real, sigma_s, cond)
        d, _ = adversarial_losses(l_real, self.module(fake.detach(), sigma_s, cond), clamp)
        loss = d.mean()
        if r1 > 0:
            (grad,) = torch.autograd.grad(l_real.sum(), real, create_graph=True)
            loss = loss + 0.5 * r1 * grad.square().flatten(1).sum(1).mean()
        return self.step(loss)


class UFOGenObjective(Objective):
    """UFOGen (Xu et al. 2024, Eq. 9) for fewstep.train.loop: x_t from the data, x'0 = G(x_t, sigma(t)), a
    discriminator step every d_every steps on (x_s, x'_s), then G's loss adv_weight * BCE(D(x'_s), real) +
    recon_weight * (eps-MSE or gamma_t ||x0 - x'0||^2 / d)."""

    def __init__(self, cfg: UFOGenConfig, teacher: nn.Module) -> None:
        self.cfg = cfg
        self.disc = Discriminator(teacher, cfg)
        self.aux = [self.disc]
        self.last: dict[str, float] = {}

    def loss(self, model: nn.Module, x0: Tensor, cond: Any, generator: torch.Generator, step: int) -> Tensor:
        c = self.cfg
        B, nd = x0.shape[0], x0.ndim
        t, s = sample_times(B, c, generator)
        sig_t, sig_s = sigma_of(t, c).to(x0.device), sigma_of(s, c).to(x0.device)
        n, n_real, n_fake = (torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
                             for _ in range(3))
        x_t = x0 + append_dims(sig_t, nd).to(x0.dtype) * n
        x0_hat = model(x_t, sig_t, cond)
        real = x0 + append_dims(sig_s, nd).to(x0.dtype) * n_real
        fake = x0_hat + append_dims(sig_s, nd).to(x0.dtype) * n_fake
        if step % c.d_every == 0:
            self.last["d_loss"] = self.disc.update(real, fake, sig_s, cond, c.clamp or None, c.r1)
        net = self.disc.net
        net.requires_grad_(False)  # G's adversarial gradient reaches G only
        try:
            _, g_adv = adversarial_losses(None, net(fake, sig_s, cond), c.clamp or None)
        finally:
            net.requires_grad_(True)
        err = (x0_hat - x0).square().flatten(1).mean(1).to(torch.float64)
        if c.recon == "eps":  # ||(x_t - x'0)/sigma_t - n||^2 = ||x0 - x'0||^2 / sigma_t^2 (the code's MSE)
            rec = err / sig_t ** 2
        elif c.recon == "x0":
            g = gamma(sig_t, sig_s)
            rec = err * (g.clamp(max=c.gamma_max) if c.gamma_max is not None else g)
        else:
            rec = torch.zeros_like(err)
        self.last["g_adv"], self.last["recon"] = float(g_adv.detach().mean()), float(rec.detach().mean())
        return c.adv_weight * g_adv + c.recon_weight * rec.to(x0.dtype)


def generator_config(teacher_config: dict[str, Any], cfg: UFOGenConfig) -> dict[str, Any]:
    """The teacher's io config as a UFOGen generator (kind 'ufogen'), with its recorded sampler sigmas."""
    import copy

    out = copy.deepcopy(teacher_config)
    for key in ("train", "metrics", "sampler"):
        out.pop(key, None)
    out["kind"] = "ufogen"
    out["sigma_max"] = cfg.sigma_max
    out["sampler"] = {"nfe": 1, "sigmas": {str(k): sampling_sigmas(k, cfg) for k in range(1, cfg.num_times + 1)}}
    return out


def _check_resume(ckpt: Path, model_config: dict[str, Any]) -> None:
    saved = load_checkpoint(ckpt)["config"]["model"].get("distill")
    if saved != model_config["distill"]:
        raise CheckpointError(f"{ckpt} was trained with {saved}, this run asks for {model_config['distill']}; "
                              "resume with the same settings or use another checkpoint path")


def distill_ufogen(cfg: UFOGenConfig, tc: Any, data: Any, teacher: Any, out: str | Path | None = None,
                   ckpt: str | Path | None = None, resume: bool = False, device: str | torch.device = "cpu",
                   command: str | None = None) -> Any:
    """Train a UFOGen generator from `teacher` (a zoo name or saved fewstep denoiser; G and D start from its
    weights) on `data` through fewstep.train.loop (EMA artefact, checkpoints with D and its optimiser, exact
    resume, DDP). `tc` is a TrainConfig. Returns the loop's TrainResult."""
    from .run import frozen

    teach = frozen(teacher, device)
    if not isinstance(teach, nn.Module) or not hasattr(teach, "config"):
        raise ValueError("UFOGen initialises G and D from a fewstep teacher network (a zoo name or saved model)")
    model_config = generator_config(teach.config, cfg)
    model_config["distill"] = {"mode": "ufogen", **dataclasses.asdict(cfg),
                               "teacher": teacher if isinstance(teacher, str) else None}
    ckpt_path = Path(ckpt) if ckpt is not None else (Path(out).with_suffix(".ckpt.pt") if out is not None else None)
    if resume and ckpt_path is not None:
        _check_resume(ckpt_path, model_config)
    init_state = {k: v.detach().clone() for k, v in teach.state_dict().items()}
    objective = UFOGenObjective(cfg, teach)
    return train(model_config, data, tc, out=out, ckpt=ckpt_path, resume=resume, device=device, command=command,
                 objective=objective, init_state=init_state)


@torch.no_grad()
def img2img(G: Any, x: Tensor, sigma: float, seed: int = 0, cond: Any = None, steps: int = 1) -> Tensor:
    """Image-to-image (SDEdit-style, Meng et al. 2022, with UFOGen's one-step map): noise x to sigma with per-sample
    seeded noise, then `steps` generator calls re-noising along sigma's geometric descent; clipped to [-1, 1]."""
    from ..seed import SEED_STRIDE, PerSample, noise, seeds_for
    from ..solvers.renoise import multistep

    sig = [float(sigma) * (0.05 ** (k / steps)) for k in range(steps)]
    z0 = noise(len(x), seed, tuple(x.shape[1:]), 1.0).to(x.device)
    z = PerSample(seeds_for(len(x), seed + 1), 7_919 * SEED_STRIDE)
    return multistep(G, x + float(sigma) * z0, sig, z, cond=cond, clip=1.0).clamp(-1, 1)

"""The latent stack measured (`fewstep bench latent`): the autoencoder's reconstructions, the latent teacher against
the real-data noise floor across guidance scales, and few-step plans against diffusers' own EDM schedulers on the
same UNet and noise. FD on the project's feature net (fewstep.metrics), decoded samples at 28x28."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from .. import data
from ..guidance import CFG
from ..metrics import classifier, frechet
from ..seed import noise
from ..solvers.constructors import get as plan_get
from ..solvers.engine import sample
from ..zoo.generate import draw


@torch.no_grad()
def autoencoder_quality(ae: Any, dataset: str, n: int = 1000, batch: int = 250) -> dict[str, float]:
    """FD and class accuracy of reconstructions of n held-out (test split) images, beside the originals' own FD and
    accuracy and the real-data noise floor at n."""
    te = data.get(dataset, "test")
    idx = torch.randperm(len(te), generator=torch.Generator().manual_seed(0))[:n].sort().values  # a mix of classes
    x, y = te.x[idx], te.y[idx]
    r = torch.cat([ae.decode(ae.encode(x[i:i + batch])) for i in range(0, len(x), batch)])
    floor = frechet.noise_floor(dataset, min(len(x), frechet.max_floor_n(dataset)))
    fd_r, fd_o = frechet.fd(r, dataset), frechet.fd(x, dataset)
    return {"n": len(x), "fd_recon": fd_r, "fd_original": fd_o, "noise_floor": floor,
            "fd_recon_over_floor": fd_r / floor,
            "accuracy_recon": accuracy(r, y, dataset), "accuracy_original": accuracy(x, y, dataset),
            "mse": float((r - x).square().mean()), "l1": float((r - x).abs().mean())}


def accuracy(x: Tensor, y: Tensor, dataset: str) -> float:
    """The shipped classifier's accuracy on images x with labels y."""
    return float((classifier.class_probs(x, dataset).argmax(1) == y).float().mean())


def balanced_labels(n: int, classes: int) -> Tensor:
    return torch.arange(n) % classes


def score(x: Tensor, y: Tensor | None, dataset: str) -> dict[str, float]:
    """FD, FD / noise floor at the same n, and class accuracy (given labels) of decoded samples."""
    fd = frechet.fd(x, dataset)
    floor = frechet.noise_floor(dataset, min(len(x), frechet.max_floor_n(dataset)))
    out = {"fd": fd, "noise_floor": floor, "fd_over_floor": fd / floor}
    if y is not None:
        out["accuracy"] = accuracy(x, y, dataset)
    return out


def guidance_curve(den: Any, dataset: str, scales: tuple[float, ...], n: int, seed: int,
                   plan: str = "heun", nfe: int = 35, grid: str = "karras") -> list[dict[str, Any]]:
    """The teacher (decoded) at each guidance scale on balanced labels, plus the unconditional model (null label)."""
    classes = int(den.config.get("num_classes", 10))
    y = balanced_labels(n, classes)
    rows = []
    for g in (None, *scales):
        d = draw(den, n, nfe=nfe, plan=plan, grid=grid, seed=seed, labels=None if g is None else y, guidance=g)
        rows.append({"guidance": "uncond" if g is None else g, "seconds": d.seconds,
                     **score(d.x, None if g is None else y, dataset)})
    return rows


def edm_diffusers_loop(sched: Any, den: Any, x: Tensor, labels: Tensor, g: float, null: int) -> Tensor:
    """diffusers' own sampling loop with an EDM scheduler on the stack's UNet, with classifier-free guidance on the
    UNet output (what a diffusers pipeline does): the latents at sigma 0."""
    for t in sched.timesteps:
        x = sched.step(guided_unet(den.den.unet, sched.scale_model_input(x, t), t, labels, g, null), t, x).prev_sample
    return x


def guided_unet(unet: Any, x: Tensor, t: Tensor, labels: Tensor, g: float, null: int) -> Tensor:
    """A class-conditional diffusers UNet's output with classifier-free guidance u + g (c - u) on it (Ho & Salimans
    2022, Eq. 6), both branches in one batched call, as diffusers pipelines do."""
    if g == 1.0:
        return unet(x, t, class_labels=labels).sample
    u, c = unet(torch.cat([x, x]), t, class_labels=torch.cat([torch.full_like(labels, null), labels])).sample.chunk(2)
    return u + g * (c - u)


DIFFUSERS_EDM = {"EDMEuler": ("EDMEulerScheduler", {}),
                 "EDM-DPM++2M": ("EDMDPMSolverMultistepScheduler", {"solver_order": 2}),
                 "EDM-DPM++3M": ("EDMDPMSolverMultistepScheduler", {"solver_order": 3})}
FEWSTEP_PLANS = ("euler", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_bh2", "deis_3", "ipndm", "heun")


@torch.no_grad()
def plans_vs_diffusers(den: Any, dataset: str, nfes: tuple[int, ...], g: float, n: int, seed: int,
                       grids: tuple[str, ...] = ("logsnr", "karras"), searched: dict[int, Any] | None = None,
                       batch: int = 250) -> list[dict[str, Any]]:
    """FD / accuracy at each NFE of fewstep's hand-made plans (each grid), a searched plan where given, and diffusers'
    EDM schedulers, all on the same latent noise and labels under guidance g, decoded."""
    import diffusers

    classes = int(den.config.get("num_classes", 10))
    y = balanced_labels(n, classes)
    rows = []
    guided = den if g == 1.0 else CFG(den, g)
    sched_cfg = {k: v for k, v in den.config.get("scheduler", {}).items() if not k.startswith("_")}
    for nfe in nfes:
        z = noise(n, seed, tuple(den.shape), 1.0)

        def run(fn: Any, z: Tensor = z) -> tuple[Tensor, float]:
            t0 = time.perf_counter()
            out = torch.cat([den.decode(fn(z[i:i + batch], y[i:i + batch])) for i in range(0, n, batch)])
            return out, time.perf_counter() - t0
        cands: dict[str, Any] = {}
        for name in FEWSTEP_PLANS:
            for grid in grids:
                p = plan_get(name, nfe=nfe, sigma_min=den.sigma_min, sigma_max=den.sigma_max, grid=grid)
                cands[f"fewstep {name} ({grid})"] = p
        if searched and nfe in searched:
            cands["fewstep S^3 searched"] = searched[nfe]
        for label, p in cands.items():
            x, sec = run(lambda zb, yb, p=p: sample(guided, zb * float(p.sigmas[0]), p, cond=yb))
            rows.append({"nfe": nfe, "sampler": label, "seconds": sec, **score(x, y, dataset)})
        for label, (cls_name, extra) in DIFFUSERS_EDM.items():
            sched = getattr(diffusers, cls_name)(**{**sched_cfg, **extra})

            def dif(zb: Tensor, yb: Tensor, sched: Any = sched, nfe: int = nfe) -> Tensor:
                sched.set_timesteps(nfe)
                return edm_diffusers_loop(sched, den, zb * float(sched.sigmas[0]), yb, g, classes)
            x, sec = run(dif)
            rows.append({"nfe": nfe, "sampler": f"diffusers {label}", "seconds": sec, **score(x, y, dataset)})
    return rows

"""The latent flow-matching benchmark (Dao et al. 2023): a class-conditional velocity model on mnist-ae's latents,
sampled by its dopri5 reference, by fewstep's plans (the velocity model read as a denoiser) and by diffusers' flow
schedulers on the same UNet, noise and labels, beside the latent EDM teacher (mnist-ldm) at the same guidance;
independent against minibatch-OT coupling with paired bootstrap intervals; and the demo's flow section."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import zoo
from ..guidance import CFG
from ..io import save_grid
from ..metrics import confidence, noise_floor
from ..metrics.frechet import features, paired_bootstrap_ratio, reference_stats
from ..report.rows import DemoSection, Row
from ..seed import noise
from ..solvers.constructors import get as plan_get
from ..solvers.engine import sample
from ..zoo.generate import draw
from .latent import balanced_labels, guided_unet, score

MODEL = "mnist-lfm"
PLANS = ("euler", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_bh2", "deis_3", "ipndm")
GRIDS = ("logsnr", "karras")
DIFFUSERS_FLOW = {
    "FlowMatchEuler": ("FlowMatchEulerDiscreteScheduler", {"num_train_timesteps": 1000, "shift": 1.0}),
    "UniPC (flow)": ("UniPCMultistepScheduler", {"prediction_type": "flow_prediction", "use_flow_sigmas": True,
                                                "flow_shift": 1.0}),
    "DPM++2M (flow)": ("DPMSolverMultistepScheduler", {"prediction_type": "flow_prediction",
                                                       "use_flow_sigmas": True, "flow_shift": 1.0}),
}


def classes(model: Any) -> int:
    return int((getattr(model, "config", None) or {}).get("num_classes") or 10)


def _decoded(den: Any, fn: Any, z: Tensor, y: Tensor, batch: int) -> tuple[Tensor, float]:
    t0 = time.perf_counter()
    x = torch.cat([den.decode(fn(z[i:i + batch], y[i:i + batch])) for i in range(0, len(z), batch)])
    return x.float().clamp(-1, 1), time.perf_counter() - t0


@torch.no_grad()
def plan_rows(den: Any, name: str, dataset: str, nfe: int, g: float, n: int, seed: int, batch: int = 250,
              plans: tuple[str, ...] = PLANS, grids: tuple[str, ...] = GRIDS) -> list[dict[str, Any]]:
    """fewstep's plans at `nfe` on a latent denoiser (EDM or velocity) under guidance g; features kept for pairing."""
    y = balanced_labels(n, classes(den))
    guided = den if g == 1.0 else CFG(den, g)
    z = noise(n, seed, tuple(den.shape), 1.0)
    rows = []
    for p_name in plans:
        for grid in grids:
            p = plan_get(p_name, nfe=nfe, sigma_min=den.sigma_min, sigma_max=den.sigma_max, grid=grid)
            x, sec = _decoded(den, lambda zb, yb, p=p: sample(guided, zb * float(p.sigmas[0]), p, cond=yb), z, y,
                              batch)
            rows.append({"model": name, "nfe": nfe, "sampler": f"fewstep {p_name} ({grid})", "seconds": sec,
                         "x": x, **score(x, y, dataset)})
    return rows


def flow_unet_loop(sched: Any, den: Any, z: Tensor, labels: Tensor, g: float, null: int) -> Tensor:
    """diffusers' own loop with a flow scheduler on the velocity UNet (timestep = 1000 t), CFG on the velocity (what
    a diffusers flow pipeline does): the latents at t = 0."""
    for t in sched.timesteps:
        z = sched.step(guided_unet(den.den.unet, z, t, labels, g, null), t, z).prev_sample
    return z


@torch.no_grad()
def diffusers_rows(den: Any, name: str, dataset: str, nfe: int, g: float, n: int, seed: int,
                   batch: int = 250) -> list[dict[str, Any]]:
    """diffusers' flow schedulers at `nfe` on the same velocity UNet, noise (at t = 1) and labels."""
    import diffusers

    y = balanced_labels(n, classes(den))
    z = noise(n, seed, tuple(den.shape), 1.0)
    rows = []
    for label, (cls_name, kwargs) in DIFFUSERS_FLOW.items():
        sched = getattr(diffusers, cls_name)(**kwargs)

        def run(zb: Tensor, yb: Tensor, sched: Any = sched) -> Tensor:
            sched.set_timesteps(nfe)
            return flow_unet_loop(sched, den, zb, yb, g, classes(den))
        x, sec = _decoded(den, run, z, y, batch)
        rows.append({"model": name, "nfe": nfe, "sampler": f"diffusers {label}", "seconds": sec, "x": x,
                     **score(x, y, dataset)})
    return rows


@torch.no_grad()
def dopri5_row(den: Any, name: str, dataset: str, g: float, n: int, seed: int, batch: int = 250,
               rtol: float = 1e-5) -> dict[str, Any]:
    """The exact-ODE reference (dopri5, rtol = atol = 1e-5 as LFM) under guidance g; nfe = evaluations per sample."""
    from ..flow.velocity import solve

    y = balanced_labels(n, classes(den))
    guided = den if g == 1.0 else CFG(den, g)
    z = noise(n, seed, tuple(den.shape), float(den.sigma_max))
    nfes: list[int] = []

    def run(zb: Tensor, yb: Tensor) -> Tensor:
        out = solve(guided, zb, cond=yb, rtol=rtol, atol=rtol)
        nfes.append(out.nfe)
        return out.x
    x, sec = _decoded(den, run, z, y, batch)
    return {"model": name, "nfe": max(nfes), "sampler": f"dopri5 (rtol {rtol:g})", "seconds": sec, "x": x,
            **score(x, y, dataset)}


def teacher_rows(teacher: Any, dataset: str, g: float, n: int, seed: int, nfe: int = 35) -> dict[str, Any]:
    """The latent EDM teacher at `nfe`-NFE Heun (karras grid), its converged reference in `fewstep bench latent`."""
    y = balanced_labels(n, classes(teacher))
    d = draw(teacher, n, nfe=nfe, plan="heun", grid="karras", seed=seed, labels=y, guidance=g)
    return {"model": "mnist-ldm", "nfe": nfe, "sampler": f"fewstep heun (karras) {nfe}", "seconds": d.seconds,
            "x": d.x, **score(d.x, y, dataset)}


def paired_ratio(a: dict[str, Any], b: dict[str, Any], dataset: str, seed: int) -> dict[str, float]:
    """FD(a) / FD(b) on paired samples (same noise and labels) with its 90% paired-bootstrap interval."""
    fa, fb = features(a["x"], dataset), features(b["x"], dataset)
    lo, hi = paired_bootstrap_ratio(fa, fb, reference_stats(dataset), seed=seed)
    return {"ratio": a["fd"] / b["fd"], "lo": lo, "hi": hi}


def demo_section(cfg: Any) -> DemoSection | None:
    """mnist-lfm at 2, 4 and 8 NFE with its best recorded plan and guidance (decoded, same noise and labels as
    the latent teacher's rows)."""
    if MODEL not in zoo.names():
        return None
    den = zoo.load(MODEL, device=cfg.device)
    man = zoo.manifest(MODEL)
    dataset = zoo.lookup.dataset_of(den) or "mnist5k"
    g = float(man.get("guidance", 2.0))
    rec = man.get("sampler", {})
    y = balanced_labels(cfg.n, classes(den))
    floor = noise_floor(dataset, cfg.n)
    rows, images = [], []
    for k in (2, 4, 8):
        d = draw(den, cfg.n, nfe=k, plan=rec.get("plan", "dpm_solver_pp_2m"), grid=rec.get("grid", "logsnr"),
                 seed=cfg.seed, labels=y, guidance=g, device=cfg.device)
        path = f"grids/{MODEL}-{k}nfe.png"
        save_grid(d.x[:80], Path(cfg.out) / path, nrow=10, scale=2)
        s = score(d.x, y, dataset)
        rows.append(Row(MODEL, "flow", k, s["fd"], s["fd"] / floor, confidence(d.x, dataset)["confidence"],
                        cfg.n / max(d.seconds, 1e-9), path, s["accuracy"]))
        images.append((path, f"{MODEL}, {k} NFE ({rec.get('plan', 'dpm_solver_pp_2m')}), guidance {g:g}: FD "
                             f"{s['fd']:.3g}, accuracy {s['accuracy']:.2f}"))
    text = ("Latent flow matching (Dao et al. 2023): a class-conditional velocity UNet on mnist-ae's latents, read "
            "as a denoiser so fewstep's plans sample it; labels 0-9 in turn, decoded by mnist-ae.")
    return DemoSection("Latent flow matching: mnist-lfm", text, rows, dataset, floor, images)

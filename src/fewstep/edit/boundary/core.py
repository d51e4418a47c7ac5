"""BoundaryDiffusion (Zhu et al., NeurIPS 2023): learning-free semantic editing with a frozen diffusion model.

fit: invert labelled images to the mixing step sigma_m (Sec. 3.1; found automatically by `mixing_sigma`), record
x_t and the bottleneck h (the first regeneration evaluation), fit a linear SVM in each space (Sec. 3.2).
apply: invert real images to sigma_m, move x_t (and h, replaced at the first regeneration step as the official code
does) to a chosen signed distance in one step (Eq. 5), regenerate with the rest of the plan (Sec. 3.3).
generate: the same edit on sampled latents (sample from sigma_max down to sigma_m, edit, continue).
A consistency student can do the regeneration in one or two calls (Song et al. 2023, Alg. 1 from sigma_m).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ...denoiser import check_denoiser
from ...seed import randn
from ...solvers.engine import sample
from ...solvers.renoise import multistep
from .hook import Bottleneck, middle_block
from .latents import edit_plan, invert_to, move, radius_ratio, regenerate, sampling_plan
from .svm import Boundary, Hyperplane, fit_svm

CANDIDATES = tuple(2 ** (k / 2) for k in range(-4, 9))  # 0.25 ... 16, a sqrt(2) ladder of mixing sigmas
DEFAULT_PLAN = {"name": "dpm_solver_pp_2m", "nfe": 5, "sigma_min": 0.05, "grid": "logsnr"}


def _has_h(den: Any) -> bool:
    try:
        middle_block(den)
    except TypeError:
        return False
    return True


def _plan(den: Any, b_or_sigma: Boundary | float, cfg: dict[str, Any] | None = None, eta: float = 0.0) -> Any:
    sigma, cfg = (b_or_sigma.sigma, b_or_sigma.plan) if isinstance(b_or_sigma, Boundary) else (b_or_sigma, cfg)
    c = {**DEFAULT_PLAN, **(cfg or {})}
    return edit_plan(den, float(sigma), int(c["nfe"]), c["name"], float(c["sigma_min"]), c["grid"], eta)


@torch.no_grad()
def latents(den: Any, images: Tensor, sigma: float, plan: dict[str, Any] | None = None, cond: Any = None,
            h: bool = True) -> tuple[Tensor, Tensor | None]:
    """(x_t, h) at the mixing step: x_t by inverting `images` with the edit plan, h the bottleneck of D(x_t, sigma)
    (None when the model has no UNet or h=False). Costs the inversion plus one evaluation for h."""
    check_denoiser(den)
    x_t = invert_to(den, images, _plan(den, sigma, plan), cond)
    if not (h and _has_h(den)):
        return x_t, None
    with Bottleneck(den) as hb:
        den(x_t, float(sigma), cond)
    return x_t, hb.h


def mixing_sigma(den: Any, images: Tensor, candidates: Sequence[float] = CANDIDATES,
                 plan: dict[str, Any] | None = None, cond: Any = None) -> tuple[float, dict[float, float]]:
    """The automatic mixing step (BoundaryDiffusion Sec. 3.1, Gaussian-annulus criterion): the candidate sigma at
    which the inverted latents' mean radius ||x_t|| / (sigma sqrt(d)) is closest to 1 (log scale), i.e. where they
    reach the annulus of N(0, sigma^2 I). Needs no labels. Returns (sigma, {candidate: mean radius ratio})."""
    ratios = {}
    for s in candidates:
        x_t, _ = latents(den, images, float(s), plan, cond, h=False)
        ratios[float(s)] = float(radius_ratio(x_t, float(s)).mean())
    best = min(ratios, key=lambda s: abs(math.log(ratios[s])))
    return best, ratios


def fit(den: Any, images: Tensor, labels: Tensor, sigma: float | str = "auto", plan: dict[str, Any] | None = None,
        C: float = 1.0, space: str = "both", heldout: tuple[Tensor, Tensor] | None = None, cond: Any = None,
        attribute: str = "") -> Boundary:
    """BoundaryDiffusion's boundary search (Sec. 3.2): invert `images` [N, ...] to the mixing step (sigma="auto":
    `mixing_sigma`), fit linear SVMs on x_t and on the bottleneck h with binary `labels` (1 = the side that
    positive distances move to); `heldout` (images, labels) adds held-out accuracies. Returns a `Boundary`."""
    if space not in ("x", "h", "both"):
        raise ValueError(f"space must be 'x', 'h' or 'both', got {space!r}")
    cfg = {**DEFAULT_PLAN, **(plan or {})}
    t0 = time.perf_counter()
    ratios: dict[float, float] = {}
    if sigma == "auto":
        sigma, ratios = mixing_sigma(den, images, plan=cfg, cond=cond)
    t1 = time.perf_counter()
    x_t, h = latents(den, images, float(sigma), cfg, cond)
    t2 = time.perf_counter()
    ho_x = ho_h = None
    if heldout is not None:
        hx, hh = latents(den, heldout[0], float(sigma), cfg, cond)
        ho_x, ho_h = (hx, heldout[1]), (None if hh is None else (hh, heldout[1]))
    t3 = time.perf_counter()
    px = fit_svm(x_t, labels, C, ho_x)
    ph = fit_svm(h, labels, C, ho_h) if h is not None else None
    t4 = time.perf_counter()
    if ph is None and space != "x":
        space = "x"
    info = {"attribute": attribute, "n": len(images), "positives": int(torch.as_tensor(labels).sum()),
            "seconds_mixing": t1 - t0, "seconds_latents": t2 - t1, "seconds_svm": t4 - t3,
            "seconds_fit": (t2 - t0) + (t4 - t3), "radius_ratio": {f"{k:.4g}": v for k, v in ratios.items()}}
    return Boundary(float(sigma), cfg, px, ph, space, info)


def _targets(hp: Hyperplane, distance: Tensor | float, units: str, n: int) -> Tensor:
    d = torch.as_tensor(distance, dtype=torch.float64).reshape(-1).expand(n) if not torch.is_tensor(distance) or \
        distance.numel() == 1 else torch.as_tensor(distance, dtype=torch.float64).reshape(-1)
    if units == "std":
        return d * hp.spread
    if units == "raw":
        return d
    raise ValueError(f"units must be 'std' (multiples of the training points' spread) or 'raw', got {units!r}")


@torch.no_grad()
def edit_latent(den: Any, x_t: Tensor, b: Boundary, distance: Tensor | float = 2.0, space: str | None = None,
                units: str = "std", eta: float = 0.0, generator: Any = None, cond: Any = None,
                student: Any = None, student_sigmas: Sequence[float] | None = None, h_steps: int = 1) -> Tensor:
    """Edit latents x_t at b.sigma and regenerate: x_t' = move(x_t) (space "x"/"both"); the bottleneck of the first
    regeneration evaluation moved to the same signed distance in h's units (space "h"/"both"; the official code's
    edit_h at t_m), and that shift added again at the next h_steps - 1 evaluations (Asyrp's h_t + Delta h); the
    rest of the edit plan (eta > 0: ancestral, needs `generator`), or a consistency `student` from sigma_m (Alg. 1 over
    [sigma_m, *student_sigmas]; the x-space edit only, its h-space is its own)."""
    space = space or b.space
    if space not in ("x", "h", "both"):
        raise ValueError(f"space must be 'x', 'h' or 'both', got {space!r}")
    if space != "x" and b.h is None:
        raise ValueError("this boundary has no h-space hyperplane (the model has no UNet bottleneck); use space='x'")
    if space != "x" and student is not None:
        raise ValueError("a consistency student regenerates with its own network; edit it with space='x'")
    if space in ("x", "both"):
        x_t = move(x_t, b.x.w, b.x.b, _targets(b.x, distance, units, len(x_t)))
    if student is not None:
        return multistep(student, x_t, [b.sigma, *(student_sigmas or [])], generator=generator, cond=cond,
                         clip=1.0)
    plan = _plan(den, b, eta=eta)
    if space == "x":
        return regenerate(den, x_t, plan, cond, generator)
    d_h = _targets(b.h, distance, units, len(x_t))
    state: dict[str, Any] = {"calls": 0, "delta": None}

    def edit_h(h: Tensor, sigma: Any) -> Tensor:
        state["calls"] += 1
        if state["calls"] == 1:
            new = move(h, b.h.w, b.h.b, d_h)
            state["delta"] = new - h
            return new
        return h + state["delta"] if state["calls"] <= h_steps else h

    with Bottleneck(den) as hb:
        hb.edit = edit_h
        return regenerate(den, x_t, plan, cond, generator)


@torch.no_grad()
def apply(den: Any, images: Tensor, b: Boundary, distance: Tensor | float = 2.0, space: str | None = None,
          units: str = "std", eta: float = 0.0, generator: Any = None, cond: Any = None, student: Any = None,
          student_sigmas: Sequence[float] | None = None, h_steps: int = 1) -> Tensor:
    """Edit real images (BoundaryDiffusion, real-image mode): invert to b.sigma with the edit plan, move to signed
    distance `distance` (units "std": multiples of the training spread; "raw": the true distance) in one step,
    regenerate. `distance` is a float or one value per image; positive moves toward labels == 1."""
    check_denoiser(den)
    x_t = invert_to(den, images, _plan(den, b), cond)
    return edit_latent(den, x_t, b, distance, space, units, eta, generator, cond, student, student_sigmas, h_steps)


@torch.no_grad()
def generate(den: Any, b: Boundary, n: int, distance: Tensor | float = 2.0, seed: int = 0, nfe: int = 5,
             space: str | None = None, units: str = "std", cond: Any = None) -> tuple[Tensor, Tensor]:
    """Generation mode: sample x_sigma_max (per-sample seeds), run a `nfe`-step plan down to b.sigma, then return
    (the unedited continuation, the edited one) of the same latents."""
    shape = tuple(getattr(den, "shape", None) or ())
    if not shape:
        raise ValueError("generation mode needs den.shape (the sample shape)")
    x_T = randn(list(range(seed, seed + n)), shape) * float(den.sigma_max)
    x_t = sample(den, x_T, sampling_plan(den, b.sigma, nfe, b.plan.get("name", DEFAULT_PLAN["name"])), cond=cond)
    plain = regenerate(den, x_t, _plan(den, b), cond)
    return plain, edit_latent(den, x_t, b, distance, space, units, cond=cond)

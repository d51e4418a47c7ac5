"""`fs.generate`: one call from any model to images, in pixel space at the data set's native size, in [-1, 1].

The model's kind (fewstep.kinds) picks the sampler: a solver plan run by the engine (denoisers; a latent denoiser's
samples are decoded by its autoencoder) or the consistency multistep sampler (students, Song et al. 2023, Alg. 1).
Noise is drawn per sample (fs.seed.noise), so sample i depends only on (seed, i), never on the batch size or the
device (EDM's StackedRandomGenerator idea, Karras et al. 2022); float kernels that differ with the batch size move
an output by about 1e-5.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .. import kinds
from ..guidance import CFG
from ..progress import Bar
from ..seed import SEED_STRIDE, PerSample, noise, seeds_for
from ..solvers.engine import sample
from ..solvers.plan import Plan
from ..solvers.renoise import check_sigmas, geometric_sigmas, multistep
from .lookup import labels_for, manifest, model_name, num_classes, resolve, resolve_plan, zoo_name

DEFAULT_PLAN = {"plan": "dpm_solver_pp_2m", "nfe": 10, "grid": "logsnr"}  # `fewstep sample`'s default
RENOISE_STRIDE = 7_919  # noise draw k (a student's re-noising step k, a stochastic plan's k-th draw) comes from base
# seed `seed + 7919 (k + 1)`: sample i's seed + 7919 * SEED_STRIDE * (k + 1), fs.seed.PerSample


@dataclass
class Drawn:
    """What `draw` made: images x [n, *shape] on CPU, the labels used, seconds spent sampling (network, solver and
    decoding), the NFE per sample and the sampler that ran (as data)."""

    x: Tensor
    labels: Tensor | None
    seconds: float
    nfe: int
    sampler: dict[str, Any]


def generate(model: Any, n: int, nfe: int | None = None, plan: Any = None, seed: int = 0, labels: Any = None,
             guidance: float | None = None, batch: int = 256, device: str = "cpu",
             dtype: torch.dtype | None = None, compile: bool = False) -> Tensor:
    """n images [n, *data_shape] in [-1, 1] on CPU from any model: a zoo name, a checkpoint, a diffusers folder or
    a loaded model. nfe/plan: a plan name, "searched", a Plan or a plan file (for a student: nfe = its steps, plan =
    its sigmas); None: the model's recorded default sampler. labels: None, an int or [n]; guidance: the CFG scale
    g in D_u + g (D_c - D_u) (Ho & Salimans 2022, Eq. 6), 1 = none. compile: run the network under torch.compile
    (the first batch pays the compilation)."""
    return draw(model, n, nfe, plan, seed, labels, guidance, batch, device, dtype, compile=compile).x


@torch.no_grad()
def draw(model: Any, n: int, nfe: int | None = None, plan: Any = None, seed: int = 0, labels: Any = None,
         guidance: float | None = None, batch: int = 256, device: str = "cpu", dtype: torch.dtype | None = None,
         grid: str | None = None, clamp: bool = True, name: str | None = None, progress: bool = False,
         compile: bool = False) -> Drawn:
    """`generate` with what ran and its timing; `grid`: the sigma grid of a named plan [the recorded one, or
    logsnr]; clamp=False keeps the sampler's raw output (what some benchmarks score); `name`: the zoo name that
    plan="searched" looks up [the model's]; `progress`: a bar over the batches on stderr; `compile`: the model
    under torch.compile (seconds include the compilation)."""
    if not isinstance(n, int) or not isinstance(batch, int) or n <= 0 or batch <= 0:
        raise ValueError(f"n and batch must be positive integers, got n={n!r}, batch={batch!r}")
    if nfe is not None and (not isinstance(nfe, int) or nfe < 1):
        raise ValueError(f"--nfe must be a positive number of denoiser evaluations (a student's steps), got {nfe!r}")
    spec = model_name(model) if isinstance(model, (str, os.PathLike)) else None
    m = _placed(resolve(model, device), device, dtype, owned=spec is not None)
    kind = kinds.model_kind(m)
    if kind.sampler is None:
        raise ValueError(f"a model of kind {kind.name!r} does not generate images; give a denoiser, a student or a "
                         "generator (an autoencoder's latent denoiser, for example)")
    shape = tuple(getattr(m, "shape", None) or ())
    if not shape:
        raise ValueError("the model has no `shape`; set model.shape = (C, H, W) (or (D,)) to the shape of one sample")
    name = name or zoo_name(m) or spec
    y = labels_for(n, labels, num_classes(m))
    _check_label_path(m, y)
    recorded = sampler_defaults(m)
    den, cond = _guided(_compiled(m) if compile else m, kind, y, guidance)
    z = PerSample(seeds_for(n, seed), RENOISE_STRIDE * SEED_STRIDE)  # per-sample noise of re-noising/stochastic steps
    if kind.sampler == "renoise":
        sigmas = renoise_sigmas(m, nfe, plan, recorded)
        x_T = noise(n, seed, shape, sigmas[0])

        clip = 1.0 if clamp and getattr(m, "autoencoder", None) is None else None  # latents are not in [-1, 1]

        def run(i: int) -> Tensor:  # CM Alg. 1, each step's output clipped to [-1, 1] (CM's clip_denoised)
            return multistep(den, x_T[i:i + batch].to(device), sigmas, z[i:i + batch],
                             cond=_slice(cond, i, batch, device), clip=clip)
        used: dict[str, Any] = {"sampler": "renoise", "sigmas": sigmas}
        spent = len(sigmas)
    else:
        if plan is None:
            plan, nfe = recorded.get("plan", DEFAULT_PLAN["plan"]), nfe or recorded.get("nfe", DEFAULT_PLAN["nfe"])
        p = resolve_plan(plan, m, nfe, grid or recorded.get("grid", DEFAULT_PLAN["grid"]), model=name)
        x_T = noise(n, seed, shape, float(p.sigmas[0]))

        def run(i: int) -> Tensor:
            return sample(den, x_T[i:i + batch].to(device), p, cond=_slice(cond, i, batch, device),
                          generator=z[i:i + batch] if p.stochastic else None)
        used, spent = {"sampler": "plan", "plan": plan if isinstance(plan, str) else "given", "nfe": p.nfe}, p.nfe
    ae = getattr(m, "autoencoder", None)
    outs = []
    t0 = time.perf_counter()
    with Bar(n, f"{kind.name} x{spent} NFE", enabled=progress) as bar:
        for i in range(0, n, batch):
            xb = run(i)
            outs.append((xb if ae is None else ae.decode(xb)).float().cpu())
            bar.advance(len(xb))
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    x = torch.cat(outs)
    return Drawn(x.clamp(-1, 1) if clamp else x, y, seconds, int(spent), used)


def sampler_defaults(model: Any) -> dict[str, Any]:
    """The default sampler a model records: its zoo manifest's "sampler", else its config's, else {}."""
    name = zoo_name(model)
    recorded = manifest(name).get("sampler") if name else None
    return dict(recorded or (getattr(model, "config", None) or {}).get("sampler") or {})


def renoise_sigmas(model: Any, nfe: int | None, plan: Any, recorded: dict[str, Any]) -> list[float]:
    """The sigmas of a student's multistep sampler: `plan` given as sigmas, else the recorded ones for `nfe` steps,
    else T and intermediate sigmas spaced geometrically down to eps."""
    if isinstance(plan, (str, Plan)):
        raise ValueError("a consistency student samples with its own sigmas, not a solver plan: pass nfe=K (its "
                         "steps) or plan=[sigma_max, tau_1, ...]")
    if plan is not None:
        sigmas = check_sigmas(model, plan)
        if nfe is not None and nfe != len(sigmas):
            raise ValueError(f"nfe={nfe} but {len(sigmas)} sigmas were given; drop nfe or give {nfe} sigmas")
        return sigmas
    steps = int(nfe or recorded.get("nfe", 1))
    if steps < 1:
        raise ValueError(f"--nfe must be a positive number of student steps, got {steps}")
    table = recorded.get("sigmas") or {}
    if str(steps) in table:
        return check_sigmas(model, table[str(steps)])
    return geometric_sigmas(steps, float(model.sigma_min), float(model.sigma_max))


def _placed(m: Any, device: str, dtype: torch.dtype | None, owned: bool) -> Any:
    """The model on `device` in `dtype` (its network cast; the solver keeps float32): a copy of a caller's module
    when it must change, so the caller's object is never modified."""
    if not isinstance(m, nn.Module):
        return m
    tensors = [*m.parameters(), *m.buffers()]
    moves = any(t.device != torch.device(device) for t in tensors)
    casts = dtype is not None and any(t.is_floating_point() and t.dtype != dtype for t in m.parameters())
    if not (moves or casts):
        return m
    m = m if owned else copy.deepcopy(m)
    return m.to(device=device, dtype=dtype) if casts else m.to(device)


def _compiled(m: Any) -> Any:
    """The model under torch.compile (PyTorch 2, TorchDynamo + Inductor): a wrapper that keeps the model's
    attributes (sigma_min, shape, config) and compiles on its first call; the model itself is left as it is."""
    if not isinstance(m, nn.Module):
        raise ValueError(f"compile=True compiles a torch module; this model is a {type(m).__name__}: drop compile")
    return torch.compile(m)


def _check_label_path(m: Any, y: Tensor | None) -> None:
    dropout = ((getattr(m, "config", None) or {}).get("train") or {}).get("label_dropout")
    if y is not None and dropout is not None and float(dropout) >= 1.0:
        raise ValueError("this model was trained with label dropout 1 (only its unconditional branch learned), so "
                         "its label input is untrained; sample it without labels (drop labels= / --class-label)")


def _guided(m: Any, kind: kinds.Kind, y: Tensor | None, guidance: float | None) -> tuple[Any, Any]:
    """(denoiser, cond) with classifier-free guidance applied: by the CFG wrapper, or as the model's condition w
    when its kind takes guidance as an input (LCM, Luo et al. 2023, Eq. 9)."""
    if guidance is None or float(guidance) == 1.0:
        return m, y
    g = float(guidance)
    if not math.isfinite(g):
        raise ValueError(f"guidance must be a finite scale (1 = none), got {guidance}")
    if y is None:
        raise ValueError("guidance pushes samples towards their labels; give labels (an int or one per sample)")
    if kind.guidance == "input":
        return m, {"y": y, "w": torch.full((len(y),), g)}
    if kind.sampler != "plan":
        raise ValueError(f"guidance wraps a denoiser sampled with a solver plan; a {kind.name} model has none "
                         "(distil one with a guidance input instead)")
    return CFG(m, g), y


def _slice(cond: Any, i: int, b: int, device: str) -> Any:
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {k: _slice(v, i, b, device) for k, v in cond.items()}
    return cond[i:i + b].to(device)

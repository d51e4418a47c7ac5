"""`fewstep bench solvers`: fewstep plans vs diffusers schedulers at NFE 3-10, like for like.

One problem per model: x_T = 80 n (per-sample seeded n), one exact reference x0 = fs.reference_solve(D, x_T, 80,
0), and every solver, fewstep or diffusers, starts from that x_T and is scored by its RMS distance to that
reference. diffusers' schedulers are driven by the shared driver `anchors` on linear-beta tables spanning exactly
[sigma_min, 80] (sigma_min in 0.002, 0.01, 0.03), in every timestep spacing that starts at x_T; fewstep gets the
same grids (logsnr = Lu lambdas, karras, vp_discrete = diffusers' linspace/trailing spacing on the same table, plus
uniform_t) and the same final-sigma choice, so its hand-made set is a superset of what diffusers can do.
`bench_denoiser` scores trained models (FD of fs.zoo.load('digits-edm') samples; see solvers_digits.py);
solvers_run.py runs the whole benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .. import analytic, plans, seed
from ..reference import reference_solve
from ..seed import noise
from ..solvers.engine import run, sample
from ..zoo.generate import draw
from . import anchors
from .common import median_time

NFES = [3, 4, 5, 6, 8, 10]
SIGMA_MAX = 80.0
SIGMA_MINS = anchors.SIGMA_MINS
GRIDS: dict[str, dict[str, Any]] = {
    "logsnr": {"grid": "logsnr"}, "karras": {"grid": "karras"}, "uniform_t": {"grid": "uniform_t"},
    "vp_linspace": {"grid": "vp_discrete"}, "vp_trailing": {"grid": "vp_discrete", "spacing": "trailing"}}
AFS_PLANS = ["dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_bh1", "unipc_bh2", "deis_3", "ipndm"]
ORDERS = {"unipc_bh1": (2, 3), "unipc_bh2": (2, 3), "deis_3": (3, 2)}  # the orders diffusers offers; first = default


def fewstep_variants() -> dict[str, tuple[str, dict[str, Any]]]:
    """label -> (constructor, options): every constructor (and diffusers' other orders) on every grid and
    sigma_min; on the vp grids also ending at sigma_min undenoised (diffusers' final_sigmas_type="sigma_min",
    DEIS); AFS variants of the multistep plans. Label: name[:oK][+afs]/grid[+smin]/sigma_min."""
    out = {}
    for name in plans.names():
        for o in ORDERS.get(name, (None,)):
            base, o_opts = (f"{name}:o{o}", {"order": o}) if o != ORDERS.get(name, (None,))[0] else (name, {})
            for g, g_opts in GRIDS.items():
                for smin in SIGMA_MINS:
                    opts = {"sigma_min": smin, **g_opts, **o_opts}
                    out[f"{base}/{g}/{smin}"] = (name, opts)
                    if g.startswith("vp_"):
                        out[f"{base}/{g}+smin/{smin}"] = (name, {**opts, "final_sigma": smin})
                    if name in AFS_PLANS:
                        out[f"{base}+afs/{g}/{smin}"] = (name, {**opts, "afs": "zero"})
    return out


def diffusers_errors(den: Any, x_T: Tensor, ref: Tensor, nfe: int) -> dict[str, float]:
    """RMS error vs `ref` of every diffusers scheduler setting (anchors.variants x table sigma_min) at this NFE,
    all started from x_T at den.sigma_max (the problem of `fewstep bench solvers` and `fewstep bench search`)."""
    return anchors.errors(den, x_T, ref, nfe, float(den.sigma_max))


def problem(den: Any, n: int, seed_: int = 0, sigma_max: float = SIGMA_MAX) -> tuple[Tensor, Tensor]:
    """(x_T, exact x0): x_T = sigma_max n with per-sample seeded n, float64; x0 by DOP853 (fs.reference_solve)."""
    x_T = seed.randn(seed.seeds_for(n, seed_), den.shape, dtype=torch.float64) * sigma_max
    return x_T, reference_solve(den, x_T, sigma_max, 0.0)


def fewstep_errors(den: Any, x_T: Tensor, ref: Tensor, nfe: int, sigma_max: float = SIGMA_MAX,
                   variants: dict[str, tuple[str, dict]] | None = None) -> dict[str, float]:
    """RMS error vs `ref` of every fewstep variant at this NFE (nan where a constructor cannot spend `nfe`)."""
    out = {}
    for label, (name, opts) in (variants or fewstep_variants()).items():
        try:
            p = plans.get(name, nfe=nfe, sigma_max=sigma_max, **opts)
        except ValueError:
            out[label] = math.nan
            continue
        out[label] = anchors.rms(sample(den, x_T, p), ref)
    return out


class Memo:
    """A denoiser that remembers D(x, sigma) for bit-identical (x, sigma): plans sharing a prefix (the first
    evaluation at x_T, the same grid and first steps) reuse it. Exact: a hit needs torch.equal inputs."""

    def __init__(self, den: Any, size: int = 1024) -> None:
        self.den, self.size, self.cache, self.hits = den, size, {}, 0
        self.sigma_min, self.sigma_max, self.shape = den.sigma_min, den.sigma_max, den.shape

    def __call__(self, x: Tensor, sigma: Any, cond: Any = None) -> Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float64).flatten()
        key = (float(s[0]), tuple(x.shape), x.dtype) if cond is None and bool((s == s[0]).all()) else None
        for xc, Dc in self.cache.get(key, []) if key else []:
            if torch.equal(xc, x):
                self.hits += 1
                return Dc
        D = self.den(x, sigma, cond)
        if key:
            if sum(map(len, self.cache.values())) >= self.size:
                self.cache.clear()
            self.cache.setdefault(key, []).append((x.clone(), D))
        return D


def accuracy(den: Any, n: int, seed_: int = 0, nfes: list[int] = NFES, with_diffusers: bool = True) -> dict:
    """{label: {nfe: RMS}} for every fewstep variant and (prefixed 'diffusers:') diffusers setting, one problem."""
    x_T, ref = problem(den, n, seed_)
    den = Memo(den)
    res: dict[str, dict[int, float]] = {}
    for k in nfes:
        errs = fewstep_errors(den, x_T, ref, k)
        if with_diffusers:
            errs.update({"diffusers:" + lab: v for lab, v in diffusers_errors(den, x_T, ref, k).items()})
        for lab, v in errs.items():
            res.setdefault(lab, {})[k] = v
    return res


def overhead(batch: int = 4096, dim: int = 64, n: int = 10, repeats: int = 7) -> dict[str, dict[str, float]]:
    """Median solver time per step with no model at all (a fixed D is fed back): fewstep run() vs step()."""
    x_T = torch.randn(batch, dim) * 80.0
    D = torch.randn(batch, dim)
    out = {}
    for ours, cls in (("dpm_solver_pp_2m", "DPMSolverMultistepScheduler"), ("unipc_bh2", "UniPCMultistepScheduler")):
        plan = plans.get(ours, nfe=n)

        def ours_loop(plan=plan) -> None:
            gen = run(plan, x_T)
            next(gen)
            try:
                while True:
                    gen.send(D)
            except StopIteration:
                pass

        def theirs_loop(cls=cls) -> None:
            s = anchors.make(cls)
            s.set_timesteps(n)
            x = x_T / 80.0
            for t in s.timesteps:
                x = s.step(D, t, x).prev_sample

        t_fs, t_d = median_time(ours_loop, repeats=repeats), median_time(theirs_loop, repeats=repeats)
        out[ours] = {"fewstep_step_ms": 1e3 * t_fs / n, "diffusers_step_ms": 1e3 * t_d / n, "ratio": t_fs / t_d}
    return out


def bench_denoiser(den: Any, score: Callable[[Tensor], float], shape: tuple[int, ...], n: int = 512,
                   nfes: list[int] = NFES, variants: dict[str, tuple[str, dict]] | None = None,
                   seed_: int = 0, diffusers: dict[str, float] | None = None,
                   batch: int = 256) -> dict[str, dict[int, float]]:
    """Score samples of any denoiser (e.g. FD of fs.zoo.load('digits-edm') samples) for each fewstep plan and,
    on the very same per-sample seeded noise, each diffusers setting {anchors label: table sigma_min}."""
    hi, lo = float(den.sigma_max), float(den.sigma_min)
    out: dict[str, dict[int, float]] = {}
    for label, (name, opts) in (variants or fewstep_variants()).items():
        out[label] = {}
        for k in nfes:
            plan = plans.get(name, nfe=k, sigma_max=hi, **{"sigma_min": lo, **opts})
            x = draw(den, n, plan=plan, seed=seed_, batch=batch, clamp=False).x
            out[label][k] = float(score(x))
    x_T = noise(n, seed_, shape, hi)
    for label, smin in (diffusers or {}).items():
        out["diffusers:" + label] = {}
        for k in nfes:
            with torch.no_grad():
                x = torch.cat([anchors.solve(label, den, x_T[i:i + batch], k, hi, smin, float64=False)
                               for i in range(0, n, batch)])
            out["diffusers:" + label][k] = float(score(x))
    return out


def mixtures() -> dict[str, Any]:
    return {"2d-8": analytic.toy_mixture(2, 8, sigma_max=SIGMA_MAX),
            "64d-16": analytic.toy_mixture(64, 16, spread=1.0, std=0.3, sigma_max=SIGMA_MAX)}


def best(res: dict[str, dict[int, float]], k: int, diff: bool) -> tuple[float, str]:
    """(value, label) of the best fewstep (diff=False) or diffusers (True) entry at NFE k; nan entries ignored."""
    vals = [(v[k], lab) for lab, v in res.items() if lab.startswith("diffusers:") == diff and v.get(k) == v.get(k)]
    return min(vals) if vals else (float("nan"), "-")


def versus_table(title: str, res: dict[str, dict[int, float]], nfes: list[int], metric: str) -> dict[str, Any]:
    """Per NFE: best fewstep plan vs best diffusers setting, and their ratio (<= 1: fewstep at least as good)."""
    rows = []
    for k in nfes:
        (ef, lf), (ed, ld) = best(res, k, False), best(res, k, True)
        rows.append([k, lf, ef, ld.removeprefix("diffusers:"), ed, ef / ed])
    return {"title": title, "columns": ["NFE", "best fewstep plan", metric, "best diffusers", metric,
                                        "fewstep/diffusers"], "rows": rows}

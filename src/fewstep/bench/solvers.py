"""`fewstep bench solvers`: fewstep plans vs diffusers schedulers at NFE 3-10 on exact analytic mixtures.

Error = RMS distance to the exact PF-ODE solution (fs.reference_solve) from the same x_T. diffusers'
schedulers run on their own VP grid (linear betas, sigma in [~0.01, ~157]) with D wrapped as a
prediction_type="sample" model, each scored against the reference from its own starting point.
`bench_denoiser(den, score, ...)` is the hook for trained models (FD on digits-edm) once they exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .. import analytic, plans, seed
from ..reference import reference_solve
from ..solvers.engine import sample

NFES = [3, 4, 5, 6, 8, 10]
GRIDS = ["logsnr", "karras", "uniform_t"]
SIGMA_MINS = [0.002, 0.01, 0.03]
AFS_PLANS = ["dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_bh1", "unipc_bh2", "deis_3", "ipndm"]


def fewstep_variants() -> dict[str, tuple[str, dict[str, Any]]]:
    """label -> (constructor, options): every constructor on every grid, plus AFS variants."""
    out = {}
    for name in plans.names():
        for g in GRIDS:
            for smin in SIGMA_MINS:
                out[f"{name}/{g}/{smin}"] = (name, {"grid": g, "sigma_min": smin})
                if name in AFS_PLANS:
                    out[f"{name}+afs/{g}/{smin}"] = (name, {"grid": g, "sigma_min": smin, "afs": "zero"})
    return out


def diffusers_variants() -> dict[str, Callable[[], Any]]:
    """label -> scheduler factory, in the settings people use for few steps."""
    import diffusers as d

    kw = {"prediction_type": "sample"}
    out: dict[str, Callable[[], Any]] = {
        "DDIM(trailing)": lambda: d.DDIMScheduler(**kw, clip_sample=False, timestep_spacing="trailing"),
        "DEIS-3": lambda: d.DEISMultistepScheduler(**kw, solver_order=3),
        "UniPC-bh1": lambda: d.UniPCMultistepScheduler(**kw, solver_type="bh1", final_sigmas_type="sigma_min"),
        "UniPC-bh2": lambda: d.UniPCMultistepScheduler(**kw, solver_type="bh2"),
    }
    for order in (2, 3):
        for tag, extra in (("", {}), ("+karras", {"use_karras_sigmas": True}), ("+lu", {"use_lu_lambdas": True})):
            out[f"DPM++{order}M{tag}"] = (
                lambda o=order, e=extra: d.DPMSolverMultistepScheduler(**kw, solver_order=o, **e))
    return out


def run_diffusers(sched: Any, den: Any, noise: Tensor, n: int) -> tuple[Tensor, float]:
    """Drive a VP diffusers scheduler with D as a 'sample' model; returns (x at the grid's end, in VE; sigma_0)."""
    sched.set_timesteps(n)
    if hasattr(sched, "alphas_cumprod") and type(sched).__name__ == "DDIMScheduler":
        acp = sched.alphas_cumprod.double()
        sig = [math.sqrt((1 - acp[t]) / acp[t]) for t in sched.timesteps.tolist()] + [0.0]
    else:
        sig = [float(v) for v in sched.sigmas]
    x = noise.double() * sig[0] / math.sqrt(1 + sig[0] ** 2)
    for k, t in enumerate(sched.timesteps):
        a = 1 / math.sqrt(1 + sig[k] ** 2)
        x = sched.step(den(x.float() / a, sig[k]).double(), t, x.float()).prev_sample.double()
    return x * math.sqrt(1 + sig[-1] ** 2), sig[0]


def _rms(a: Tensor, b: Tensor) -> float:
    v = (a.double() - b.double()).pow(2).mean().sqrt().item()
    return v if math.isfinite(v) else float("nan")


def accuracy(den: Any, n: int, seed_: int = 0, nfes: list[int] = NFES, with_diffusers: bool = True) -> dict:
    """RMS error vs the exact solution for every fewstep variant and diffusers scheduler at each NFE."""
    noise = seed.randn(seed.seeds_for(n, seed_), den.shape, dtype=torch.float64)
    refs: dict[float, Tensor] = {}

    def ref(s0: float) -> Tensor:
        key = round(s0, 6)
        if key not in refs:
            refs[key] = reference_solve(den, noise * s0, s0, 0.0)
        return refs[key]

    res: dict[str, dict[int, float]] = {}
    for label, (name, opts) in fewstep_variants().items():
        res[label] = {}
        for k in nfes:
            p = plans.get(name, nfe=k, sigma_max=80.0, **opts)
            res[label][k] = _rms(sample(den, noise * 80.0, p), ref(80.0))
    if with_diffusers:
        for label, make in diffusers_variants().items():
            res["diffusers:" + label] = {}
            for k in nfes:
                x, s0 = run_diffusers(make(), den, noise, k)
                res["diffusers:" + label][k] = _rms(x, ref(s0))
    return res


def overhead(batch: int = 4096, dim: int = 64, n: int = 10, repeats: int = 7) -> dict[str, dict[str, float]]:
    """Median solver time per step with no model at all (a fixed D is fed back): fewstep run() vs step()."""
    import diffusers as d

    from ..solvers.engine import run
    from .common import median_time

    x_T = torch.randn(batch, dim) * 80.0
    D = torch.randn(batch, dim)
    out = {}
    for ours, make in (("dpm_solver_pp_2m", lambda: d.DPMSolverMultistepScheduler(prediction_type="sample")),
                       ("unipc_bh2", lambda: d.UniPCMultistepScheduler(prediction_type="sample"))):
        plan = plans.get(ours, nfe=n)

        def ours_loop(plan=plan) -> None:
            gen = run(plan, x_T)
            next(gen)
            try:
                while True:
                    gen.send(D)
            except StopIteration:
                pass

        def theirs_loop(make=make) -> None:
            s = make()
            s.set_timesteps(n)
            x = x_T / 80.0
            for t in s.timesteps:
                x = s.step(D, t, x).prev_sample

        t_fs, t_d = median_time(ours_loop, repeats=repeats), median_time(theirs_loop, repeats=repeats)
        out[ours] = {"fewstep_step_ms": 1e3 * t_fs / n, "diffusers_step_ms": 1e3 * t_d / n, "ratio": t_fs / t_d}
    return out


def bench_denoiser(den: Any, score: Callable[[Tensor], float], shape: tuple[int, ...], n: int = 512,
                   nfes: list[int] = NFES, variants: dict[str, tuple[str, dict]] | None = None,
                   seed_: int = 0) -> dict[str, dict[int, float]]:
    """Score samples of any denoiser (e.g. FD of fs.zoo.load('digits-edm') samples) for each plan and NFE."""
    noise = seed.randn(seed.seeds_for(n, seed_), shape)
    out: dict[str, dict[int, float]] = {}
    for label, (name, opts) in (variants or fewstep_variants()).items():
        out[label] = {k: float(score(sample(den, noise * den.sigma_max, plans.get(
            name, nfe=k, sigma_min=den.sigma_min, sigma_max=den.sigma_max, **opts)))) for k in nfes}
    return out


def mixtures() -> dict[str, Any]:
    return {"2d-8": analytic.toy_mixture(2, 8, sigma_max=160.0),
            "64d-16": analytic.toy_mixture(64, 16, spread=1.0, std=0.3, sigma_max=160.0)}


def _best(res: dict[str, dict[int, float]], k: int, diff: bool) -> tuple[float, str]:
    vals = [(v[k], lab) for lab, v in res.items() if lab.startswith("diffusers:") == diff and v[k] == v[k]]
    return min(vals) if vals else (float("nan"), "-")


def main(n_2d: int = 256, n_64d: int = 128, seed_: int = 0, plot: bool = True) -> dict[str, Any]:
    """Run the whole benchmark, write bench-results/solvers.json (+ .png), return the payload."""
    from .common import RESULTS_DIR, write_result

    acc = {name: accuracy(den, n_2d if name.startswith("2d") else n_64d, seed_) for name, den in mixtures().items()}
    ovh = overhead()
    tables, summary = [], []
    for name, res in acc.items():
        rows = []
        for k in NFES:
            (ef, lf), (ed, ld) = _best(res, k, False), _best(res, k, True)
            rows.append([k, lf, ef, ld.removeprefix("diffusers:"), ed, ed / ef])
        tables.append({"title": f"{name} mixture: best RMS error vs exact ODE solution",
                       "columns": ["NFE", "best fewstep plan", "RMS", "best diffusers", "RMS", "diffusers/fewstep"],
                       "rows": rows})
        wins = sum(r[2] <= r[4] for r in rows)
        summary.append(f"{name}: the best fewstep plan is at least as accurate as the best diffusers scheduler "
                       f"at {wins}/{len(rows)} NFEs")
    tables.append({"title": "solver overhead per step, batch 4096 x 64 float32, no model (median)",
                   "columns": ["solver", "fewstep ms", "diffusers step() ms", "ratio"],
                   "rows": [[k, v["fewstep_step_ms"], v["diffusers_step_ms"], v["ratio"]] for k, v in ovh.items()]})
    ratios = ", ".join(f"{k} {v['ratio']:.2f}" for k, v in ovh.items())
    summary.append(f"solver overhead per step, fewstep / diffusers: {ratios}")
    payload: dict[str, Any] = {"title": "Solvers (USF plans vs diffusers schedulers)", "summary": summary,
                               "tables": tables, "nfes": NFES, "accuracy": acc, "overhead": ovh}
    if plot:
        png = RESULTS_DIR / "solvers.png"
        _plot(acc, png)
        payload["plots"] = [str(png)]
    write_result("solvers", payload)
    return payload


def _plot(acc: dict[str, dict[str, dict[int, float]]], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(acc), figsize=(6 * len(acc), 4.5))
    for ax, (name, res) in zip(axes, acc.items(), strict=True):
        for diff, style in ((False, "-o"), (True, "--s")):
            ax.plot(NFES, [_best(res, k, diff)[0] for k in NFES], style,
                    label="best diffusers scheduler" if diff else "best fewstep plan")
        for fam in ("dpm_solver_pp_3m/logsnr/0.002", "unipc_bh2/logsnr/0.002", "ddim/logsnr/0.002"):
            ax.plot(NFES, [res[fam][k] for k in NFES], ":", alpha=0.6, label=fam)
        ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel="RMS error vs exact", title=name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

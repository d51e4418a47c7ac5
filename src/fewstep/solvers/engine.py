"""The one stepping engine of the unified sampling framework (USF, Liu et al. 2024, Sec. 3).

Every step integrates x from sigma_s to sigma_t with the prediction m expanded as a Taylor polynomial in
tau and integrated exactly. With tau = lambda = -log sigma (VE coordinates, h = lambda_t - lambda_s):
  data  (DPM-Solver++, Lu et al. 2022b Eq. 9):  x_t = (sigma_t/sigma_s) x_s + sum_k h^{k+1} phi_{k+1}(-h) x0^(k)
  noise (DPM-Solver, Lu et al. 2022a Eq. 3.7):  x_t = x_s - sigma_t sum_k h^{k+1} phi_{k+1}(h) eps^(k)
with phi_{k+1}(z) = sum_n z^n / (n+k+1)!; with tau = sigma (EDM/iPNDM): x_t = x_s + sum_k h^{k+1}/(k+1)! eps^(k).
`run` is a generator that yields (x, sigma) requests and receives D(x, sigma), so a diffusers scheduler can
drive the very same code; all history is local to the generator. Stochastic steps (ancestral, SDE, consistency
re-noising, EDM churn: stochastic.py) draw their noise from a per-run noise source; a plan whose sigmas increase
runs backwards (inversion, x0 -> x_T: `Plan.inverted`, `invert`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Generator
from typing import Any

import torch
from torch import Tensor

from ..denoiser import check_denoiser, check_finite
from ..errors import PlanError
from . import stochastic
from .finite import Flags, diverged, finite
from .plan import Plan, Step

Request = tuple[Tensor, Tensor]


def phi(k: int, z: float) -> float:
    """phi_k(z) = sum_{n>=0} z^n / (n+k)! (Hochbruck & Ostermann 2010), stable for small |z|."""
    if abs(z) < 0.5:
        return sum(z**n / math.factorial(n + k) for n in range(25))
    out = math.exp(z)
    for j in range(k):
        out = (out - 1 / math.factorial(j)) / z
    return out


class _Eval:
    """One denoiser evaluation: sigma, the x it was evaluated at, D; eps computed on demand."""

    __slots__ = ("sigma", "x", "D", "_eps")

    def __init__(self, sigma: float, x: Tensor, D: Tensor) -> None:
        self.sigma, self.x, self.D, self._eps = sigma, x, D, None

    def m(self, prediction: str) -> Tensor:
        if prediction == "data":
            return self.D
        if self._eps is None:
            self._eps = (self.x - self.D) / self.sigma
        return self._eps


def _tau(st: Step, sigma: float) -> float:
    return sigma if st.variable == "sigma" else -math.log(sigma)


def _ratio(st: Step, s: float, t: float, sigma: float) -> float:
    """Position r of an evaluation at `sigma` on the step s -> t, in the step's variable."""
    return (_tau(st, sigma) - _tau(st, s)) / (_tau(st, t) - _tau(st, s))


def _at_ratio(st: Step, s: float, t: float, r: float) -> float:
    """The sigma at position r of the step s -> t (singlestep intermediate points)."""
    return s + r * (t - s) if st.variable == "sigma" else s * (t / s) ** r


def coefficients(st: Step, s: float, t: float, order: int, relax: str) -> tuple[float, float, list[float]]:
    """(a, b, C): x_t = a x_s + b m_s + sum_k C_k e_k with e_k = h^k m^(k) / k! (float64 maths)."""
    if st.variable == "sigma":
        h = t - s
        C = [h / (k + 1) for k in range(1, order)]
        a, b = 1.0, h
    elif t == 0:
        return (0.0, 1.0, []) if st.prediction == "data" else (1.0, -s, [])
    else:
        h = math.log(s / t)
        if st.prediction == "data":
            a, b = t / s, -math.expm1(-h)
            C = [h * phi(k + 1, -h) * math.factorial(k) for k in range(1, order)]
            half = {"dpm_solver_2": b / 2, "bh2": b / 2, "bh1": h / 2}
        else:
            a, b = 1.0, -(s - t)
            C = [-t * h * phi(k + 1, h) * math.factorial(k) for k in range(1, order)]
            half = {"dpm_solver_2": b / 2, "bh2": b / 2, "bh1": -t * h / 2}
        if C and relax in half:  # DPM-Solver-2 midpoint (Lu 2022a Alg. 1), UniPC B(h) (Zhao 2023 Eq. 8)
            C[0] = half[relax]
    if C and relax == "linear":  # USF's searched linear relaxation (1 + c h)
        C[0] *= 1 + st.coef * h
    if len(C) > 1:
        C[1] *= st.second_scale
    return a, b, C


def _weights(rs: list[float], n_used: int) -> list[list[float]]:
    """Rows k=1..n_used of V^{-1}, V[j, k] = r_j^k: e_k = sum_j W[k][j] (m_j - m_s) (Taylor system, USF Eq. 6)."""
    V = torch.tensor([[r**k for k in range(1, len(rs) + 1)] for r in rs], dtype=torch.float64)
    return torch.linalg.inv(V)[:n_used].tolist()


def advance(st: Step, x_s: Tensor, ev_s: _Eval, t: float, pts: list[tuple[float, _Eval]], order: int,
            relax: str) -> Tensor:
    """One Taylor-EI update of `order` from (x_s, sigma_s) to t; pts are (r_j, evaluation) nodes."""
    s = ev_s.sigma
    a, b, C = coefficients(st, s, t, order, relax)
    m_s = ev_s.m(st.prediction)
    out = torch.mul(x_s, a) if a != 1.0 else x_s.clone()
    if order > 1 and C:  # (no C: a lambda step to sigma 0, where only the first-order term exists)
        W = _weights([r for r, _ in pts], order - 1)
        c = [sum(C[k] * W[k][j] for k in range(order - 1)) for j in range(len(pts))]
        b -= sum(c)
        for cj, (_, ev) in zip(c, pts, strict=True):
            if cj != 0.0:
                out.add_(ev.m(st.prediction), alpha=cj)
    return out.add_(m_s, alpha=b)


def _corrector_nodes(st: Step, s: float, t: float, pts: list[tuple[float, _Eval]], new: _Eval) -> list:
    return [*pts, (_ratio(st, s, t, new.sigma), new)]


def _last_reads(plan: Plan) -> dict[int, int]:
    """Grid index j -> the last step that reads evaluation j as a multistep node (lag p at step j + p)."""
    out: dict[int, int] = {}
    for i, st in enumerate(plan.steps):
        if not st.singlestep:
            for p in st.used_points():
                out[i - p] = max(out.get(i - p, i), i)
    return out


def run(plan: Plan, x_T: Tensor, generator: Any = None) -> Generator[Request, Tensor, Tensor]:
    """Execute `plan` from x_T (VE, = noise * sigma_max): yield (x, sigma) requests, receive D(x, sigma), return x0.

    sigma is a float64 0-d tensor; x is in x_T's dtype. `generator`: the noise of stochastic steps (None for an ODE
    plan; fs.seed.PerSample(seeds), one torch.Generator per sample, one for the batch, or any noise(k, x)).
    """
    if not torch.is_tensor(x_T) or not x_T.is_floating_point():
        raise TypeError(f"x_T must be a floating-point tensor (noise * plan.sigmas[0]), got "
                        f"{getattr(x_T, 'dtype', type(x_T).__name__)}; pass x_T.float()")
    noise = stochastic.source(generator, plan)
    draws = 0  # noise draws so far: draw k is noise(k, x)
    out_dtype = x_T.dtype
    wd = x_T.dtype if x_T.dtype in (torch.float32, torch.float64) else torch.float32
    x = x_T.to(wd)
    sig = plan.sigmas.tolist()
    last_read = _last_reads(plan)
    grid: dict[int, _Eval] = {}  # grid index -> evaluation, only those a later step still reads
    pending: tuple[Step, Tensor, _Eval, list] | None = None  # (step, x_s, eval_s, nodes) awaiting UniC
    flag = Flags(plan, x.device)
    flag(x, "x_T")
    for i, st in enumerate(plan.steps):
        s, t = sig[i], sig[i + 1]
        if st.churn:  # EDM (Karras et al. 2022, Alg. 2 lines 5-6): raise the noise level to s (1 + gamma_i) first
            s_hat = s * (1 + st.churn)
            x = x + (math.sqrt(s_hat**2 - s**2) * st.s_noise) * noise(draws, x).to(wd)
            draws += 1
            flag(x, "churn", i)
            s = s_hat
        if i == 0 and plan.afs != "none":  # analytical first step: x0(x_T) = 0 or the data mean, no NFE
            mean = plan.afs_mean.to(device=x.device, dtype=wd) if plan.afs_mean is not None else x.new_zeros(())
            if not _broadcasts(mean, x):
                raise PlanError(f"plan field 'afs_mean': shape {tuple(mean.shape)} does not broadcast to the "
                                f"samples {tuple(x.shape)}; expected one sample's shape {tuple(x.shape[1:])}")
            D = torch.broadcast_to(mean, x.shape)
        else:
            D = yield x.to(out_dtype), torch.tensor(s, dtype=torch.float64)
            D = D.to(wd)
            flag(D, "D", i, s)
        ev = _Eval(s, x, D)
        grid[i] = ev
        if pending is not None:  # UniC (Zhao et al. 2023, Eq. 12): reuse this evaluation to correct x_i
            pst, x_p, ev_p, nodes = pending
            x = advance(pst, x_p, ev_p, s, _corrector_nodes(pst, ev_p.sigma, s, nodes, ev), pst.order + 1,
                        pst.corrector_relaxation)
            flag(x, "unic", i - 1)
            pending = None
        d = stochastic.target(st, s, t)  # = t unless the step adds fresh noise after its update
        if st.singlestep:
            inter: list[tuple[float, _Eval]] = []
            for j, r in enumerate(st.ratios):
                s_u = _at_ratio(st, s, d, r)
                x_u = advance(st, x, ev, s_u, [(rr * 1.0 / r, e) for rr, e in inter], j + 1, st.inner_relaxation)
                flag(x_u, "inter", i, j + 1)
                D_u = yield x_u.to(out_dtype), torch.tensor(s_u, dtype=torch.float64)
                inter.append((r, _Eval(s_u, x_u, D_u.to(wd))))
                flag(inter[-1][1].D, "D", i, s_u)
            nodes = [inter[p - 1] for p in st.used_points()]
        else:
            lags, ref = st.used_points(), t if st.noise == "sde" else d  # SDE: nodes on the real step s -> t
            nodes = [(-float(p) if st.uniform else _ratio(st, s, ref, grid[i - p].sigma), grid[i - p]) for p in lags]
        x_new = advance(st, x, ev, d, nodes, st.order, st.relaxation)
        if st.noise != "none" and t > 0:
            x_new = x_new + stochastic.up(st, s, t, d) * noise(draws, x_new).to(wd)
            draws += 1
        flag(x_new, "step", i)
        for j in [j for j in grid if last_read.get(j, j) <= i]:  # free what no later step reads (UniC keeps
            del grid[j]  # its own references in `pending`)
        if st.corrector == "unic":
            pending = (st, x, ev, nodes)
        x = x_new
    out = x.to(out_dtype)
    if not finite(out):  # the one host sync of the finiteness watch
        raise diverged(plan, flag)
    return out


def _broadcasts(mean: Tensor, x: Tensor) -> bool:
    try:
        return torch.broadcast_shapes(mean.shape, x.shape) == x.shape
    except RuntimeError:
        return False



def _check_range(den: Any, plan: Plan) -> None:
    s = plan.sigmas
    lo, hi = float(s[s > 0].min()), float(s.max())
    if hi > den.sigma_max * (1 + 1e-6) or lo < den.sigma_min * (1 - 1e-6):
        warnings.warn(f"plan sigmas [{lo:.4g}, {hi:.4g}] leave the denoiser's range [{den.sigma_min:.4g}, "
                      f"{den.sigma_max:.4g}]; it will be evaluated outside what it was trained on "
                      "(build the plan with the denoiser's sigma_min/sigma_max)", stacklevel=3)


def sample(den: Any, x_T: Tensor, plan: Plan, cond: Any = None, generator: Any = None,
           callback: Callable[[dict[str, Any]], None] | None = None, progress: bool = False) -> Tensor:
    """Sample x0 from x_T (= noise * plan.sigmas[0]) with any USF plan: fs.sample(den, x_T, plan). A stochastic plan
    needs `generator`: fs.seed.PerSample(seeds) (per sample), torch.Generator(s) or a noise source (see `run`)."""
    check_denoiser(den)
    if not isinstance(plan, Plan):
        raise TypeError(f"plan must be a fewstep Plan (fs.plans.get(...) or fs.Plan.from_json), got "
                        f"{type(plan).__name__}")
    check_finite(x_T, "x_T")
    if x_T.ndim < 1 or x_T.shape[0] < 1:
        raise ValueError(f"x_T must be [batch, *shape] with batch >= 1, got shape {tuple(x_T.shape)}")
    shape = getattr(den, "shape", None)
    if shape is not None and tuple(x_T.shape[1:]) != tuple(shape):
        raise ValueError(f"x_T has event shape {tuple(x_T.shape[1:])} but the denoiser expects {tuple(shape)}")
    _check_range(den, plan)
    sdt = torch.float64 if x_T.dtype == torch.float64 else torch.float32
    gen = run(plan, x_T, generator)
    bar = _progress(plan.nfe) if progress else None
    n_grid = 0
    try:
        x, sigma = next(gen)
        while True:
            D = den(x, torch.full((x.shape[0],), float(sigma), dtype=sdt, device=x.device), cond)
            if not torch.is_tensor(D) or D.shape != x.shape:
                raise ValueError(f"the denoiser returned {getattr(D, 'shape', type(D).__name__)}, expected a tensor "
                                 f"of shape {tuple(x.shape)}")
            if callback is not None:
                callback({"i": n_grid, "x": x, "sigma": float(sigma), "denoised": D})
            n_grid += 1
            if bar is not None:
                bar.advance(bar.task_ids[0])
            x, sigma = gen.send(D)
    except StopIteration as stop:
        return stop.value
    finally:
        if bar is not None:
            bar.stop()


def invert(den: Any, x0: Tensor, plan: Plan, cond: Any = None, progress: bool = False) -> Tensor:
    """DDIM inversion (Song et al. 2021, Sec. 4.3) with any deterministic plan: x0 -> x_T along the PF-ODE, so that
    fs.sample(den, invert(den, x0, plan), plan) ~ x0. x0 is taken as the sample at the inverted grid's first sigma
    (the plan's last positive one, e.g. sigma_min); a sampling plan is inverted with `Plan.inverted()`."""
    if not isinstance(plan, Plan):
        raise TypeError(f"plan must be a fewstep Plan (fs.plans.get(...)), got {type(plan).__name__}")
    return sample(den, x0, plan if plan.ascending else plan.inverted(), cond=cond, progress=progress)


def _progress(total: int) -> Any:
    from rich.progress import Progress

    bar = Progress(transient=True)
    bar.add_task("sampling", total=total)
    bar.start()
    return bar

"""Classic solvers as plan constructors: each returns decisions for the one engine, never its own loop.

`get(name, nfe, sigma_min, sigma_max, grid, **options)`; every constructor spends exactly `nfe` evaluations.
Multistep options: `order`, `solver_type` ("midpoint": DPM-Solver-2 coefficient, "heun": exact), `exact`
(3M: full-weight second derivative, 3rd order), `corrector`/`disable_corrector` (UniPC).
Common options: `sigmas` (explicit grid, overrides `grid`; its length then fixes the step count),
`lower_order_final` (True: like diffusers, orders <= 2 on the last two steps when there are < 15 steps; the
step to sigma = 0 is always order 1 in lambda, since h = inf there), `final_sigma` (0: end on data; > 0: stop
there without denoising), `afs` ("none" | "zero": saves one NFE, USF), `prediction` ("data" | "noise").
Few steps: heun at nfe <= 4 and noise-prediction singlestep at nfe 3 end [..., s, 0] without sigma_min
(`_low_nfe_grid`); every other plan is unchanged. Any constructor also takes EDM's churn (`S_churn`, `S_tmin`,
`S_tmax`, `S_noise`; Karras et al. 2022, Alg. 2). `STOCHASTIC` holds the constructors whose plans draw noise by
design (ancestral, SDE, consistency / TCD); `names()` lists the ODE ones, `names(stochastic=True)` those.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from .. import grids
from .plan import MAX_NFE, Plan, Step
from .stochastic import with_churn

HEUN_LOW_NFE = 4  # heun at nfe <= 4 (and noise-prediction singlestep at nfe 3) uses `_low_nfe_grid`


def _grid(n: int, sigma_min: float, sigma_max: float, grid: str, sigmas: Any = None,
          final_sigma: float = 0.0, **grid_kw: Any) -> Tensor:
    if sigmas is not None:
        return _explicit(sigmas)
    s = grids.get(grid, n, sigma_min, sigma_max, **grid_kw)
    if final_sigma:  # below the last positive grid value: sigma_min, or sigma(t_{n-1}) on a vp_discrete grid
        last = float(s[-2]) if len(s) > 2 else sigma_max
        if not 0 < final_sigma < last:
            raise ValueError(f"final_sigma must be 0 or in (0, {last:.6g}) (the grid's last positive sigma; "
                             f"sigma_min={sigma_min} on most grids), got {final_sigma}")
        s[-1] = final_sigma
    return s


def _explicit(sigmas: Any) -> Tensor:
    """User-given grid: strictly decreasing, >= 0; a positive last value means 'stop there, do not denoise'."""
    s = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    if s.numel() < 2 or not torch.isfinite(s).all() or s[-1] < 0 or not (s[1:] < s[:-1]).all():
        raise ValueError(f"sigmas must be >= 2 finite values, strictly decreasing, >= 0; got {s.tolist()}")
    return s


def _low_nfe_grid(n: int, sigma_min: float, sigma_max: float, grid: str, **grid_kw: Any) -> Tensor:
    """n steps ending [..., s, 0] with s the grid family's last interior point: the (n+1)-step grid without its
    sigma_min. At a few steps the usual [..., sigma_min, 0] makes a second-order step jump onto sigma_min (EDM Heun
    at NFE 3: 80 -> 0.002, whatever the grid) and spends the last evaluation on a near-identity step to 0."""
    s = grids.get(grid, n + 1, sigma_min, sigma_max, **grid_kw)
    return torch.cat([s[:-2], s[-1:]])


def _check_nfe(nfe: Any, least: int = 1) -> int:
    if not isinstance(nfe, int) or isinstance(nfe, bool) or nfe < least:
        raise ValueError(f"nfe must be an integer >= {least}, got {nfe!r}")
    if nfe > MAX_NFE:
        raise ValueError(f"nfe={nfe} exceeds the limit of {MAX_NFE} denoiser evaluations per sample "
                         f"(fewstep.solvers.plan.MAX_NFE); use a smaller nfe")
    return nfe


def _multistep(order: int, n: int, lower_order_final: bool, warm: bool = True) -> list[int]:
    """Per-step orders: warm-up min(order, i+1); diffusers' lower_order_final for the last two steps (< 15)."""
    out = []
    for i in range(n):
        p = min(order, i + 1) if warm else order
        if lower_order_final and n < 15:
            p = min(p, n - i)
        out.append(p)
    return out


def _finish(sig: Tensor, steps: list[Step], name: str, order: int, afs: str = "none") -> Plan:
    if sig[-1] == 0:  # the step to data in lambda must be order 1 (diffusers: final_sigmas_type="zero")
        last = steps[-1]
        if last.variable == "lambda" and last.order > 1:
            steps[-1] = Step(order=1, prediction=last.prediction)
    return Plan(sig, tuple(steps), afs=afs, name=name, order=order)


def _n_steps(nfe: int, afs: str, sigmas: Any) -> int:
    n = nfe + (afs != "none")
    if sigmas is not None:
        n_given = len(_explicit(sigmas)) - 1
        if n_given != n:
            raise ValueError(f"the given sigmas have {n_given} steps but nfe={nfe} (afs={afs!r}) needs {n}")
    return n


def multistep(name: str, order: int, relaxation: str = "none", corrector: bool = False, bh: str = "") -> Callable:
    """Constructor for a multistep EI solver (DPM-Solver++ 2M/3M, UniPC, DEIS)."""

    def build(nfe: int, sigma_min: float, sigma_max: float, grid: str, *, prediction: str = "data",
              order: int = order, lower_order_final: bool = True, sigmas: Any = None, afs: str = "none",
              final_sigma: float = 0.0, disable_corrector: tuple[int, ...] = (), corrector: bool = corrector,
              solver_type: str = "midpoint", exact: bool = False, **grid_kw: Any) -> Plan:
        n = _n_steps(nfe, afs, sigmas)
        sig = _grid(n, sigma_min, sigma_max, grid, sigmas, final_sigma, **grid_kw)
        if bh:  # UniPC: lower_order_final applies at any step count (diffusers UniPCMultistepScheduler)
            orders = [min(order, i + 1, n - i) if lower_order_final else min(order, i + 1) for i in range(n)]
        else:
            orders = _multistep(order, n, lower_order_final)
        # DPM-Solver++(3M) as published (Lu 2022b, diffusers, k-diffusion): D2 estimates h^2 x0''/2 but is
        # weighted as if it were h^2 x0'', so the x0'' term has half its Taylor weight -> formally 2nd order.
        half_d2 = relaxation == "dpm_solver_2" and not bh and not exact
        steps = []
        for i, p in enumerate(orders):
            relax = bh or (relaxation if solver_type == "midpoint" else "none")
            use_c = corrector and i < n - 1 and i not in disable_corrector
            steps.append(Step(
                order=p, prediction=prediction, relaxation=relax if p == 2 else "none",
                second_scale=0.5 if half_d2 and p == 3 else 1.0,
                corrector="unic" if use_c else "none",
                corrector_relaxation=((bh or "none") if p == 1 else "none") if use_c else "none"))
        declared = order + (1 if corrector else 0) - (1 if half_d2 and order == 3 else 0)
        return _finish(sig, steps, name, declared, afs)

    return build


def singlestep(name: str, order: int, prediction: str) -> Callable:
    """DPM-Solver(++)-k singlestep on diffusers' order list (blocks of k grid intervals, Lu 2022a Alg. 1-2)."""

    def build(nfe: int, sigma_min: float, sigma_max: float, grid: str, *, lower_order_final: bool = True,
              sigmas: Any = None, final_sigma: float = 0.0, prediction: str = prediction,
              solver_type: str = "midpoint", **grid_kw: Any) -> Plan:
        n = _n_steps(nfe, "none", sigmas)
        if sigmas is None and not final_sigma and nfe == 3 and prediction == "noise":  # one 2S block 80 -> 0.002
            g = _low_nfe_grid(n, sigma_min, sigma_max, grid, **grid_kw)
        else:
            g = _grid(n, sigma_min, sigma_max, grid, sigmas, final_sigma, **grid_kw)
        blocks = _blocks(_order_list(order, n, lower_order_final, g[-1] == 0))
        relax = "dpm_solver_2" if solver_type == "midpoint" else "none"
        sig, steps, j = [float(g[0])], [], 0
        for b in blocks:
            s, t = float(g[j]), float(g[j + b])
            ratios = tuple(math.log(s / float(g[j + q])) / math.log(s / t) for q in range(1, b))
            if b == 1:
                steps.append(Step(order=1, prediction=prediction))
            elif b == 2:
                steps.append(Step(order=2, prediction=prediction, ratios=ratios, relaxation=relax))
            else:  # DPM-Solver-3: u2 by a 2nd-order step, final 2nd-order Taylor from u2 alone (r2 makes it 3rd)
                steps.append(Step(order=2 if relax != "none" else 3, prediction=prediction, ratios=ratios,
                                  points=(2,) if relax != "none" else None, inner_relaxation=relax))
            sig.append(t)
            j += b
        return Plan(torch.tensor(sig, dtype=torch.float64), tuple(steps), name=name, order=order)

    return build


def _order_list(k: int, n: int, lower_order_final: bool, final_zero: bool) -> list[int]:
    """diffusers DPMSolverSinglestepScheduler.get_order_list (uneven n forces lower_order_final there too)."""
    if lower_order_final or n % k:
        full, rest = divmod(n, k)
        tail = [*range(1, k)] + [1] if rest == 0 else [*range(1, rest + 1)]
        orders = [*range(1, k + 1)] * (full - (rest == 0)) + tail
        orders = orders if k > 1 else [1] * n
    else:
        orders = [*range(1, k + 1)] * (n // k)
    if final_zero:
        orders[-1] = 1
    return orders


def _blocks(orders: list[int]) -> list[int]:
    """[1, 2, 3, 1, 2, 1] -> [3, 2, 1]: each run 1..b is one singlestep block of b grid intervals."""
    out: list[int] = []
    for o in orders:
        if o == 1:
            out.append(1)
        else:
            out[-1] += 1
    return out


def ddim(nfe: int, sigma_min: float, sigma_max: float, grid: str, *, sigmas: Any = None, afs: str = "none",
         final_sigma: float = 0.0, prediction: str = "data", **grid_kw: Any) -> Plan:
    """DDIM (Song et al. 2021, Eq. 12) = first-order DPM-Solver(++) in lambda."""
    sig = _grid(_n_steps(nfe, afs, sigmas), sigma_min, sigma_max, grid, sigmas, final_sigma, **grid_kw)
    return Plan(sig, tuple(Step(prediction=prediction) for _ in range(len(sig) - 1)), afs=afs, name="ddim", order=1)


def euler(nfe: int, sigma_min: float, sigma_max: float, grid: str, *, sigmas: Any = None, afs: str = "none",
          final_sigma: float = 0.0, **grid_kw: Any) -> Plan:
    """Euler on dx/dsigma = eps (Karras et al. 2022, Alg. 1 without the 2nd-order correction)."""
    sig = _grid(_n_steps(nfe, afs, sigmas), sigma_min, sigma_max, grid, sigmas, final_sigma, **grid_kw)
    st = Step(prediction="noise", variable="sigma")
    return Plan(sig, tuple(st for _ in range(len(sig) - 1)), afs=afs, name="euler", order=1)


def heun(nfe: int, sigma_min: float, sigma_max: float, grid: str, *, sigmas: Any = None,
         final_sigma: float = 0.0, **grid_kw: Any) -> Plan:
    """EDM Heun (Karras et al. 2022, Alg. 1): N = ceil((nfe+1)/2) steps, the first nfe-N are Heun, the rest Euler.

    Odd nfe = 2N-1 is EDM exactly (only the step to sigma=0 is Euler); even nfe adds one more Euler step. At
    nfe <= 4 the grid omits sigma_min (`_low_nfe_grid`): the step to 0 starts from the grid's last interior point.
    """
    n = (nfe + 2) // 2 if sigmas is None else len(_explicit(sigmas)) - 1
    k = nfe - n
    if not 0 <= k <= n - bool(sigmas is None or _explicit(sigmas)[-1] == 0):
        raise ValueError(f"heun with {n} steps cannot spend nfe={nfe}; use nfe in [{n}, {2 * n - 1}]")
    if sigmas is None and not final_sigma and nfe <= HEUN_LOW_NFE:
        sig = _low_nfe_grid(n, sigma_min, sigma_max, grid, **grid_kw)
    else:
        sig = _grid(n, sigma_min, sigma_max, grid, sigmas, final_sigma, **grid_kw)
    e = Step(prediction="noise", variable="sigma")
    h = Step(order=2, prediction="noise", variable="sigma", ratios=(1.0,))
    return Plan(sig, tuple(h if i < k else e for i in range(n)), name="heun", order=2)


def ipndm(nfe: int, sigma_min: float, sigma_max: float, grid: str, *, order: int = 4,
          lower_order_final: bool = False, sigmas: Any = None, afs: str = "none", final_sigma: float = 0.0,
          **grid_kw: Any) -> Plan:
    """iPNDM (Zhang & Chen 2023, Eq. 9): Adams-Bashforth in sigma with equal-spacing coefficients, order <= 4.

    lower_order_final defaults to False as in zju-pi/diff-sampler (a polynomial in sigma may end on 0).
    """
    n = _n_steps(nfe, afs, sigmas)
    sig = _grid(n, sigma_min, sigma_max, grid, sigmas, final_sigma, **grid_kw)
    orders = _multistep(order, n, lower_order_final)
    steps = tuple(Step(order=p, prediction="noise", variable="sigma", uniform=True) for p in orders)
    return Plan(sig, steps, afs=afs, name="ipndm", order=order)


def ipndm_v(nfe: int, sigma_min: float, sigma_max: float, grid: str, *, order: int = 4, sigmas: Any = None,
            afs: str = "none", final_sigma: float = 0.0, **grid_kw: Any) -> Plan:
    """Variable-step iPNDM (zju-pi/diff-sampler's iPNDM_v, k-diffusion sample_ipndm_v): Adams-Bashforth in sigma with
    the exact coefficients of the actual unequal steps (the polynomial through the last `order` eps, integrated), so
    it keeps its order on any grid; the step to sigma = 0 is x0 = D, as there."""
    n = _n_steps(nfe, afs, sigmas)
    sig = _grid(n, sigma_min, sigma_max, grid, sigmas, final_sigma, **grid_kw)
    steps = [Step(order=p, prediction="noise", variable="sigma") for p in _multistep(order, n, False)]
    if sig[-1] == 0:
        steps[-1] = Step(order=1)
    return Plan(sig, tuple(steps), afs=afs, name="ipndm_v", order=order)


def euler_ancestral(nfe: int, sigma_min: float, sigma_max: float, grid: str, *, eta: float = 1.0,
                    s_noise: float = 1.0, sigmas: Any = None, final_sigma: float = 0.0, **grid_kw: Any) -> Plan:
    """Euler ancestral (k-diffusion sample_euler_ancestral, diffusers EulerAncestralDiscreteScheduler): an Euler step
    to sigma_down, then fresh noise sigma_up (Ho et al. 2020's ancestral sampling at eta = 1)."""
    sig = _grid(_n_steps(nfe, "none", sigmas), sigma_min, sigma_max, grid, sigmas, final_sigma, **grid_kw)
    st = Step(prediction="noise", variable="sigma", noise="ancestral", eta=eta, s_noise=s_noise)
    return Plan(sig, tuple(st for _ in range(len(sig) - 1)), name="euler_ancestral", order=1)


def dpm_solver_pp_2m_sde(nfe: int, sigma_min: float, sigma_max: float, grid: str, *, eta: float = 1.0,
                         s_noise: float = 1.0, **options: Any) -> Plan:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b; diffusers algorithm_type="sde-dpmsolver++", k-diffusion
    sample_dpmpp_2m_sde with eta): DPM-Solver++(2M)'s decisions with the SDE's step and noise (stochastic.py)."""
    plan = REGISTRY["dpm_solver_pp_2m"](nfe, sigma_min, sigma_max, grid, **options)
    if any(st.prediction != "data" for st in plan.steps):
        raise ValueError("SDE-DPM-Solver++ is a data-prediction solver; drop prediction='noise'")
    steps = tuple(replace(st, noise="sde", eta=eta, s_noise=s_noise) for st in plan.steps)
    return Plan(plan.sigmas, steps, afs=plan.afs, name="dpm_solver_pp_2m_sde", order=plan.order)


def consistency(nfe: int, sigma_min: float, sigma_max: float, grid: str, *, gamma: float = 1.0,
                boundary: float | None = None, sigmas: Any = None, downs: Any = None, **grid_kw: Any) -> Plan:
    """Consistency-model multistep sampling (Song et al. 2023, Alg. 1: gamma = 1) and TCD's gamma (Zheng et al. 2024):
    D at nfe sigmas, each output taken to (1 - gamma) t (or `downs`) and re-noised to the next t. `boundary`: the
    noise level of the model's output [sigma_min, CM's eps; 0 for LCM]. Default sigmas: the grid without sigma_min."""
    if sigmas is None:
        sig = _low_nfe_grid(nfe, sigma_min, sigma_max, grid, **grid_kw)
    else:
        sig = _explicit(sigmas)
        if len(sig) - 1 != nfe:
            raise ValueError(f"the given sigmas have {len(sig) - 1} steps but nfe={nfe} needs {nfe}")
    d = [None] * nfe if downs is None else [float(v) for v in downs]
    if len(d) != nfe:
        raise ValueError(f"downs needs one target sigma per step ({nfe}), got {len(d)}")
    b = float(sigma_min if boundary is None else boundary)
    steps = [Step(noise="renoise", eta=gamma, down=d[i], boundary=b) for i in range(nfe)]
    if sig[-1] == 0 and d[-1] is None:
        steps[-1] = Step()  # the last output is the sample
    return Plan(sig, tuple(steps), name="consistency", order=1)


REGISTRY: dict[str, Callable[..., Plan]] = {
    "euler": euler,
    "heun": heun,
    "ddim": ddim,
    "dpm_solver_2s": singlestep("dpm_solver_2s", 2, "noise"),
    "dpm_solver_3s": singlestep("dpm_solver_3s", 3, "noise"),
    "dpm_solver_pp_2s": singlestep("dpm_solver_pp_2s", 2, "data"),
    "dpm_solver_pp_3s": singlestep("dpm_solver_pp_3s", 3, "data"),
    "dpm_solver_pp_2m": multistep("dpm_solver_pp_2m", 2, "dpm_solver_2"),
    "dpm_solver_pp_3m": multistep("dpm_solver_pp_3m", 3, "dpm_solver_2"),
    "unipc_bh1": multistep("unipc_bh1", 2, corrector=True, bh="bh1"),
    "unipc_bh2": multistep("unipc_bh2", 2, corrector=True, bh="bh2"),
    "deis_3": multistep("deis_3", 3),
    "ipndm": ipndm,
    "ipndm_v": ipndm_v,
}
STOCHASTIC: dict[str, Callable[..., Plan]] = {
    "euler_ancestral": euler_ancestral,
    "dpm_solver_pp_2m_sde": dpm_solver_pp_2m_sde,
    "consistency": consistency,
}
DEFAULTS: dict[str, dict[str, Any]] = {"deis_3": {"prediction": "noise"}}
CHURN = ("S_churn", "S_tmin", "S_tmax", "S_noise")


def names(stochastic: bool = False) -> list[str]:
    """Registered plan constructor names: the ODE solvers, or (stochastic=True) those that draw noise."""
    return sorted(STOCHASTIC if stochastic else REGISTRY)


def get(name: str, nfe: int = 10, sigma_min: float = 0.002, sigma_max: float = 80.0, grid: str = "logsnr",
        **options: Any) -> Plan:
    """Build the named classic solver as a Plan spending exactly `nfe` denoiser evaluations (S_churn etc.: with EDM's
    churn, `stochastic.with_churn`)."""
    build = REGISTRY.get(name) or STOCHASTIC.get(name)
    if build is None:
        raise KeyError(f"unknown plan {name!r}; known: {', '.join(names())}; stochastic: {', '.join(names(True))}")
    _check_nfe(nfe)
    churn = {k: float(options.pop(k)) for k in CHURN if k in options}
    plan = build(nfe, float(sigma_min), float(sigma_max), grid, **{**DEFAULTS.get(name, {}), **options})
    if churn:
        plan = with_churn(plan, churn.pop("S_churn", 0.0), **churn)
    if plan.nfe != nfe:  # a constructor bug, never a user error
        raise AssertionError(f"{name} built a plan with nfe={plan.nfe}, asked {nfe}")
    return plan

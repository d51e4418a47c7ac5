"""Cheap, batched plan scores for the S^3 search (Liu et al. 2024, Sec. 4.1): all candidates run from the same noise.

"rms": per-sample RMS errors against a high-accuracy reference from the same x_T (computed once, cached), reduced
by an objective: "mean" (the mean error), "rmse" (root of the mean squared error) or "cvar" (mean + CVaR_0.95, the
mean of the worst 5%; Rockafellar & Uryasev 2000); the last two see the few samples a plan breaks.
"fd": Frechet distance (Heusel et al. 2017, Eq. 6) on the data set classifier's features between the plan's
small sample and the real data (fewstep.metrics.frechet) - the proxy of the released USF code (1k-sample FID).
Under torch.distributed the plans of a population are scored round-robin over the ranks (`spread`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..denoiser import check_denoiser
from ..seed import noise
from . import dist

METRICS = ("rms", "fd")
OBJECTIVES = ("mean", "rmse", "cvar")
CVAR_LEVEL = 0.95
REFERENCES = ("auto", "ode", "plan")
REF_PLAN = ("dpm_solver_pp_3m", 200)  # the many-step high-order reference for neural teachers


def _is_analytic(den: Any) -> bool:
    """An exact (mixture) denoiser, also under the CFG wrapper: its reference is the DOP853 solve."""
    from ..analytic import GaussianMixture
    from ..guidance import CFG

    return isinstance(den.den if isinstance(den, CFG) else den, GaussianMixture)


@torch.no_grad()
def reference(den: Any, x_T: Tensor, sigma_max: float, cond: Any = None, kind: str = "auto",
              batch: int = 256, distributed: bool = False) -> Tensor:
    """The target x_0 of the PF-ODE from x_T: scipy DOP853 (`fs.reference_solve`) for analytic denoisers, else a
    many-step third-order plan (DPM-Solver++(3M), 200 logSNR steps); `kind` forces one ('ode' | 'plan').
    Solved in chunks of `batch` samples; distributed=True shares the chunks among the ranks (same result)."""
    if kind not in REFERENCES:
        raise ValueError(f"unknown reference {kind!r}; use one of {', '.join(REFERENCES)}")
    if kind == "auto":
        kind = "ode" if _is_analytic(den) else "plan"
    from ..reference import reference_solve
    from ..solvers import constructors
    from ..solvers.engine import sample

    name, steps = REF_PLAN
    plan = constructors.get(name, nfe=steps, sigma_min=float(den.sigma_min), sigma_max=sigma_max) \
        if kind == "plan" else None

    def chunk(k: int) -> Tensor:
        xs, c = x_T[k:k + batch], _slice(cond, k, batch, len(x_T))
        return reference_solve(den, xs, sigma_max, 0.0, cond=c) if plan is None else sample(den, xs, plan, cond=c)

    starts = list(range(0, x_T.shape[0], batch))
    if not distributed:
        return torch.cat([chunk(k) for k in starts])
    _, parts = dist.spread(lambda k: chunk(k).cpu(), starts)
    return torch.cat(parts).to(x_T.device)


def _slice(cond: Any, k: int, n: int, total: int) -> Any:
    """Samples k..k+n of a per-sample cond (a tensor with one row per sample, or a dict of them); else cond."""
    if isinstance(cond, dict):
        return {key: _slice(v, k, n, total) for key, v in cond.items()}
    return cond[k:k + n] if torch.is_tensor(cond) and cond.ndim > 0 and len(cond) == total else cond


def reduce(err: Tensor, objective: str = "mean") -> Tensor:
    """The objective of per-sample errors err [..., n] over the last dim: mean, root mean square, or mean + CVaR
    (mean of the ceil(5% n) largest errors, the discrete CVaR_0.95); inf where any error is not finite."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
    err = err.double()
    if objective == "mean":
        out = err.mean(-1)
    elif objective == "rmse":
        out = err.pow(2).mean(-1).sqrt()
    else:
        k = max(1, math.ceil((1 - CVAR_LEVEL) * err.shape[-1] - 1e-9))
        out = err.mean(-1) + err.nan_to_num(math.inf).topk(k, -1).values.mean(-1)
    return torch.where(torch.isfinite(err).all(-1), out, torch.full_like(out, math.inf))


def rms(x: Tensor, ref: Tensor) -> float:
    """Mean per-sample RMS error (fewstep.metrics.trajectory.rms); inf for non-finite output."""
    from ..metrics.trajectory import rms as per_sample

    if not torch.isfinite(x).all():
        return math.inf
    return float(per_sample(x, ref).mean())


class _FirstCall:
    """Wrap a denoiser so D(x_T, sigma_max), identical for every plan without AFS, is computed once."""

    def __init__(self, den: Any, x_T: Tensor, sigma_max: float, cond: Any) -> None:
        self.den, self.x_T, self.sigma_max, self.cond = den, x_T, sigma_max, cond
        self.sigma_min, self.cached = den.sigma_min, None
        for k in ("shape",):
            if hasattr(den, k):
                setattr(self, k, getattr(den, k))

    def __call__(self, x: Tensor, sigma: Any, cond: Any = None) -> Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float64)
        hit = (x.shape == self.x_T.shape and cond is self.cond
               and bool(((s - self.sigma_max).abs() <= 1e-6 * self.sigma_max).all())
               and torch.equal(x, self.x_T))
        if hit and self.cached is not None:
            return self.cached.clone()
        out = self.den(x, sigma, cond)
        if hit:
            self.cached = out.detach().clone()
        return out


class Scorer:
    """Scores plans on a fixed noise batch: lower is better, inf for plans that diverge.

    objective (metric "rms"): how the per-sample errors reduce to one score (`reduce`); distributed=True computes
    the reference and `evaluate`s populations over the ranks of the process group."""

    def __init__(self, den: Any, shape: Sequence[int], n_samples: int = 128, seed: int = 0,
                 sigma_max: float = 80.0, metric: str = "rms", cond: Any = None, ref: Tensor | None = None,
                 reference_kind: str = "auto", dataset: str | None = None, device: Any = "cpu",
                 objective: str = "mean", distributed: bool = False) -> None:
        check_denoiser(den)
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
        if metric == "fd" and dataset is None:
            raise ValueError("metric 'fd' needs the data set the model was trained on (dataset='digits') for its "
                             "classifier features and real-data statistics; or use metric='rms'")
        if not isinstance(n_samples, int) or n_samples < 2:
            raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
        self.den, self.shape, self.metric, self.cond = den, tuple(shape), metric, cond
        self.objective, self.distributed = objective, distributed
        self.sigma_max, self.dataset, self.n_evals = float(sigma_max), dataset, 0
        self.x_T = noise(n_samples, seed, self.shape, self.sigma_max, str(device))
        if ref is not None and tuple(ref.shape) != tuple(self.x_T.shape):
            raise ValueError(f"cached reference has shape {tuple(ref.shape)}, expected {tuple(self.x_T.shape)}"
                             "; delete the state file or use the same n_samples and shape")
        self._ref, self._reference_kind = ref, reference_kind
        if metric == "rms":
            self.ref  # noqa: B018 - the rms metric needs it at once; fd computes it only if asked (bench, RMS)
        if metric == "fd":
            from ..metrics import frechet

            self._data_stats = frechet.reference_stats(dataset)
        self._den = _FirstCall(den, self.x_T, self.sigma_max, cond)

    @property
    def ref(self) -> Tensor:
        """The high-accuracy reference x_0 from this scorer's noise (computed on first use, then cached)."""
        if self._ref is None:
            self._ref = reference(self.den, self.x_T, self.sigma_max, self.cond, self._reference_kind,
                                  distributed=self.distributed)
        return self._ref

    def cached_ref(self) -> Tensor | None:
        """The reference if it was computed (what a search state saves), else None."""
        return self._ref

    @torch.no_grad()
    def run(self, plan: Any) -> Tensor:
        """The plan's samples from this scorer's noise."""
        from ..solvers.engine import sample

        return sample(self._den, self.x_T, plan, cond=self.cond)

    def _samples(self, plan: Any) -> Tensor | None:
        self.n_evals += 1
        try:
            return self.run(plan)
        except (FloatingPointError, RuntimeError, torch.linalg.LinAlgError):
            return None

    def __call__(self, plan: Any) -> float:
        x = self._samples(plan)
        return math.inf if x is None else self.score(x)

    def errors(self, x: Tensor) -> Tensor:
        """Per-sample RMS errors [n] (float64, CPU) of samples x against the reference; inf where not finite."""
        from ..metrics.trajectory import rms as per_sample

        err = per_sample(x, self.ref).cpu()
        return torch.where(torch.isfinite(err), err, torch.full_like(err, math.inf))

    def score(self, x: Tensor, metric: str | None = None) -> float:
        """The metric (this scorer's by default) of samples x drawn from this scorer's noise; "rms" is reduced
        by this scorer's objective."""
        metric = metric or self.metric
        if metric == "rms":
            if not torch.isfinite(x).all():
                return math.inf
            return float(reduce(self.errors(x), self.objective))
        if not torch.isfinite(x).all():
            return math.inf
        from ..metrics import frechet

        stats = getattr(self, "_data_stats", None) or frechet.reference_stats(self.dataset)
        return frechet.fd_between(frechet.stats_of(frechet.features(x, self.dataset)), stats)

    # -- per-sample evidence, for the validation test ------------------------------------------------------------
    def evidence(self, plan: Any) -> Tensor | None:
        """What the paired bootstrap resamples: per-sample errors [n] ("rms") or classifier features [n, d]
        ("fd"), on the CPU in float64; None for a plan that fails or leaves non-finite samples."""
        x = self._samples(plan)
        if x is None or not torch.isfinite(x).all():
            return None
        if self.metric == "rms":
            return self.errors(x)
        from ..metrics import frechet

        return frechet.features(x, self.dataset).double().cpu()

    def value(self, ev: Tensor | None) -> float:
        """The score of a plan from its evidence (what `__call__` returns on this noise); inf for None."""
        if ev is None:
            return math.inf
        if self.metric == "rms":
            return float(reduce(ev, self.objective))
        from ..metrics import frechet

        return frechet.fd_between(frechet.stats_of(ev), self._data_stats)

    def ratio_bound(self, ev_a: Tensor | None, ev_b: Tensor | None, q: float, n_boot: int = 2000,
                    seed: int = 0) -> float:
        """The q-quantile of score(a) / score(b) over paired bootstrap resamples of the samples (row k of both came
        from the same noise, Efron & Tibshirani 1993, Ch. 13): below 1 means a beats b at confidence ~q."""
        if ev_a is None:
            return math.inf
        if ev_b is None:
            return 0.0
        if self.metric == "fd":
            from ..metrics import frechet

            return frechet.paired_bootstrap_ratio(ev_a, ev_b, self._data_stats, n_boot, seed, (1 - q, q))[1]
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(len(ev_a), (n_boot, len(ev_a)), generator=g)
        ra = reduce(ev_a[idx], self.objective) / reduce(ev_b[idx], self.objective)
        return float(torch.quantile(ra, q))

    def evaluate(self, plans: Sequence[Any], workers: int = 1) -> list[float]:
        """Score a population; workers > 1 splits it over spawned processes (each with one torch thread); a
        distributed scorer splits it over the ranks (every rank scores rank 0's plans, see search.dist)."""
        if self.distributed:
            _, out = dist.spread(self, plans)
            return out
        if workers <= 1 or len(plans) < 2:
            return [self(p) for p in plans]
        import concurrent.futures as cf
        import multiprocessing as mp

        chunks = [list(plans[i::workers]) for i in range(workers)]
        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            parts = list(ex.map(_score_chunk, [(self, c) for c in chunks]))
        self.n_evals += len(plans)
        out = [0.0] * len(plans)
        for i, part in enumerate(parts):
            out[i::workers] = part
        return out

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_den"] = None
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)
        self._den = _FirstCall(self.den, self.x_T, self.sigma_max, self.cond)


def _score_chunk(args: tuple[Scorer, list[Any]]) -> list[float]:
    torch.set_num_threads(1)
    scorer, plans = args
    return [scorer(p) for p in plans]

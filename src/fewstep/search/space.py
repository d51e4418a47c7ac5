"""The USF search space over `fs.Plan` (Liu et al. 2024, Sec. 3-4): timesteps (final sigma searched), and per step
prediction type, order, start point (multistep lags vs singlestep ratios), derivative estimate (points,
relaxation and its coefficient), UniC corrector; plus the analytical first step. Every candidate spends
exactly `nfe` denoiser evaluations. Mutation rates follow the released USF `configs/evo_search.yml`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..errors import PlanError
from ..solvers import constructors
from ..solvers.plan import AFS, RELAXATIONS, Plan, Step

GRIDS = ("logsnr", "karras", "uniform_t", "quadratic_t")
ORDERS = {1: 0.2, 2: 0.4, 3: 0.3, 4: 0.1}  # USF evo_search.yml
STEP_RELAX = {"none": 0.4, "dpm_solver_2": 0.1, "bh1": 0.1, "bh2": 0.1, "linear": 0.3}
MIN_GAP = 0.01  # smallest log-sigma gap between grid points
N_FEATURES = 39


def _pick(rng: random.Random, probs: dict) -> object:
    return rng.choices(list(probs), weights=list(probs.values()))[0]


@dataclass
class Space:
    """Plans with exactly `nfe` evaluations on [sigma_min, sigma_max]; final sigma searched in
    [sigma_min, end_factor * sigma_min]; afs "mean" only when `afs_mean` (the data mean) is known."""

    nfe: int
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    end_factor: float = 20.0
    afs_mean: Tensor | None = None
    p_jitter: float = 0.3
    jitter: float = 0.03
    p_decision: float = 0.15
    p_structure: float = 0.2

    def __post_init__(self) -> None:
        if not isinstance(self.nfe, int) or isinstance(self.nfe, bool) or self.nfe < 1:
            raise ValueError(f"nfe must be a positive integer, got {self.nfe!r}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        self.span = math.log(self.sigma_max / self.sigma_min)
        self.end_hi = min(self.sigma_min * self.end_factor, math.sqrt(self.sigma_min * self.sigma_max))

    # -- the hand-made starting population -------------------------------------------------------------------
    def baselines(self) -> list[Plan]:
        """Every classic constructor x every grid that spends exactly nfe (USF's empirical decisions)."""
        out: list[Plan] = []
        seen: list = []
        for name in constructors.names():
            for grid in GRIDS:
                try:
                    p = constructors.get(name, self.nfe, self.sigma_min, self.sigma_max, grid)
                except (PlanError, ValueError):
                    continue
                key = (p.sigmas.tolist(), p.steps, p.afs)
                if key not in seen:
                    seen.append(key)
                    out.append(replace_name(p, f"{name}/{grid}"))
        return out

    # -- random candidates ------------------------------------------------------------------------------------
    def random(self, rng: random.Random) -> Plan:
        """A random plan: random grid family, AFS, singlestep extras and per-step decisions."""
        afs = "none" if self.nfe < 2 else _pick(rng, self._afs_probs())
        extra = 0 if rng.random() < 0.6 or self.nfe < 3 else rng.randint(1, min(2, self.nfe - 2))
        n = self.nfe + (afs != "none") - extra
        sig = self._random_grid(n, rng)
        ratios = [()] * n
        for _ in range(extra):
            j = rng.randrange(max(n - 1, 1))
            ratios[j] = tuple(sorted({*ratios[j], self._random_ratio(rng, ratios[j])}))[:3]
        steps = [self._random_step(rng, ratios[i]) for i in range(n)]
        return self.build(sig, steps, afs, rng)

    def _afs_probs(self) -> dict[str, float]:
        return {"none": 0.3, "zero": 0.3, "mean": 0.4} if self.afs_mean is not None else {"none": 0.5, "zero": 0.5}

    def _random_ratio(self, rng: random.Random, have: tuple[float, ...]) -> float:
        r = rng.choice([0.5, 1 / 3, 2 / 3, 1.0, round(rng.uniform(0.2, 1.0), 3)])
        return r if r not in have else round(rng.uniform(0.1, 0.95), 3)

    def _random_grid(self, n: int, rng: random.Random) -> Tensor:
        end = self.sigma_min if rng.random() < 0.5 else math.exp(rng.uniform(math.log(self.sigma_min),
                                                                               math.log(self.end_hi)))
        if n == 1:
            return torch.tensor([self.sigma_max, 0.0], dtype=torch.float64)
        lo, hi = math.log(end), math.log(self.sigma_max)
        if rng.random() < 0.5:  # Karras rho family (EDM Eq. 5)
            rho = rng.uniform(2.0, 10.0)
            a, b = self.sigma_max ** (1 / rho), end ** (1 / rho)
            s = [(a + i / (n - 1) * (b - a)) ** rho for i in range(n)]
        else:  # power law in log sigma: logSNR (p = 1), quadratic front/back (USF get_random_timesteps)
            p = rng.uniform(0.5, 2.0)
            s = [math.exp(hi + (i / (n - 1)) ** p * (lo - hi)) for i in range(n)]
        return self._repair_grid([math.log(v) for v in s])

    def _random_step(self, rng: random.Random, ratios: tuple[float, ...]) -> Step:
        variable = "sigma" if rng.random() < 0.1 else "lambda"
        relax = _pick(rng, STEP_RELAX) if variable == "lambda" else rng.choice(["none", "linear"])
        corr_relax = rng.choice(["none", "bh1", "bh2"]) if variable == "lambda" else "none"
        return Step(
            order=_pick(rng, ORDERS), prediction="noise" if variable == "sigma" or rng.random() < 0.5 else "data",
            variable=variable, ratios=ratios, points=None, uniform=variable == "sigma" and rng.random() < 0.5,
            relaxation=relax, coef=round(rng.gauss(0.0, 0.1), 4) if relax == "linear" else 0.0,
            second_scale=1.0 if rng.random() < 0.8 else round(rng.uniform(0.3, 1.2), 3),
            inner_relaxation=rng.choice(["none", "dpm_solver_2", "bh2"]) if variable == "lambda" else "none",
            corrector="unic" if rng.random() < 0.5 else "none", corrector_relaxation=corr_relax)

    # -- validity ------------------------------------------------------------------------------------------------
    def _repair_grid(self, logs: list[float]) -> Tensor:
        """Sorted, strictly decreasing log-sigmas from log sigma_max, final one in [sigma_min, end_hi]; + a 0."""
        n = len(logs)
        hi = math.log(self.sigma_max)
        v = sorted(logs[1:], reverse=True)
        if v:
            v[-1] = min(max(v[-1], math.log(self.sigma_min)), math.log(self.end_hi))
            top = hi - MIN_GAP
            for i in range(len(v) - 1):
                v[i] = min(max(v[i], v[-1] + MIN_GAP * (len(v) - 1 - i)), top - MIN_GAP * i)
            for i in range(1, len(v)):
                v[i] = min(v[i], v[i - 1] - MIN_GAP)
            if v[-1] < math.log(self.sigma_min) - 1e-12:  # too many points for the range: fall back to logSNR
                v = [hi + (i + 1) / (n - 1) * (math.log(self.sigma_min) - hi) for i in range(n - 1)]
        s = [self.sigma_max] + [math.exp(x) for x in v] + [0.0]
        return torch.tensor(s, dtype=torch.float64)

    def legalise(self, i: int, st: Step, to_zero: bool, last: bool) -> Step:
        """Clamp a step's decisions to what the engine accepts at position i (Plan validation rules)."""
        if st.variable == "sigma":
            st = replace(st, prediction="noise",
                         relaxation=st.relaxation if st.relaxation in ("none", "linear") else "none",
                         inner_relaxation=st.inner_relaxation if st.inner_relaxation in ("none", "linear") else "none",
                         corrector_relaxation=st.corrector_relaxation
                         if st.corrector_relaxation in ("none", "linear") else "none")
        ratios = st.ratios
        if to_zero and (st.variable == "lambda" or (ratios and ratios[-1] >= 1.0)):
            ratios = ()
        avail = len(ratios) if ratios else i
        order = max(1, min(st.order, avail + 1, 4))
        if to_zero and st.variable == "lambda":
            order = 1
        pts = st.points
        if pts is not None:
            pts = tuple(p for p in pts if 1 <= p <= avail)
            if len(pts) < order - 1 or not pts or order == 1:
                pts = None
        # UniC adds the next evaluation as a node: with an intermediate at ratio 1 the Taylor system is singular
        corrector = "none" if last or (ratios and ratios[-1] >= 1.0) else st.corrector
        relax = st.relaxation if order > 1 else "none"  # canonical form: drop decisions that have no effect
        return replace(st, ratios=ratios, order=order, points=pts, uniform=st.uniform and not ratios and order > 1,
                       corrector=corrector, relaxation=relax, coef=st.coef if relax == "linear" else 0.0,
                       second_scale=st.second_scale if order > 2 else 1.0,
                       inner_relaxation=st.inner_relaxation if len(ratios) > 1 else "none",
                       corrector_relaxation=st.corrector_relaxation if corrector != "none" else "none")

    def build(self, sigmas: Tensor, steps: list[Step], afs: str, rng: random.Random | None = None) -> Plan:
        """Legalise every step, fill the budget with extra steps if short, and validate (PlanError if not)."""
        sig, steps = sigmas.clone(), list(steps)
        if afs == "mean" and self.afs_mean is None:
            afs = "zero"
        for _ in range(4 * self.nfe + 8):
            n = len(steps)
            steps = [self.legalise(i, st, float(sig[i + 1]) == 0.0, i == n - 1) for i, st in enumerate(steps)]
            nfe = n + sum(len(st.ratios) for st in steps) - (afs != "none")
            if nfe == self.nfe:
                break
            # legalisation or a merge changed the evaluations: add or remove grid steps until they match
            sig, steps = _split(sig, steps, rng) if nfe < self.nfe else _merge(sig, steps, rng)
        else:
            raise PlanError(f"could not fit the candidate into nfe={self.nfe}")
        return Plan(sig, tuple(steps), afs=afs, afs_mean=self.afs_mean if afs == "mean" else None, name="searched")

    # -- variation ---------------------------------------------------------------------------------------------
    def mutate(self, plan: Plan, rng: random.Random) -> Plan:
        """USF mutation: timestep jitter (p=0.3, sd 0.03 of the log range), per-step decision resampling, and
        structural moves that keep the NFE (toggle AFS with a step split/merge, singlestep <-> two steps)."""
        for _ in range(20):
            try:
                child = self._mutate_once(plan, rng)
            except PlanError:
                continue
            if child != plan:
                return child
        return self.random(rng)

    def _mutate_once(self, plan: Plan, rng: random.Random) -> Plan:
        sig, steps, afs = plan.sigmas.clone(), list(plan.steps), plan.afs
        logs = [math.log(v) for v in sig[:-1].tolist()]
        for i in range(1, len(logs)):
            if rng.random() < self.p_jitter:
                logs[i] += rng.gauss(0.0, self.jitter * self.span)
        if len(logs) > 1:
            sig = self._repair_grid(logs)
        for i, st in enumerate(steps):
            if rng.random() < self.p_decision:
                steps[i] = self._mutate_step(st, rng)
        if rng.random() < self.p_structure:
            sig, steps, afs = self._restructure(sig, steps, afs, rng)
        return self.build(sig, steps, afs, rng)

    def _mutate_step(self, st: Step, rng: random.Random) -> Step:
        fresh = self._random_step(rng, st.ratios)
        key = rng.choice(["order", "prediction", "points", "relaxation", "coef", "corrector", "variable",
                          "ratios", "second_scale"])
        if key == "points":
            n = rng.randint(max(st.order - 1, 1), max(st.order - 1, 1) + 1)
            return replace(st, points=None if rng.random() < 0.3 else tuple(sorted(rng.sample(range(1, 5), n))))
        if key == "coef":
            return replace(st, relaxation="linear", coef=round(st.coef + rng.gauss(0.0, 0.05), 4))
        if key == "ratios" and st.ratios:
            return replace(st, ratios=tuple(sorted(min(1.0, max(0.05, r + rng.gauss(0, 0.1))) for r in st.ratios)))
        if key == "variable":
            return replace(fresh, order=st.order, ratios=st.ratios)
        if key == "relaxation":
            return replace(st, relaxation=fresh.relaxation, coef=fresh.coef)
        if key == "corrector":
            return replace(st, corrector=fresh.corrector, corrector_relaxation=fresh.corrector_relaxation)
        return replace(st, **{key: getattr(fresh, key)}) if key != "ratios" else st

    def _restructure(self, sig: Tensor, steps: list[Step], afs: str, rng: random.Random):
        move = rng.choice(["afs", "single", "multi"])
        if move == "afs" and self.nfe >= 2:
            new = rng.choice([a for a in self._afs_probs() if a != afs])
            if (new == "none") != (afs == "none"):
                sig, steps = _merge(sig, steps, rng) if new == "none" else _split(sig, steps, rng)
            return sig, steps, new
        singles = [i for i, st in enumerate(steps) if st.ratios]
        if move == "multi" and singles:  # drop a singlestep evaluation, spend it on one more grid step
            i = rng.choice(singles)
            steps[i] = replace(steps[i], ratios=steps[i].ratios[:-1], points=None)
            return (*_split(sig, steps, rng), afs)
        if len(steps) > 2:  # merge two steps into one singlestep step with an intermediate evaluation
            sig, steps = _merge(sig, steps, rng)
            cand = [i for i in range(len(steps) - 1) if len(steps[i].ratios) < 3]
            if cand:
                i = rng.choice(cand)
                steps[i] = replace(steps[i], ratios=tuple(sorted({*steps[i].ratios,
                                                                  self._random_ratio(rng, steps[i].ratios)})))
        return sig, steps, afs

    def crossover(self, a: Plan, b: Plan, rng: random.Random) -> Plan:
        """Uniform crossover of per-step decisions (parents of equal length; else a mutation of `a`)."""
        if len(a) != len(b) or a.afs != b.afs:
            return self.mutate(a, rng)
        sig = a.sigmas if rng.random() < 0.5 else b.sigmas
        steps = [(x if rng.random() < 0.5 else y) for x, y in zip(a.steps, b.steps, strict=True)]
        try:
            return self.build(sig, steps, a.afs, rng)
        except PlanError:
            return self.mutate(a, rng)

    # -- predictor features --------------------------------------------------------------------------------------
    def features(self, plan: Plan) -> Tensor:
        """[n_steps, N_FEATURES]: normalised log sigmas, one-hot decisions, coefficients (predictor input)."""
        rows = []
        sig = plan.sigmas.tolist()
        for i, st in enumerate(plan.steps):
            u_s = math.log(self.sigma_max / sig[i]) / self.span
            u_t = math.log(self.sigma_max / sig[i + 1]) / self.span if sig[i + 1] > 0 else 1.25
            r = [*st.ratios, 0.0, 0.0, 0.0][:3]
            lags = [0.0] * 4
            for p in st.used_points():
                lags[min(p, 4) - 1] = 1.0
            f = [u_s, u_t, float(sig[i + 1] == 0), u_t - u_s, *_onehot(st.order, (1, 2, 3, 4)),
                 float(st.prediction == "data"), float(st.variable == "sigma"), *r, len(st.ratios) / 3, *lags,
                 len(st.used_points()) / 4, float(st.uniform), *_onehot(st.relaxation, RELAXATIONS), st.coef,
                 st.second_scale - 1.0, *_onehot(st.inner_relaxation, RELAXATIONS)[1:],
                 float(st.corrector != "none"), *_onehot(st.corrector_relaxation, RELAXATIONS)[1:],
                 *_onehot(plan.afs, AFS)]
            rows.append(f)
        return torch.tensor(rows, dtype=torch.float32)


def _onehot(v: object, options: tuple) -> list[float]:
    return [float(v == o) for o in options]


def replace_name(plan: Plan, name: str) -> Plan:
    return Plan(plan.sigmas, plan.steps, afs=plan.afs, afs_mean=plan.afs_mean, name=name, order=plan.order)


def _split(sig: Tensor, steps: list[Step], rng: random.Random | None) -> tuple[Tensor, list[Step]]:
    """Insert a grid point at the geometric midpoint of the widest interval (never the final step to 0)."""
    s = sig.tolist()
    cand = [j for j in range(len(steps)) if s[j + 1] > 0] or [0]
    widths = [math.log(s[j] / s[j + 1]) if s[j + 1] > 0 else 0.0 for j in cand]
    j = cand[max(range(len(cand)), key=lambda k: widths[k])] if rng is None or rng.random() < 0.7 else rng.choice(cand)
    mid = math.sqrt(s[j] * s[j + 1]) if s[j + 1] > 0 else s[j] * 1e-3  # a one-step plan: a point below sigma_0
    s.insert(j + 1, mid)
    steps.insert(j + 1, replace(steps[j], ratios=(), points=None))
    return torch.tensor(s, dtype=torch.float64), steps


def _merge(sig: Tensor, steps: list[Step], rng: random.Random | None) -> tuple[Tensor, list[Step]]:
    """Remove one interior grid point (keeping sigma_max, the final sigma and 0): two steps become one."""
    s = sig.tolist()
    if len(steps) <= 1:
        raise PlanError("cannot remove a step from a one-step plan")
    cand = list(range(1, len(s) - 2)) or [len(s) - 2]
    j = rng.choice(cand) if rng is not None else cand[0]
    del s[j]
    del steps[j]
    return torch.tensor(s, dtype=torch.float64), steps

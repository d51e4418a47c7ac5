"""A solver plan: a sigma grid plus one decision per step (USF, Liu et al. 2024, Sec. 3; arXiv 2312.07243).

Step i goes from sigmas[i] to sigmas[i+1]. It evaluates D at its start (except step 0 under AFS), then
expands the prediction `m` (data: x0 = D; noise: eps = (x - D)/sigma) as a Taylor polynomial of `order`
in the variable tau (lambda = -log sigma: exponential integrator, Lu et al. 2022 Eq. 3.6; sigma: plain
polynomial, EDM/iPNDM) and integrates it exactly. Derivatives come from the Taylor (Vandermonde) system
through `points`: earlier grid evaluations (multistep, lag 1 = the previous grid point) or this step's
intermediate evaluations at `ratios` r of the step (singlestep). JSON (hand-writable; omitted keys take
these defaults):

    {"version": 1, "sigmas": [80, 2.5, 0.002, 0], "afs": "none",
     "defaults": {"prediction": "data"},                     # optional, merged into every step
     "steps": [{"order": 1}, {"order": 2, "relaxation": "bh2", "corrector": "unic"}, {"order": 1}]}

Step keys: order (1), prediction ("data" | "noise"), variable ("lambda" | "sigma"), ratios ([]),
points (null = lags 1..order-1, or all intermediates), uniform (false: nodes at -h, -2h... as in
Adams-Bashforth/iPNDM), relaxation ("none" | "dpm_solver_2" | "bh1" | "bh2" | "linear") with coef (0.0,
the c of (1 + c h)), second_scale (1.0), inner_relaxation ("none"), corrector ("none" | "unic"),
corrector_relaxation ("none"); stochastic keys (solvers/stochastic.py): noise ("none" | "ancestral" | "sde" |
"renoise") with eta (1.0), down (null), boundary (0.0), s_noise (1.0), churn (0.0, EDM's gamma_i). A grid that
increases from a positive sigma is an inversion plan (`Plan.inverted()`, deterministic steps only).
Plan keys: afs ("none" | "zero": x0(x_T) = 0 | "mean": x0(x_T) = afs_mean),
afs_mean (nested list), name, order (declared order, informational). Metadata: optional free-form JSON objects
under "search" (written by `fewstep search`: command, seed, budget, score) and/or "meta" (anything else) are
kept verbatim in `plan.metadata` ({"search": {...}, "meta": {...}}), written back by to_dict/to_json and ignored
by the engine and by plan equality.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor

from ..errors import PlanError

VERSION = 1
PREDICTIONS = ("data", "noise")
VARIABLES = ("lambda", "sigma")
RELAXATIONS = ("none", "dpm_solver_2", "bh1", "bh2", "linear")
CORRECTORS = ("none", "unic")
NOISES = ("none", "ancestral", "sde", "renoise")
AFS = ("none", "zero", "mean")
METADATA_KEYS = ("search", "meta")  # free-form blocks a plan file may carry; never read by the engine
MAX_SIGMA = torch.finfo(torch.float32).max
MAX_NFE = 10_000  # denoiser evaluations per sample beyond which a plan is a typo, not a sampler


@dataclass(frozen=True)
class Step:
    """One step's decisions (USF decision space: prediction, order, start point, derivatives, corrector)."""

    order: int = 1
    prediction: str = "data"
    variable: str = "lambda"
    ratios: tuple[float, ...] = ()
    points: tuple[int, ...] | None = None
    uniform: bool = False
    relaxation: str = "none"
    coef: float = 0.0
    second_scale: float = 1.0
    inner_relaxation: str = "none"
    corrector: str = "none"
    corrector_relaxation: str = "none"
    noise: str = "none"
    eta: float = 1.0
    down: float | None = None
    boundary: float = 0.0
    s_noise: float = 1.0
    churn: float = 0.0

    @property
    def singlestep(self) -> bool:
        return len(self.ratios) > 0

    @property
    def stochastic(self) -> bool:
        """Draws fresh noise: after its update (`noise`) or before its evaluation (`churn`)."""
        return self.noise != "none" or self.churn != 0

    def used_points(self) -> tuple[int, ...]:
        """Lags (multistep) or intermediate indices 1..m (singlestep) that feed the derivative estimate."""
        if self.points is not None:
            return tuple(self.points)
        return tuple(range(1, len(self.ratios) + 1)) if self.singlestep else tuple(range(1, self.order))

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that differ from the defaults (readable JSON)."""
        d, default = asdict(self), Step()
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items() if v != getattr(default, k)}


_STEP_FIELDS = {f.name for f in fields(Step)}


def _fail(i: int | None, name: str, msg: str) -> PlanError:
    where = f"step {i}: field {name!r}" if i is not None else f"plan field {name!r}"
    return PlanError(f"{where}: {msg}")


def _too_many(n: int) -> PlanError:
    return _fail(None, "steps", f"{n} steps/evaluations exceed the limit of {MAX_NFE} denoiser evaluations per "
                 "sample (fewstep.solvers.plan.MAX_NFE); use fewer steps")


def _check_step(i: int, st: Step, s: float, t: float, n_before: int) -> None:
    """Validate step i (from sigma s to t) given n_before earlier grid evaluations."""
    if not isinstance(st.order, int) or isinstance(st.order, bool) or not 1 <= st.order <= 4:
        raise _fail(i, "order", f"must be an integer 1-4, got {st.order!r}")
    for name, allowed in (("prediction", PREDICTIONS), ("variable", VARIABLES), ("relaxation", RELAXATIONS),
                          ("inner_relaxation", RELAXATIONS), ("corrector", CORRECTORS),
                          ("corrector_relaxation", RELAXATIONS)):
        if getattr(st, name) not in allowed:
            raise _fail(i, name, f"must be one of {', '.join(allowed)}, got {getattr(st, name)!r}")
    if st.variable == "sigma":
        if st.prediction != "noise":
            raise _fail(i, "prediction", "variable 'sigma' (polynomial in sigma) needs prediction 'noise'")
        for name in ("relaxation", "inner_relaxation", "corrector_relaxation"):
            if getattr(st, name) not in ("none", "linear"):
                raise _fail(i, name, "variable 'sigma' allows only 'none' or 'linear'")
    for name in ("coef", "second_scale"):
        if not isinstance(getattr(st, name), (int, float)) or not math.isfinite(getattr(st, name)):
            raise _fail(i, name, f"must be a finite number, got {getattr(st, name)!r}")
    _check_noise(i, st, t)
    r = list(st.ratios)
    if len(r) > 3 or any(not isinstance(v, (int, float)) or not 0 < v <= 1 for v in r) or \
            any(b <= a for a, b in zip(r, r[1:], strict=False)):
        raise _fail(i, "ratios", f"must be up to 3 increasing numbers in (0, 1], got {r}")
    if st.uniform and st.singlestep:
        raise _fail(i, "uniform", "equally spaced nodes apply to multistep steps only")
    pts = st.used_points()
    limit = len(r) if st.singlestep else n_before
    kind = f"intermediate indices 1..{limit}" if st.singlestep else f"lags 1..{limit} (earlier grid evaluations)"
    if any(not isinstance(p, int) or not 1 <= p <= limit for p in pts) or len(set(pts)) != len(pts):
        raise _fail(i, "points", f"must be distinct {kind}, got {list(pts)}")
    if len(pts) < st.order - 1:
        raise _fail(i, "points", f"order {st.order} needs at least {st.order - 1} points, got {list(pts)}"
                    + ("" if st.singlestep else f" (only {n_before} earlier evaluations exist: lower the order)"))
    if t == 0 and st.variable == "lambda" and (st.order > 1 or st.singlestep):
        raise _fail(i, "order", "a step to sigma=0 in lambda is h=inf: use order 1 without ratios "
                    "(or variable 'sigma')")
    if t == 0 and st.singlestep and st.ratios[-1] == 1:
        raise _fail(i, "ratios", "ratio 1 on the step to sigma=0 would evaluate the denoiser at sigma=0")
    if t == 0 and st.variable == "lambda" and st.points is not None:
        raise _fail(i, "points", "an order-1 step to sigma=0 in lambda uses no earlier points (their position "
                    "log(sigma)/log(0) is undefined): drop 'points'")
    if st.corrector != "none" and st.singlestep and any(st.ratios[p - 1] == 1 for p in pts):
        raise _fail(i, "corrector", "UniC adds the next grid evaluation (ratio 1) as a node, which duplicates the "
                    "intermediate at ratio 1 (a singular Taylor system): use corrector 'none' or drop that point")


def _check_noise(i: int, st: Step, t: float) -> None:
    """The stochastic keys of step i (to sigma t): known kind, finite non-negative amounts, used only where they act."""
    if st.noise not in NOISES:
        raise _fail(i, "noise", f"must be one of {', '.join(NOISES)}, got {st.noise!r}")
    for name in ("eta", "boundary", "s_noise", "churn"):
        v = getattr(st, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise _fail(i, name, f"must be a finite number >= 0, got {v!r}")
    idle = {"ancestral": {"down": None, "boundary": 0.0}, "sde": {"down": None, "boundary": 0.0}, "renoise": {},
            "none": {"eta": 1.0, "down": None, "boundary": 0.0, **({} if st.churn else {"s_noise": 1.0})}}[st.noise]
    for name, default in idle.items():
        if getattr(st, name) != default:
            raise _fail(i, name, f"has no effect with noise {st.noise!r}" + (" and churn 0" if name == "s_noise"
                        else "") + "; drop it (or set the noise kind it belongs to)")
    if st.noise == "sde" and (st.prediction != "data" or st.variable != "lambda"):
        raise _fail(i, "noise", "'sde' (SDE-DPM-Solver++, Lu et al. 2022b) is a data-prediction step in lambda; "
                    "use prediction 'data' and variable 'lambda'")
    if st.singlestep and (st.noise == "sde" or st.noise == "ancestral" and st.eta > 1):
        raise _fail(i, "ratios", "intermediate points need a positive target: 'sde' steps are multistep, "
                    "'ancestral' ones take eta <= 1")
    if st.noise == "renoise":
        if st.order != 1 or st.singlestep:
            raise _fail(i, "noise", "'renoise' (consistency / LCM / TCD) is a first-order step: order 1, no ratios")
        if st.eta > 1:
            raise _fail(i, "eta", f"TCD's gamma must be in [0, 1], got {st.eta}")
        if st.down is not None and (not isinstance(st.down, (int, float)) or not 0 <= st.down <= t):
            raise _fail(i, "down", f"must be a sigma in [0, {t:.6g}] (the step's target), got {st.down!r}")
    if st.noise != "none" and st.corrector != "none":
        raise _fail(i, "corrector", "UniC re-solves the step without its fresh noise; use corrector 'none' on a "
                    "stochastic step")


def json_safe(obj: Any) -> Any:
    """obj with every NaN/inf float replaced by None (null): strict JSON parsers reject NaN (RFC 8259)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


@dataclass(frozen=True, eq=False)
class Plan:
    """Sigma grid (float64, decreasing, last usually 0; increasing: inversion) plus one Step per interval; `nfe` counts
    D calls."""

    sigmas: Tensor
    steps: tuple[Step, ...]
    afs: str = "none"
    afs_mean: Tensor | None = None
    name: str = ""
    order: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        s = torch.as_tensor(self.sigmas, dtype=torch.float64).detach().cpu().flatten()
        object.__setattr__(self, "sigmas", s)
        object.__setattr__(self, "steps", tuple(self.steps))
        if s.numel() < 2 or not torch.isfinite(s).all():
            raise _fail(None, "sigmas", f"need at least 2 finite values, got {s.tolist()}")
        if not ((s[1:] < s[:-1]).all() and s[-1] >= 0 or (s[1:] > s[:-1]).all() and s[0] > 0):
            raise _fail(None, "sigmas", f"must be strictly decreasing and >= 0 (sampling), or strictly increasing "
                        f"from a positive sigma (inversion, Plan.inverted()), got {s.tolist()}")
        if s.max() > MAX_SIGMA:
            raise _fail(None, "sigmas", f"sigma={s.max().item():.6g} exceeds float32's range ({MAX_SIGMA:.3g}), "
                        "where the denoiser is evaluated; sigmas are noise levels in the model's range (EDM: 80)")
        if len(self.steps) != s.numel() - 1:
            raise _fail(None, "steps", f"need one step per interval: {s.numel() - 1}, got {len(self.steps)}")
        if len(self.steps) > MAX_NFE:
            raise _too_many(len(self.steps))
        if self.afs not in AFS:
            raise _fail(None, "afs", f"must be one of {', '.join(AFS)}, got {self.afs!r}")
        if (self.afs == "mean") != (self.afs_mean is not None):
            raise _fail(None, "afs_mean", "give afs_mean exactly when afs is 'mean'")
        if self.afs_mean is not None:
            object.__setattr__(self, "afs_mean", torch.as_tensor(self.afs_mean, dtype=torch.float64))
            if not torch.isfinite(self.afs_mean).all():
                raise _fail(None, "afs_mean", "must hold finite numbers (the data mean)")
        for key, block in self.metadata.items():
            if key not in METADATA_KEYS or not isinstance(block, dict):
                raise _fail(None, key, f"metadata must be JSON objects under {' or '.join(METADATA_KEYS)}, got "
                            f"{type(block).__name__} under {key!r}")
        for i, st in enumerate(self.steps):
            if not isinstance(st, Step):
                raise _fail(i, "step", f"must be a Step, got {type(st).__name__}")
            _check_step(i, st, float(s[i]), float(s[i + 1]), i)
            if st.corrector != "none" and i == len(self.steps) - 1:
                raise _fail(i, "corrector", "the last step has no next evaluation for UniC to reuse; use 'none'")
            if st.churn and (i == 0 and self.afs != "none" or i and self.steps[i - 1].corrector != "none"):
                raise _fail(i, "churn", "churn adds noise before this step's evaluation, which "
                            + ("AFS skips" if i == 0 else "the previous step's UniC corrector reuses") + "; drop it")
            if st.stochastic and self.ascending:
                raise _fail(i, "noise" if st.noise != "none" else "churn", "an inversion plan (increasing sigmas) "
                            "runs the ODE; drop the step's noise")
        if self.ascending and self.afs != "none":
            raise _fail(None, "afs", "an inversion plan starts from data, not from x_T: use afs 'none'")
        if self.nfe > MAX_NFE:
            raise _too_many(self.nfe)

    @property
    def nfe(self) -> int:
        """Denoiser evaluations: one per step start (none at step 0 under AFS) plus one per ratio."""
        return len(self.steps) + sum(len(st.ratios) for st in self.steps) - (self.afs != "none")

    @property
    def ascending(self) -> bool:
        """An inversion plan: the sigmas increase (x0 -> x_T)."""
        return bool(self.sigmas[-1] > self.sigmas[0])

    @property
    def stochastic(self) -> bool:
        """Some step draws fresh noise: fs.sample needs a `generator` (per-sample noise: fs.seed.PerSample)."""
        return any(st.stochastic for st in self.steps)

    def inverted(self) -> Plan:
        """The inversion plan (DDIM inversion, Song et al. 2021 Sec. 4.3, for any deterministic plan): this plan's
        decisions, step by step, on its positive sigmas in increasing order, so fs.sample (or fs.invert) maps x0,
        taken as the sample at the lowest sigma, to x_T. [s_0 > ... > s_m (> 0)] gives the steps s_m -> ... -> s_0
        with the decisions of steps 0..m-1 (the multistep warm start stays first; a step to 0 is dropped)."""
        if self.ascending:
            raise PlanError("the plan is already an inversion plan (increasing sigmas)")
        if self.stochastic:
            raise PlanError("a step that draws noise has no inverse; invert a deterministic plan (the ODE)")
        s = self.sigmas[self.sigmas > 0].flip(0)
        if len(s) < 2:
            raise PlanError("inversion needs at least two positive sigmas; use a plan with 2 or more steps")
        steps = list(self.steps[: len(s) - 1])
        if steps[-1].corrector != "none":  # UniC on the last step has no next evaluation to reuse
            steps[-1] = replace(steps[-1], corrector="none", corrector_relaxation="none")
        return Plan(s, tuple(steps), name=f"{self.name}:inverted" if self.name else "", order=self.order)

    def __len__(self) -> int:
        return len(self.steps)

    def __eq__(self, other: object) -> bool:
        """Same sampler: grid and decisions (metadata does not count)."""
        return isinstance(other, Plan) and self.to_dict(metadata=False) == other.to_dict(metadata=False)

    __hash__ = object.__hash__

    def to_dict(self, metadata: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"version": VERSION}
        if self.name:
            d["name"] = self.name
        if self.order is not None:
            d["order"] = self.order
        d["nfe"] = self.nfe
        d["sigmas"] = self.sigmas.tolist()
        if self.afs != "none":
            d["afs"] = self.afs
        if self.afs_mean is not None:
            d["afs_mean"] = self.afs_mean.tolist()
        d["steps"] = [st.to_dict() for st in self.steps]
        if metadata:
            d.update({k: self.metadata[k] for k in METADATA_KEYS if k in self.metadata})
        return d

    def to_json(self, indent: int | None = 1) -> str:
        """Readable JSON (version 1; steps list only non-default fields)."""
        d = json_safe(self.to_dict())
        steps = d.pop("steps")
        head = json.dumps(d, indent=indent, default=float, allow_nan=False)[:-1].rstrip()
        body = ",\n".join("  " + json.dumps(st) for st in steps)
        return f'{head},\n "steps": [\n{body}\n ]\n}}\n'

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        if not isinstance(d, dict):
            raise PlanError(f"a plan must be a JSON object, got {type(d).__name__}")
        known = {"version", "name", "order", "nfe", "sigmas", "afs", "afs_mean", "defaults", "steps",
                 *METADATA_KEYS}
        if unknown := set(d) - known:
            raise _fail(None, sorted(unknown)[0], f"unknown key; known keys: {', '.join(sorted(known))}")
        if d.get("version") != VERSION:
            raise _fail(None, "version", f"must be {VERSION}, got {d.get('version')!r}")
        for key in ("sigmas", "steps"):
            if not isinstance(d.get(key), list):
                raise _fail(None, key, "is required and must be a list")
        defaults = d.get("defaults", {})
        if not isinstance(defaults, dict) or (bad := set(defaults) - _STEP_FIELDS):
            raise _fail(None, "defaults", f"must be an object with step keys ({', '.join(sorted(_STEP_FIELDS))})")
        steps = []
        for i, raw in enumerate(d["steps"]):
            if not isinstance(raw, dict):
                raise _fail(i, "step", f"must be an object, got {raw!r}")
            if bad := set(raw) - _STEP_FIELDS:
                raise _fail(i, sorted(bad)[0], f"unknown key; known: {', '.join(sorted(_STEP_FIELDS))}")
            kw = {**defaults, **raw}
            for key in ("ratios", "points"):
                if isinstance(kw.get(key), list):
                    kw[key] = tuple(kw[key])
                elif key in kw and kw[key] is not None and not isinstance(kw[key], tuple):
                    raise _fail(i, key, f"must be a list, got {kw[key]!r}")
            steps.append(Step(**kw))
        try:
            sigmas = torch.tensor(d["sigmas"], dtype=torch.float64)
        except (TypeError, ValueError) as e:
            raise _fail(None, "sigmas", f"must be a list of numbers ({e})") from None
        plan = cls(sigmas, tuple(steps), afs=d.get("afs", "none"), afs_mean=d.get("afs_mean"),
                   name=d.get("name", ""), order=d.get("order"),
                   metadata={k: d[k] for k in METADATA_KEYS if k in d})
        if "nfe" in d and d["nfe"] != plan.nfe:
            raise _fail(None, "nfe", f"says {d['nfe']} but the steps need {plan.nfe} evaluations; fix or drop it")
        return plan

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Parse and validate a plan; errors name the step index and field (PlanError)."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise PlanError(f"plan is not valid JSON: {e}") from None
        return cls.from_dict(d)

"""The inversion part of `fewstep bench solvers`: the x0 -> x_T -> x0 round trip against NFE.

DDIM inversion (Song et al. 2021, Sec. 4.3) and its higher-order versions are the sampling plans run upwards
(`Plan.inverted`, `fs.invert`): x_T = invert(D, x0, plan), then x0' = fs.sample(D, x_T, plan), with NFE the sampling
plan's (the inversion spends one less). x0: data-distribution samples of the 64-D mixture (per-sample seeds) and
real digits images (the test split, pixels in [-1, 1]) for fs.zoo.load("digits-edm"), both on the logsnr grid over
the denoiser's range. Error: RMS of x0' - x0 over all entries, and the median and worst sample's RMS (a few samples
can dominate the RMS). Floor: the exact ODE round trip, which returns x(sigma_min) = x0 and ends with
x0' = D(x0, sigma_min).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import plans, seed, zoo
from ..data import sets
from ..solvers.engine import invert, sample
from .solvers import mixtures

NFES = [5, 10, 20, 50]
PLANS = ["ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_bh2"]


def round_trip(den: Any, x0: Tensor, name: str, nfe: int, batch: int = 256) -> tuple[float, float, float]:
    """(RMS over all entries, median and worst per-sample RMS) of x0' - x0 for the plan `name` at `nfe` over den's
    range."""
    plan = plans.get(name, nfe=nfe, sigma_min=float(den.sigma_min), sigma_max=float(den.sigma_max))
    outs = []
    with torch.no_grad():
        for i in range(0, len(x0), batch):
            xb = x0[i:i + batch]
            outs.append(sample(den, invert(den, xb, plan), plan) - xb)
    err = torch.cat(outs).double().flatten(1)
    per = err.pow(2).mean(1).sqrt()
    return err.pow(2).mean().sqrt().item(), per.median().item(), per.max().item()


def floor(den: Any, x0: Tensor, batch: int = 256) -> float:
    """RMS of D(x0, sigma_min) - x0: what the exact ODE round trip leaves."""
    with torch.no_grad():
        d = torch.cat([den(x0[i:i + batch], float(den.sigma_min)) - x0[i:i + batch] for i in range(0, len(x0), batch)])
    return d.double().pow(2).mean().sqrt().item()


def problems(n_mix: int, n_digits: int, seed_: int = 0, digits: bool = True) -> dict[str, tuple[Any, Tensor]]:
    """name -> (denoiser, x0): the 64-D mixture's own samples; digits-edm with real test digits (if shipped)."""
    den = mixtures()["64d-16"]
    rows = [den.sample(1, torch.Generator().manual_seed(s))[0] for s in seed.seeds_for(n_mix, seed_)]
    out = {"64d-16 mixture": (den, torch.stack(rows).to(torch.float64))}
    if digits:
        try:
            teacher = zoo.load("digits-edm").eval()
        except (FileNotFoundError, KeyError, ValueError):
            return out
        out["digits-edm"] = (teacher, sets.digits("test").x[:n_digits])
    return out


def inversion_section(quick: bool = False, seed_: int = 0, digits: bool = True, nfes: list[int] = NFES,
                      names: list[str] = PLANS) -> dict[str, Any]:
    """Round-trip error per plan and NFE on each problem; payload keys inversion, inversion_tables/_summary."""
    n_mix, n_dig = (64, 128) if quick else (256, 359)
    res: dict[str, Any] = {}
    tables, summary = [], []
    for label, (den, x0) in problems(n_mix, n_dig, seed_, digits).items():
        fl = floor(den, x0)
        res[label] = {"n": len(x0), "floor": fl, "rms": {}, "median": {}, "worst": {}}
        for name in names:
            for k in nfes:
                for key, v in zip(("rms", "median", "worst"), round_trip(den, x0, name, k), strict=True):
                    res[label][key].setdefault(name, {})[k] = v
        rows = [[name, *[res[label]["rms"][name][k] for k in nfes], res[label]["median"][name][nfes[-1]],
                 res[label]["worst"][name][nfes[-1]]] for name in names]
        tables.append({"title": f"{label}: inversion round trip x0 -> x_T -> x0, RMS(x0' - x0) of {len(x0)} samples "
                                f"(exact-ODE floor {fl:.2g}; the inversion spends NFE - 1)",
                       "columns": ["plan", *[f"NFE {k}" for k in nfes], f"median sample, NFE {nfes[-1]}",
                                   f"worst sample, NFE {nfes[-1]}"],
                       "rows": rows})
        best = {k: min(names, key=lambda m, k=k: res[label]["rms"][m][k]) for k in nfes}
        summary.append(f"{label}: inversion round-trip RMS " + ", ".join(
            f"NFE {k} {res[label]['rms'][best[k]][k]:.2g} ({best[k]})" for k in nfes) + f"; exact-ODE floor {fl:.2g}")
    return {"inversion": res, "inversion_nfes": nfes, "inversion_tables": tables, "inversion_summary": summary}

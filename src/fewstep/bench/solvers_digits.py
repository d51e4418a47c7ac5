"""The digits-teacher part of `fewstep bench solvers`: FD-digits and throughput, fewstep vs diffusers.

fs.zoo.load("digits-edm"), unconditional, n samples from per-sample seeded noise (fewstep.sampling: the same x_T
for every solver), FD-digits (fewstep.metrics.fd) next to the real-data noise floor at the same n, NFE 3-10, for a
subset of fewstep plans and diffusers settings (driven by the shared `anchors` driver on the table spanning the
teacher's [sigma_min, sigma_max]). Throughput: images/s at equal NFE, median over repeats, both in one run.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import torch

from .. import plans, zoo
from ..metrics import fd, noise_floor
from ..noise import VPDiscrete
from ..seed import noise
from ..solvers.engine import sample
from . import anchors
from .solvers import NFES, Memo, bench_denoiser, fewstep_variants, versus_table

# the fewstep equivalents of every diffusers setting below (same grid on the same table), plus plans of its own
FEWSTEP = ["dpm_solver_pp_2m/karras/0.002", "dpm_solver_pp_3m/karras/0.002", "dpm_solver_pp_3m/logsnr/0.002",
           "unipc_bh2/vp_linspace/0.002", "unipc_bh2/karras/0.002", "unipc_bh2/logsnr/0.002", "ipndm/karras/0.002",
           "ipndm+afs/logsnr/0.03", "deis_3+afs/karras/0.03"]
DIFFUSERS = {"DPM++2M+karras": 0.002, "DPM++3M+karras": 0.002, "DPM++3M+lu": 0.002, "UniPC-bh2": 0.002,
             "UniPC-bh2+karras": 0.002}
QUICK = (["dpm_solver_pp_2m/karras/0.002", "unipc_bh2/logsnr/0.002", "ipndm+afs/logsnr/0.03"],
         {"DPM++2M+karras": 0.002, "UniPC-bh2": 0.002}, [3, 5, 10])
THROUGHPUT = (("dpm_solver_pp_2m/karras/0.002", "DPM++2M+karras"),)


def throughput(den: Any, n: int = 256, nfes: tuple[int, ...] = (5, 10), repeats: int = 5) -> list[dict[str, Any]]:
    """Images/s at equal NFE on the same x_T: fs.sample(plan) vs the diffusers loop (scheduler built outside the
    timing, set_timesteps + step() + the same denoiser inside), medians over `repeats` interleaved runs."""
    hi, lo = float(den.sigma_max), float(den.sigma_min)
    x_T = noise(n, 0, tuple(den.shape), hi)
    variants, rows = fewstep_variants(), []
    for ours, theirs in THROUGHPUT:
        name, opts = variants[ours]
        cls_name, cfg = anchors.variants()[theirs]
        for k in nfes:
            plan = plans.get(name, nfe=k, sigma_max=hi, **opts)
            sched = anchors.make(cls_name, VPDiscrete.spanning(lo, hi), **cfg)
            t_fs, t_d = [], []
            with torch.no_grad():
                for r in range(repeats + 1):  # interleaved, so both see the same machine load; run 0 warms up
                    t0 = time.perf_counter()
                    sample(den, x_T, plan)
                    t1 = time.perf_counter()
                    anchors.drive(sched, den, x_T / hi, k, float64=False)
                    if r:
                        t_fs.append(t1 - t0)
                        t_d.append(time.perf_counter() - t1)
            t_fs, t_d = statistics.median(t_fs), statistics.median(t_d)
            rows.append({"fewstep": ours, "diffusers": theirs, "nfe": k, "fewstep_img_s": n / t_fs,
                         "diffusers_img_s": n / t_d, "ratio": t_d / t_fs})
    return rows


def digits_section(quick: bool = False, seed_: int = 0, n: int = 500, model: str = "digits-edm") -> dict[str, Any]:
    """FD-digits per NFE (fewstep subset vs diffusers subset, same noise) and throughput; payload keys digits_*.
    Skipped, with a summary line saying so, when the digits-edm teacher is not shipped."""
    try:
        den = zoo.load(model)
    except (FileNotFoundError, KeyError, ValueError) as e:
        return {"digits_tables": [], "digits_summary": [f"digits teacher part skipped: {e}"]}
    den.eval()
    labels, diff, nfes = QUICK if quick else (FEWSTEP, DIFFUSERS, NFES)
    n = 200 if quick else n
    variants = fewstep_variants()
    res = bench_denoiser(Memo(den), lambda x: fd(x, "digits"), tuple(den.shape), n=n, nfes=nfes,
                         variants={lab: variants[lab] for lab in labels}, seed_=seed_, diffusers=diff)
    floor = noise_floor("digits", n)
    table = versus_table(f"digits-edm teacher: FD-digits of {n} samples (noise floor {floor:.3g}), same noise",
                         res, nfes, "FD")
    tp = throughput(den, repeats=3 if quick else 5, nfes=(5,) if quick else (5, 10))
    wins = sum(r[2] <= r[4] for r in table["rows"])
    summary = [f"digits-edm: the best fewstep plan has FD at most the best diffusers setting's at "
               f"{wins}/{len(table['rows'])} NFEs (fewstep/diffusers {min(r[5] for r in table['rows']):.2f}-"
               f"{max(r[5] for r in table['rows']):.2f}; real-data noise floor {floor:.3g} at n={n})",
               "digits-edm throughput at equal NFE, fewstep / diffusers images/s: "
               + ", ".join(f"NFE {r['nfe']} {r['ratio']:.2f}" for r in tp)]
    tp_table = {"title": "digits-edm throughput (batch 256, median of repeats), images/s",
                "columns": ["fewstep plan", "diffusers", "NFE", "fewstep img/s", "diffusers img/s", "ratio"],
                "rows": [[r["fewstep"], r["diffusers"], r["nfe"], r["fewstep_img_s"], r["diffusers_img_s"],
                          r["ratio"]] for r in tp]}
    full = {"title": "digits-edm FD-digits per plan and NFE", "columns": ["plan", *map(str, nfes)],
            "rows": [[lab, *[v.get(k, math.nan) for k in nfes]] for lab, v in res.items()]}
    return {"digits": res, "digits_floor": floor, "digits_n": n, "digits_throughput": tp,
            "digits_tables": [table, full, tp_table], "digits_summary": summary}

"""Post-training quantization measured (`fewstep bench quant`): TFMQ-DM against Q-Diffusion at W8A8 / W4A8 / W4A32 on
the digits teacher (35-NFE Heun and the shipped S^3 NFE-5 plan) and the one-step CD student, FD on the project's
feature net with the same noise as full precision, the temporal features' cosine similarity per plan step, the
calibration time, and a bootstrap interval of Q-Diffusion's FD minus TFMQ's; plus the demo rows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..io import save_grid
from ..metrics import confidence, fd, noise_floor
from ..metrics.frechet import fd_between, features, reference_stats, stats_of
from ..quant.api import calibration_plan, quantize
from ..quant.calib import plan_pass
from ..quant.model import QuantizedDenoiser
from ..quant.recon import ReconConfig, temporal_cosines
from ..report.rows import DemoSection, Row
from ..solvers.constructors import get as plan_get
from ..zoo import load
from ..zoo.generate import draw
from ..zoo.lookup import resolve_plan

DATASET = "digits"
BITS = ("w8a8", "w4a8", "w4a32")
METHODS = ("tfmq", "qdiffusion")
TARGETS = {"w8a8": 1.05, "w4a8": 1.15}
SHIPPED = {"w8a8": "digits-edm-tfmq-w8a8", "w4a8": "digits-edm-tfmq-w4a8"}  # zoo models of the demo rows


def fd_bootstrap(xa: Tensor, xb: Tensor, reps: int = 200, seed: int = 0) -> tuple[float, float, float]:
    """FD(xa) - FD(xb) and its 95% percentile bootstrap interval over paired resamples of the samples (the same
    noise index in both), features computed once (Efron & Tibshirani 1993, Sec. 13.3)."""
    fa, fb = features(xa, DATASET).double(), features(xb, DATASET).double()
    ref = reference_stats(DATASET)
    diff = fd_between(stats_of(fa), ref) - fd_between(stats_of(fb), ref)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(reps):
        idx = torch.as_tensor(rng.integers(0, len(fa), len(fa)))
        out.append(fd_between(stats_of(fa[idx]), ref) - fd_between(stats_of(fb[idx]), ref))
    lo, hi = np.percentile(out, [2.5, 97.5])
    return float(diff), float(lo), float(hi)


def _samples(model: Any, plan: Any, n: int, seed: int) -> tuple[Tensor, float]:
    d = draw(model, n, plan=plan, seed=seed, batch=500)
    return d.x, d.seconds


def _cos(q: QuantizedDenoiser, fp: Any, plan_calib: Any) -> list[float]:
    return temporal_cosines(q, fp, plan_calib)


def run(n: int = 500, seed: int = 100, calib_n: int = 128, iters: int = 60, act_iters: int = 30,
        recon_n: int = 512, bits: tuple[str, ...] = BITS, student_bits: tuple[str, ...] = ("w8a8", "w4a8"),
        plots: str | None = "bench-results", save_dir: str | None = None) -> dict[str, Any]:
    """The whole benchmark: returns the write_result payload. Sampling noise (`seed`) is disjoint from the
    calibration noise (seed 0)."""
    t0 = time.perf_counter()
    cfg = ReconConfig(iters=iters, act_iters=act_iters)
    rows, raw, summary = [], {"n": n, "seed": seed, "calib_n": calib_n, "iters": iters, "act_iters": act_iters,
                              "recon_n": recon_n, "models": {}}, []
    teacher = load("digits-edm")
    student = load("digits-cd")
    heun = plan_get("heun", nfe=35, sigma_min=teacher.sigma_min, sigma_max=teacher.sigma_max, grid="karras")
    searched = resolve_plan("searched", teacher, 5, model="digits-edm")
    cases = [("digits-edm", teacher, "S^3 NFE 5", searched, bits),  # cheapest first
             ("digits-cd", student, "1 step", [float(student.sigma_max)], student_bits),
             ("digits-edm", teacher, "Heun 35 NFE", heun, bits)]
    qdiff_cache: dict[tuple[str, str], QuantizedDenoiser] = {}  # Q-Diffusion calibrates once per model and bits
    for name, model, label, plan, bit_set in cases:
        x_fp, sec_fp = _samples(model, plan, n, seed)
        fd_fp = fd(x_fp, DATASET)
        plan_calib = plan_pass(model, calibration_plan(model, plan), 16, 0)
        entry: dict[str, Any] = {"fd_fp": fd_fp, "seconds_fp": sec_fp, "results": []}
        rows.append([name, label, "full precision", "-", fd_fp, 1.0, "-", "-", "-", "-"])
        for b in bit_set:
            xs = {}
            for method in METHODS:
                key = (name, b)
                if method == "qdiffusion" and key in qdiff_cache:
                    q, reused = qdiff_cache[key], True
                else:
                    q, reused = quantize(model, b, method, plan=plan, calib_n=calib_n, seed=0, recon=cfg,
                                         recon_n=recon_n), False
                    if method == "qdiffusion":
                        qdiff_cache[key] = q
                x, sec = _samples(q, plan, n, seed)
                xs[method] = x
                f = fd(x, DATASET)
                cos = _cos(q, model, plan_calib)
                calib_s = q.config["quant"]["calib_s"]
                r = {"bits": b, "method": method, "fd": f, "ratio": f / fd_fp, "cos_min": min(cos) if cos else None,
                     "cos": cos, "calib_s": calib_s, "calib_reused": reused, "seconds": sec}
                entry["results"].append(r)
                target = TARGETS.get(b) if name == "digits-edm" else None
                rows.append([name, label, method, b, f, f / fd_fp, f"<= {target}" if target else "reported",
                             r["cos_min"], calib_s, "reused" if reused else "one run"])
                if save_dir and name == "digits-edm" and method == "tfmq" and plan is searched and b in SHIPPED:
                    _ship(q, Path(save_dir), SHIPPED[b], f, fd_fp, n, seed)
                if plots and method == "tfmq" and b in ("w8a8", "w4a8"):
                    save_grid(x[:64], Path(plots) / f"quant-{name}-{label.split()[0].lower()}-{b}.png", nrow=8)
            if "tfmq" in xs and "qdiffusion" in xs:
                d, lo, hi = fd_bootstrap(xs["qdiffusion"], xs["tfmq"])
                entry.setdefault("qdiff_minus_tfmq", {})[b] = {"diff": d, "lo": lo, "hi": hi}
        raw["models"][f"{name} {label}"] = entry
    for key, e in raw["models"].items():
        for b, d in e.get("qdiff_minus_tfmq", {}).items():
            summary.append(f"{key} {b}: FD(Q-Diffusion) - FD(TFMQ) = {d['diff']:.3g} [95% bootstrap "
                           f"{d['lo']:.3g}, {d['hi']:.3g}] ({'TFMQ better' if d['lo'] > 0 else 'not separated'}).")
    floor = noise_floor(DATASET, min(n, 898))
    summary.insert(0, f"FD-digits of n={n} samples (seed {seed}; calibration on seed 0, calib_n={calib_n} per step), "
                      f"the same noise for full precision and every quantized model; noise floor at this n "
                      f"{floor:.3g}. "
                      f"Reconstruction: {iters} AdaRound iterations per block (papers: 20 000), Q-Diffusion "
                      f"{act_iters} activation-step iterations per block. Q-Diffusion calibrates once per model and "
                      "bits (plan-independent), so its second plan reuses it. Simulated quantization: W4 has no CPU "
                      "kernel here; W8A8 real int8 is measured in the int8 table.")
    tables = [{"title": "Simulated quantization, one run (ratio = FD / full precision FD, same noise; cos = the "
                        "lowest temporal-feature cosine similarity over the plan's steps; calib s under CPU "
                        "contention)",
               "columns": ["model", "plan", "method", "bits", "FD", "ratio", "target", "cos min", "calib s",
                           "calibration"], "rows": rows}]
    raw["floor"] = floor
    payload = {"title": "Post-training quantization: TFMQ-DM vs Q-Diffusion (simulated), real int8 on the CPU",
               "summary": summary, "tables": tables, "raw": raw,
               "plots": sorted(str(p) for p in Path(plots).glob("quant-*.png")) if plots else [],
               "bench_wall_s": time.perf_counter() - t0}
    return payload


def _ship(q: QuantizedDenoiser, folder: Path, name: str, f: float, fd_fp: float, n: int, seed: int) -> None:
    """Save a quantized model into the zoo folder with its manifest (what the demo rows load)."""
    import json

    from ..io import atomic_write_text, git_commit
    from ..quant.api import save

    path = save(q, folder / f"{name}.safetensors")
    man = {"name": name, "kind": q.config["kind"], "command": f"fewstep bench quant --ship {folder}",
           "commit": git_commit(), "seed": 0, "wall_s": q.config["quant"]["calib_s"],
           "metrics": {"fd": f, "fd_fp": fd_fp, "ratio": f / fd_fp, "n": n, "seed": seed, "plan": "searched nfe5"},
           "sampler": {"plan": "searched", "nfe": 5}}
    atomic_write_text(folder / f"{name}.json", json.dumps(man, indent=1))
    atomic_write_text(folder / "plans" / f"{name}-nfe5.json", Path(str(path).replace(".safetensors", ".plan.json"))
                      .read_text())


def demo_section(cfg: Any) -> DemoSection | None:
    """TFMQ-DM W8A8 and W4A8 digits-edm (the shipped quantized models) at the searched NFE-5 plan they were
    calibrated for, on the demo's held-out noise."""
    try:
        teacher = load("digits-edm")
        plan = resolve_plan("searched", teacher, 5, model="digits-edm")
        models = {b: load(z) for b, z in SHIPPED.items()}
    except (KeyError, FileNotFoundError):
        return None
    grids = Path(cfg.out) / "grids"
    floor = noise_floor(DATASET, min(cfg.n, 898))
    rows, images = [], []
    for b, q in models.items():
        d = draw(q, cfg.n, plan=plan, seed=cfg.seed, device=cfg.device)
        f = fd(d.x, DATASET)
        rel = f"grids/quant-tfmq-{b}-nfe5.png"
        save_grid(d.x[:64], grids / f"quant-tfmq-{b}-nfe5.png", nrow=8, scale=4)
        rows.append(Row(f"TFMQ {b.upper()} (digits-edm, S^3 plan)", "quantized", 5, f, f / floor,
                        confidence(d.x, DATASET)["confidence"], cfg.n / max(d.seconds, 1e-9), rel))
        images.append((rel, f"digits-edm quantized to {b.upper()} by TFMQ-DM, 5 NFE"))
    return DemoSection("Quantized teacher (TFMQ-DM)", "Post-training quantization of digits-edm calibrated for the "
                       "searched NFE-5 plan (simulated integer arithmetic).", rows, DATASET, floor, images)

"""Measure a zoo model's sample quality and write its manifest (`fewstep zoo evaluate NAME`).

    fewstep zoo evaluate digits-edm --n 1000 --nfe 35 --write-manifest --png grid.png

Samples with the 35-NFE Heun plan (Karras et al. 2022, Alg. 1) from per-sample seeds, unconditionally
(cond=None -> null label) and, for class-conditional models, with labels 0..K-1; reports fewstep.metrics
numbers (FD with its real-data noise floor, classifier confidence and accuracy).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import metrics
from ..io import atomic_write_text, read_config
from ..solvers import constructors
from . import FILES, load
from .generate import generate


def draw(den: nn.Module, n: int, nfe: int = 35, seed: int = 0, cond: Tensor | None = None, solver: str = "heun",
         device: str = "cpu") -> Tensor:
    """n samples from per-sample seeds with the `solver` plan at `nfe` evaluations, clamped to [-1, 1]."""
    plan = constructors.get(solver, nfe=nfe, sigma_min=den.sigma_min, sigma_max=den.sigma_max)
    return generate(den, n, plan=plan, seed=seed, labels=cond, device=device)


def evaluate(name_or_path: str, n: int = 1000, nfe: int = 35, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Quality of a denoiser on its training data set: unconditional metrics, plus conditional accuracy; the
    network runs on `device` (per-sample noise: the samples do not depend on it beyond float round-off)."""
    den = load(name_or_path, device)
    dataset = den.config.get("data", {}).get("name", "digits")
    t0 = time.perf_counter()
    x = draw(den, n, nfe, seed, device=device)
    out: dict[str, Any] = {"solver": "heun", "nfe": nfe, "n": n, "seed": seed,
                           "uncond": metrics.evaluate(x, dataset)}
    k = int(den.config["net"]["kwargs"].get("num_classes", 0))
    if k:
        labels = torch.arange(n) % k
        out["cond"] = metrics.evaluate(draw(den, n, nfe, seed + 1, cond=labels, device=device), dataset,
                                       labels=labels)
    out["eval_wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def command(name: str, n: int = 1000, nfe: int = 35, seed: int = 0) -> str:
    """The command that measured a manifest's metrics (its "metrics_command")."""
    return f"fewstep zoo evaluate {name} --n {n} --nfe {nfe} --seed {seed} --write-manifest"


def write_manifest(name: str, result: dict[str, Any], eval_command: str) -> Path:
    """files/<name>.json: the training command, seed, commit, wall time (from the weights' config) and metrics."""
    cfg = read_config(FILES / f"{name}.safetensors")
    tr = cfg.get("train", {})
    manifest = {"name": name, "command": tr.get("command"), "seed": tr.get("seed"), "commit": tr.get("commit"),
                "steps": tr.get("steps"), "wall_s": tr.get("wall_s"), "device": tr.get("device"),
                "data": cfg.get("data"), "net": cfg["net"], "precond": cfg["precond"],
                "sigma_min": cfg["sigma_min"], "sigma_max": cfg["sigma_max"], "shape": cfg.get("shape"),
                "metrics": result, "metrics_command": eval_command}
    return atomic_write_text(FILES / f"{name}.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")

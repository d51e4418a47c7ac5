"""Measure a zoo model's sample quality and write its manifest.

    python -m fewstep.zoo.evaluate digits-edm --n 1000 --nfe 35 --write-manifest --png grid.png

Samples with the 35-NFE Heun plan (Karras et al. 2022, Alg. 1) from per-sample seeds, unconditionally
(cond=None -> null label) and, for class-conditional models, with labels 0..K-1; reports fewstep.metrics
numbers (FD with its real-data noise floor, classifier confidence and accuracy).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import FILES, load


def draw(den: nn.Module, n: int, nfe: int = 35, seed: int = 0, cond: Tensor | None = None, solver: str = "heun"
         ) -> Tensor:
    """n samples from per-sample seeds with the `solver` plan at `nfe` evaluations, clamped to [-1, 1]."""
    from ..solvers import constructors
    from .generate import generate

    plan = constructors.get(solver, nfe=nfe, sigma_min=den.sigma_min, sigma_max=den.sigma_max)
    return generate(den, n, plan=plan, seed=seed, labels=cond)


def evaluate(name_or_path: str, n: int = 1000, nfe: int = 35, seed: int = 0) -> dict[str, Any]:
    """Quality of a denoiser on its training data set: unconditional metrics, plus conditional accuracy."""
    from .. import metrics

    den = load(name_or_path)
    dataset = den.config.get("data", {}).get("name", "digits")
    t0 = time.perf_counter()
    x = draw(den, n, nfe, seed)
    out: dict[str, Any] = {"solver": "heun", "nfe": nfe, "n": n, "seed": seed,
                           "uncond": metrics.evaluate(x, dataset)}
    k = int(den.config["net"]["kwargs"].get("num_classes", 0))
    if k:
        labels = torch.arange(n) % k
        out["cond"] = metrics.evaluate(draw(den, n, nfe, seed + 1, cond=labels), dataset, labels=labels)
    out["eval_wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def write_manifest(name: str, result: dict[str, Any], eval_command: str) -> Path:
    """files/<name>.json: the training command, seed, commit, wall time (from the weights' config) and metrics."""
    from ..io import atomic_write_text, read_config

    cfg = read_config(FILES / f"{name}.safetensors")
    tr = cfg.get("train", {})
    manifest = {"name": name, "command": tr.get("command"), "seed": tr.get("seed"), "commit": tr.get("commit"),
                "steps": tr.get("steps"), "wall_s": tr.get("wall_s"), "device": tr.get("device"),
                "data": cfg.get("data"), "net": cfg["net"], "precond": cfg["precond"],
                "sigma_min": cfg["sigma_min"], "sigma_max": cfg["sigma_max"], "shape": cfg.get("shape"),
                "metrics": result, "metrics_command": eval_command}
    return atomic_write_text(FILES / f"{name}.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m fewstep.zoo.evaluate", description=__doc__)
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--nfe", type=int, default=35)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-manifest", action="store_true")
    ap.add_argument("--png", default=None, help="also save a 10x10 grid of unconditional samples")
    a = ap.parse_args(argv)
    res = evaluate(a.model, a.n, a.nfe, a.seed)
    print(json.dumps(res, indent=2, default=float))
    if a.png:
        from ..io import save_grid

        save_grid(draw(load(a.model), 100, a.nfe, a.seed), a.png, nrow=10)
    if a.write_manifest:
        cmd = f"python -m fewstep.zoo.evaluate {a.model} --n {a.n} --nfe {a.nfe} --seed {a.seed} --write-manifest"
        print("wrote", write_manifest(a.model, res, cmd))


if __name__ == "__main__":
    main()

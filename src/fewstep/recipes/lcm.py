"""How `mnist-lcm` is trained: guided latent consistency distillation of `mnist-ldm` (fewstep.distill.lcm) in
resumed segments, each scored by FD of decoded few-step samples at a middle guidance scale, so the shipped weights
and the FD-against-training-time curve come from one run (recipes/curve.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from ..data.sets import ImageData
from ..distill.config import LCMConfig
from ..distill.lcm import distill_lcm
from ..distill.times import search_sigmas
from ..io import atomic_write_text
from ..kinds import load
from ..metrics import fd
from ..seed import HELD_OUT_SEED
from ..zoo.generate import draw
from .curve import train_with_curve

CURVE_STEPS = (1, 2, 4)  # student steps scored at each curve point
CURVE_N = 500


def score(path: Path, dataset: str, w: float, n: int = CURVE_N, steps: tuple[int, ...] = CURVE_STEPS,
          seed: int = HELD_OUT_SEED) -> dict[str, float]:
    """FD (on `dataset`'s classifier) of n decoded samples of the student at `path` for each step count, at
    guidance w, labels 0-9 in turn, held-out noise."""
    student = load(path)
    y = torch.arange(n) % int(student.config.get("num_classes") or 10)
    return {f"fd_{k}step_w{w:g}": fd(draw(student, n, nfe=k, seed=seed, labels=y, guidance=w).x, dataset)
            for k in steps}


def train_lcm(cfg: LCMConfig, tc: Any, data: ImageData, teacher: Any, autoencoder: str, out: Path,
              segments: int, command: Any, resume: bool = False, device: str = "cpu",
              curve_w: float = 2.0, extend: bool = False) -> dict[str, Any]:
    """distill_lcm in `segments` resumed pieces with a quality curve; writes `out` and its manifest out.json.
    `command(k)` is the one-shot command line of k steps; `extend` continues a finished shorter run."""
    ckpt = out.with_suffix(".ckpt.pt")

    def run(k: int, cooldown: int, resumed: bool, line: str) -> Any:
        return distill_lcm(cfg, dataclasses.replace(tc, steps=k, cooldown=cooldown), data, teacher, autoencoder,
                           out=out, ckpt=ckpt, resume=resumed or resume, device=device, command=line)

    return train_with_curve(out, tc.steps, segments, run, lambda p: score(p, data.name, curve_w), command,
                            lambda point: {k: v for k, v in point.items() if k.startswith("fd_")}, seed=tc.seed,
                            cooldown=tc.cooldown, ckpt=ckpt, extend=extend)


def search_times(student: Any, dataset: str, steps: int, w: float, n: int = 250, seeds: tuple[int, ...] = (0, 1),
                 iters: int = 6) -> tuple[list[float], float]:
    """The sampling times of `steps` student steps at guidance w by the CM ternary search (fewstep.distill.times),
    scored by the mean FD of n samples over `seeds` (search seeds, never the held-out ones)."""
    y = torch.arange(n) % int(student.config.get("num_classes") or 10)

    def score_of(sigmas: list[float]) -> float:
        return sum(fd(draw(student, n, plan=sigmas, seed=s, labels=y, guidance=w).x, dataset) for s in seeds) / len(
            seeds)

    return search_sigmas(score_of, steps, float(student.sigma_min), float(student.sigma_max), iters)


def record_times(manifest_path: Path, times: dict[int, list[float]], w: float,
                 default_steps: int = 4) -> dict[str, Any]:
    """Write the searched times into the student's manifest (`sampler`: the default steps and the sigmas per step
    count, which fs.generate then uses), keeping everything else."""
    m = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    sampler = dict(m.get("sampler") or {})
    sampler.setdefault("nfe", default_steps)
    sampler["sigmas"] = {**(sampler.get("sigmas") or {}), **{str(k): v for k, v in times.items()}}
    sampler["searched_at_guidance"] = w
    m["sampler"] = sampler
    atomic_write_text(manifest_path, json.dumps(m, indent=1))
    return m

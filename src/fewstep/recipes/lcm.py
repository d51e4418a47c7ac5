"""How `mnist-lcm` is trained: guided latent consistency distillation of `mnist-ldm` (fewstep.distill.lcm) in
resumed segments, each scored by FD of decoded few-step samples at a middle guidance scale, so the shipped weights
and the FD-against-training-time curve come from one run (recipes/curve.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ..data.sets import ImageData
from ..distill.config import LCMConfig
from ..distill.lcm import distill_lcm
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
              curve_w: float = 2.0) -> dict[str, Any]:
    """distill_lcm in `segments` resumed pieces with a quality curve; writes `out` and its manifest out.json.
    `command(k)` is the one-shot command line of k steps."""
    ckpt = out.with_suffix(".ckpt.pt")

    def run(k: int, cooldown: int, resumed: bool, line: str) -> Any:
        return distill_lcm(cfg, dataclasses.replace(tc, steps=k, cooldown=cooldown), data, teacher, autoencoder,
                           out=out, ckpt=ckpt, resume=resumed or resume, device=device, command=line)

    return train_with_curve(out, tc.steps, segments, run, lambda p: score(p, data.name, curve_w), command,
                            lambda point: {k: v for k, v in point.items() if k.startswith("fd_")}, seed=tc.seed,
                            cooldown=tc.cooldown, ckpt=ckpt)

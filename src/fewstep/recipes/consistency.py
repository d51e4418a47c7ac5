"""The consistency-model zoo recipes (digits-cd, digits-color-cd, digits-ict; `fewstep bench consistency --train`)
and their curve runs: CD / CT / iCT (Song et al. 2023; Song & Dhariwal 2024) through `fewstep distill consistency`,
scored after every segment by FD-digits of CM Algorithm 1 samples at 1 and 2 steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import data as fsdata
from ..distill.config import make_config
from ..distill.run import distill
from ..io import load_model
from ..metrics import fd
from ..train.loop import TrainConfig
from ..zoo.generate import draw
from . import curve, staged

DATASET = "digits"

# The recipes the shipped zoo models were trained with (`fewstep bench consistency --train cd|ict [--extend]`).
# The horizon K only drives the CT/iCT curricula; it is pinned so a run can be extended (CD ignores it).
RECIPES: dict[str, dict] = {
    "cd": {"steps": 3000, "horizon": 1000, "segments": 6, "teacher": "digits-edm", "batch": 64, "lr": 2e-4,
           "warmup": 50,
           "ema_decay": 0.995, "N": 18, "dist": "lpips", "solver": "heun", "label_dropout": 1.0,
           # stage 2: 4x the batch at half the lr and a longer EMA, plus the ODE-pair regression (--reg) on 20000
           # teacher trajectories (its curve moves little after 500 steps). Stage 3: DMD's distribution matching of
           # the one-step map (--mode dmd), with a light regression on the same trajectories. In all about 28 min
           # at 2 threads, the trajectories included
           "then": [{"steps": 500, "segments": 2, "batch": 256, "lr": 1e-4, "warmup": 20, "ema_decay": 0.999,
                     "reg": 1.0},
                    {"mode": "dmd", "steps": 1500, "segments": 3, "lr": 5e-5, "warmup": 20, "reg": 0.05,
                     "fake_lr": 1e-4}]},
    "color-cd": {"steps": 2000, "horizon": 1000, "segments": 4, "teacher": "digits-color-edm",
                 "data": "digits_color", "batch": 64, "lr": 2e-4, "warmup": 50, "ema_decay": 0.995, "N": 18,
                 "dist": "lpips", "solver": "heun",
                 "then": {"steps": 500, "segments": 2, "batch": 256, "lr": 1e-4, "warmup": 20, "ema_decay": 0.999}},
    # iCT: the doubling curriculum over the first half (horizon 12000: N reaches 1281 at step 10500), and the
    # artefact is the mean of the EMA snapshots every 500 steps from step 11500 on (--average-from), 26 in all
    "ict": {"steps": 24000, "horizon": 12000, "segments": 24, "teacher": None, "batch": 64,
            "lr": 1e-3, "warmup": 100, "ema_decay": 0.9995, "dropout": 0.1, "s0": 10, "s1": 1280, "label_dropout": 1.0,
            "average_from": 11500, "average_every": 500},
}
CC_KEYS = {"N", "mu", "s0", "s1", "dist", "weight", "solver", "skip", "reg", "reg_paths", "fake_lr"}
TRAIN_KEYS = {"batch", "lr", "warmup", "ema_decay", "seed", "ckpt_every", "label_dropout", "average_from",
              "average_every"}


def cm_samples(cm: Any, n: int, seed: int, sigmas: list[float], batch: int = 500) -> Tensor:
    """CM Alg. 1 samples (clamped to [-1, 1]) with per-sample seeded noise for every step (batch-independent)."""
    return draw(cm, n, plan=sigmas, seed=seed, batch=batch).x


def cm_fd(cm: Any, sigmas: list[float], n: int, seed: int, dataset: str = DATASET) -> float:
    """FD of `cm_samples` against the real reference half of `dataset` (fewstep.metrics.fd)."""
    return fd(cm_samples(cm, n, seed, sigmas), dataset)


def train_with_curve(mode: str, out: str | Path, steps: int, segments: int = 6, teacher: str | None = "digits-edm",
                     n_eval: int = 500, threads: int | None = None, ckpt: str | Path | None = None,
                     horizon: int | None = None, extend: bool = False, data: str = DATASET,
                     **opts: Any) -> dict[str, Any]:
    """Train `mode` (cd/ct/ict/dmd) for `steps` steps in `segments` resumed pieces (recipes.curve), scoring 1- and
    2-step FD (n_eval samples, tau 0.5) after each; writes out (.safetensors) and out with .json (manifest:
    command, seed, commit, metrics, wall time, curve). `horizon`: K of the N(k) curriculum (default steps).
    `extend`: continue a finished shorter run of the same recipe from its checkpoint, keeping its curve."""
    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    horizon = horizon or steps
    cc = make_config(mode, horizon=horizon, **{k: v for k, v in opts.items() if k in CC_KEYS})
    tk = {k: v for k, v in opts.items() if k in TRAIN_KEYS}
    cool = int(opts.pop("cooldown", 0) or 0)
    dropout, init = opts.get("dropout"), opts.get("init")
    ds = fsdata.get(data, split="train")
    args = {"teacher": teacher, "mode": mode, "data": data, **{k: v for k, v in opts.items() if v is not None},
            "horizon": horizon, "out": curve.shown(out)}
    ckpt = Path(ckpt) if ckpt is not None else out.with_suffix(".ckpt.pt")

    def command(k: int) -> str:  # the one-shot command equal to the first k steps (exact resume)
        return curve.command_line(["fewstep", "distill", "consistency"],
                                  {**args, "steps": k, "cooldown": cool if k == steps and cool else None})

    def train(k: int, cooldown: int, resume: bool, cmd: str) -> Any:
        tc = TrainConfig(steps=k, cooldown=cooldown, progress=False, **tk)
        return distill(cc, tc, ds, teacher=teacher, out=out, ckpt=ckpt, resume=resume, command=cmd,
                       dropout=dropout, init=init)

    def score(path: Path) -> dict[str, float]:
        cm = load_model(path)
        T = float(cm.sigma_max)
        return {"fd_1step": cm_fd(cm, [T], n_eval, 1, ds.name), "fd_2step": cm_fd(cm, [T, 0.5], n_eval, 1, ds.name)}

    def metrics(point: dict[str, Any]) -> dict[str, float]:
        return {"fd_1step_n500": point["fd_1step"], "fd_2step_sigma0.5_n500": point["fd_2step"]}

    return curve.train_with_curve(out, steps, segments, train, score, command, metrics, seed=tk.get("seed", 0),
                                  cooldown=cool, ckpt=ckpt, extend=extend)


def train_recipe(name: str, recipe: dict[str, Any], out_dir: str | Path, threads: int | None = None,
                 extend: bool = False, scratch: str | Path = "/tmp") -> dict[str, Any]:
    """Train the zoo model `name` (digits-cd, digits-color-cd, digits-ict) by its RECIPES entry, stages included
    (recipes.staged); the mode is the name without its data prefix."""
    mode = name.removeprefix("digits-").removeprefix("color-")
    return staged.train_stages(name, recipe, out_dir, train_with_curve, mode, threads=threads, extend=extend,
                               scratch=scratch)

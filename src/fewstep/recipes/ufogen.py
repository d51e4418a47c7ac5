"""The digits-ufogen zoo recipe (`fewstep bench ufogen --train`) and its gap / reconstruction ablation: UFOGen
(Xu et al. 2024) from digits-edm through `fewstep distill ufogen`, trained in resumed segments (recipes.curve) and
scored after each by FD-digits of 1- and 4-step samples (n=500, seed 1, the curves' convention)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from .. import data as fsdata
from ..distill.ufogen import distill_ufogen
from ..distill.ufogen_config import UFOGenConfig
from ..io import atomic_write_text, git_commit
from ..metrics import fd
from ..train.loop import TrainConfig
from ..zoo.generate import draw
from . import curve

DATASET, TEACHER, CURVE_N, CURVE_SEED = "digits", "digits-edm", 500, 1

# The shipped recipe. gap 750 of T = 1000 (the code's 250 leaves x_s at sigma 17.5 for t = T, where D cannot tell
# a blurred one-step sample from data: the ablation below), t on the 4 sampling times, the code's eps-MSE.
RECIPE: dict[str, Any] = {"steps": 1000, "segments": 2, "batch": 64, "lr": 1e-4, "warmup": 20, "ema_decay": 0.99,
                          "label_dropout": 1.0, "gap": 750}
TRAIN_KEYS = ("batch", "lr", "warmup", "ema_decay", "label_dropout", "seed", "ckpt_every")
# The ablation: the same recipe for `steps` steps with one setting changed (the gap; the paper's gamma_t x0 term)
ABLATION: dict[str, dict[str, Any]] = {"gap 250 (the code)": {"gap": 250}, "gap 500": {"gap": 500},
                                       "gap 750": {"gap": 750}, "gap 1000 (s = 0)": {"gap": 1000},
                                       "gap 750, paper's gamma_t x0 term": {"gap": 750, "recon": "x0"}}


def _split(opts: dict[str, Any]) -> tuple[UFOGenConfig, dict[str, Any]]:
    fields = {f.name for f in dataclasses.fields(UFOGenConfig)}
    return (UFOGenConfig(**{k: v for k, v in opts.items() if k in fields}),
            {k: v for k, v in opts.items() if k in TRAIN_KEYS})


def score(path: str | Path, n: int = CURVE_N, seed: int = CURVE_SEED) -> dict[str, float]:
    """FD-digits of the generator's 1-, 2- and 4-step samples (its recorded sigmas)."""
    return {f"fd_{k}step": fd(draw(str(path), n, nfe=k, seed=seed, batch=n).x, DATASET) for k in (1, 2, 4)}


def command_for(opts: dict[str, Any], out: str | Path, steps: int) -> str:
    """The one-shot `fewstep distill ufogen` command equal to `steps` steps of this recipe."""
    args = {"teacher": TEACHER, "data": DATASET, **{k: v for k, v in opts.items() if k not in ("steps", "segments")},
            "out": curve.shown(Path(out)), "steps": steps}
    return curve.command_line(["fewstep", "distill", "ufogen"], args)


def train_recipe(out: str | Path, recipe: dict[str, Any] | None = None, threads: int | None = None,
                 extend: bool = False, progress: bool = False, ckpt: str | Path | None = None) -> dict[str, Any]:
    """Train digits-ufogen (or `recipe`) into `out` with its FD-vs-time curve; writes out and its .json manifest.
    `ckpt`: the training checkpoint [out.ckpt.pt] (its path does not change what is trained)."""
    if threads:
        torch.set_num_threads(threads)
    r = dict(RECIPE if recipe is None else recipe)
    out = Path(out)
    cfg, tk = _split(r)
    ds = fsdata.get(DATASET, split="train")

    def train(k: int, cooldown: int, resume: bool, command: str) -> Any:
        tc = TrainConfig(steps=k, progress=progress, log_every=25, **tk)
        return distill_ufogen(cfg, tc, ds, TEACHER, out=out, ckpt=ckpt, resume=resume, command=command)

    opts = {k: v for k, v in r.items() if k not in ("steps", "segments")}
    return curve.train_with_curve(out, int(r["steps"]), int(r["segments"]), train, score,
                                  lambda k: command_for(opts, out, k),
                                  lambda p: {f"{key}_n{CURVE_N}": p[key] for key in ("fd_1step", "fd_2step",
                                                                                     "fd_4step")},
                                  seed=int(r.get("seed", 0)), extend=extend,
                                  ckpt=Path(ckpt) if ckpt is not None else None)


def ablate(folder: str | Path, steps: int = 750, threads: int | None = None,
           variants: dict[str, dict[str, Any]] | None = None, result: str | Path | None = None) -> dict[str, Any]:
    """Each ABLATION variant of RECIPE trained for `steps` steps (one segment per 250 steps, so each has its own
    curve); returns {variant: {"options", "curve", "command"}}, also written to `result` as JSON."""
    out: dict[str, Any] = {"steps": steps, "commit": git_commit(), "variants": {}}
    for name, change in (variants or ABLATION).items():
        r = {**RECIPE, **change, "steps": steps, "segments": max(1, steps // 250)}
        slug = name.split(",")[0].replace(" ", "-").replace("(", "").replace(")", "").replace("=", "")
        path = Path(folder) / f"ablate-{slug}{'-x0' if change.get('recon') == 'x0' else ''}.safetensors"
        man = train_recipe(path, r, threads=threads)
        out["variants"][name] = {"options": change, "curve": man["curve"], "command": man["command"]}
        if result is not None:
            atomic_write_text(Path(result), json.dumps(out, indent=1))
    return out

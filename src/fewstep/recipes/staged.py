"""Recipes with stages: stage 1 trains from scratch, each later stage from the previous stage's weights (`init`),
every stage through a segmented curve run (recipes.curve); the manifest joins the curves."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io import atomic_write, atomic_write_text

NOTE = ("{n} stages, each trained in resumed segments (exact resume) to record the curve; each later stage starts "
        "from the previous stage's EMA weights (--init)")


def train_stages(name: str, recipe: dict[str, Any], out_dir: str | Path, train: Callable[..., dict[str, Any]],
                 mode: str, threads: int | None = None, extend: bool = False,
                 scratch: str | Path = "/tmp") -> dict[str, Any]:
    """Train the zoo model `name` by `recipe` with `train(mode, out, ckpt=, threads=, [extend=], **options)` (a
    method's curve run). A recipe with `then` (one stage or a list) trains stage 1 into `scratch` and each later
    stage from the previous one's weights (`init`), with the stage-1 options it does not override (its `mode`
    included); the last stage writes `out_dir`. The manifest joins the curves (each stage on the clock of those
    before it) and lists every stage's command under `stages`."""
    recipe = dict(recipe)
    then = recipe.pop("then", None)
    out = Path(out_dir) / f"{name}.safetensors"
    ckpt = Path(scratch) / f"fewstep-{name}.ckpt.pt"
    if then is None:
        return train(mode, out, ckpt=ckpt, threads=threads, extend=extend, **recipe)
    later = [then] if isinstance(then, dict) else list(then)
    outs = [Path(scratch) / f"fewstep-{name}-stage{i + 1}.safetensors" for i in range(len(later))] + [out]
    ckpts = [o.with_suffix(".ckpt.pt") for o in outs[:-1]] + [ckpt]
    staged = {k: v for k, v in recipe.items() if k not in {"steps", "segments", "horizon", "cooldown"}}
    runs = [train(mode, outs[0], ckpt=ckpts[0], threads=threads, extend=extend, **recipe)]
    for i, stage in enumerate(later, 1):
        opts = {**staged, **stage, "init": str(outs[i - 1])}
        share_bank(ckpts[i - 1], ckpts[i])
        runs.append(train(opts.pop("mode", mode), outs[i], ckpt=ckpts[i], threads=threads, **opts))
    curve, k0, w0 = [], 0, 0.0
    for i, run in enumerate(runs, 1):
        curve += [{**p, "step": k0 + p["step"], "wall_s": round(w0 + p["wall_s"], 1), "stage": i} for p in run["curve"]]
        k0, w0 = curve[-1]["step"], curve[-1]["wall_s"]
    manifest = {**runs[-1], "wall_s": curve[-1]["wall_s"], "curve": curve,
                "stages": [r["command"] for r in runs], "stage_wall_s": [r["wall_s"] for r in runs],
                "stage_threads": [r["threads"] for r in runs], "note": NOTE.format(n=len(runs))}
    atomic_write_text(out.with_suffix(".json"), json.dumps(manifest, indent=1))
    return manifest


def share_bank(previous: Path, ckpt: Path) -> None:
    """Hand the previous stage's cached teacher trajectories (--reg) to the next stage's checkpoint, in place of
    any older cache there, so they are not generated twice; fewstep.distill.run.ode_bank checks the cache's key and
    rebuilds one that does not fit this stage."""
    src = previous.with_suffix(".paths.pt")
    if src.is_file():
        atomic_write(ckpt.with_suffix(".paths.pt"), lambda tmp: shutil.copyfile(src, tmp))

"""Segmented training with a quality curve, for any method whose training loop resumes exactly.

A run of `steps` steps is cut into `segments` resumed pieces; after each the weights are scored, so the curve and
the shipped weights come from one run, and the manifest records the one-shot command equal to the steps so far.
A `cooldown` is one last segment branched from the stable run's checkpoint at steps - cooldown (kept beside the
other as .stable.pt), so an `extend` continues the stable run, not the decay.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write, atomic_write_text, git_commit

NOTE = "trained in resumed segments (exact resume) to record the curve; the manifest is rewritten after every segment"


def shown(path: Path) -> str:
    """`path` relative to the working directory when it lies below it, so a recorded command runs from any clone."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def command_line(prefix: list[str], options: dict[str, Any]) -> str:
    """`prefix --key value ...` for every option that is not None (underscores written as dashes)."""
    return shlex.join(prefix + [a for key, v in options.items() if v is not None
                                for a in ("--" + key.replace("_", "-"), str(v))])


def segment_ends(steps: int, segments: int, cooldown: int = 0) -> list[int]:
    """The steps at which a segment ends: `segments` even pieces, the start of the cool-down, none inside it."""
    ends = sorted({max(1, round(steps * (i + 1) / segments)) for i in range(segments)} | {steps - cooldown} - {0})
    return [k for k in ends if k <= steps - cooldown or k == steps]


def train_with_curve(out: Path, steps: int, segments: int, train: Callable[[int, int, bool, str], Any],
                     score: Callable[[Path], dict[str, float]], command: Callable[[int], str],
                     metrics: Callable[[dict[str, Any]], dict[str, float]], seed: int = 0, cooldown: int = 0,
                     ckpt: Path | None = None, extend: bool = False) -> dict[str, Any]:
    """Train in resumed segments, scoring each: `train(k, cooldown, resume, command)` runs the method's loop to step
    k (into `out`, checkpoint `ckpt`) and returns a result with .wall_s and .losses; `score(out)` is the curve
    point's quality; `metrics(point)` the manifest's metrics. Writes out with .json after every segment.
    `extend`: continue a finished shorter run from its checkpoint, keeping its curve."""
    ckpt = Path(ckpt) if ckpt is not None else out.with_suffix(".ckpt.pt")
    stable = ckpt.with_suffix(".stable.pt")
    curve: list[dict[str, Any]] = []
    manifest: dict[str, Any] = {}
    if extend:  # an extension to the steps already trained writes nothing and returns the run's manifest
        manifest = json.loads(out.with_suffix(".json").read_text())
        curve = manifest["curve"]
        if curve and curve[-1].get("cooldown"):  # branch again from the end of the stable phase
            if not stable.is_file():
                raise FileNotFoundError(f"{out} ends in a cool-down and its stable checkpoint {stable} is gone; "
                                        "retrain without --extend")
            curve.pop()
            atomic_write(ckpt, lambda tmp: shutil.copyfile(stable, tmp))
    for k in segment_ends(steps, segments, cooldown):
        if curve and k <= curve[-1]["step"]:
            continue
        res = train(k, cooldown if k == steps else 0, bool(curve), command(k))
        curve.append({"step": k, "wall_s": round(res.wall_s, 1), **score(out), "loss": res.losses[-1]})
        if cooldown and k == steps:
            curve[-1]["cooldown"] = cooldown
        elif cooldown and k == steps - cooldown:
            atomic_write(stable, lambda tmp: shutil.copyfile(ckpt, tmp))
        print(json.dumps(curve[-1]), file=sys.stderr, flush=True)  # a log line: stdout keeps the results
        manifest = {"name": out.stem, "command": command(k), "seed": seed, "commit": git_commit(),
                    "wall_s": curve[-1]["wall_s"], "threads": torch.get_num_threads(), "metrics": metrics(curve[-1]),
                    "curve": curve, "note": NOTE}
        atomic_write_text(out.with_suffix(".json"), json.dumps(manifest, indent=1))
    return manifest

"""`fewstep bench foundation`: the shipped teacher's quality at 35-NFE Heun against the real-data noise floor."""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from ..bench.common import write_result
from ..bench.strict_json import dumps
from ..zoo import evaluate, manifest
from .options import common, json_option


@click.command()
@click.option("--model", default="digits-edm", show_default=True)
@click.option("--n", type=click.IntRange(min=16), default=1000, show_default=True, help="samples per setting")
@click.option("--time-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="also time this many steps of the manifest's training command at 1 and 2 threads and project the "
                   "full run (0: skip)")
@common
@json_option
def foundation(model: str, n: int, time_steps: int, device: str, seed: int, as_json: bool) -> None:
    """Teacher FD (unconditional and class-conditional) next to the noise floor, confidence vs real digits."""
    res = evaluate.evaluate(model, n=n, seed=seed, device=device)
    rows = []
    for key, label in (("uncond", "unconditional"), ("cond", "class-conditional (labels 0..9)")):
        if key not in res:
            continue
        m = res[key]
        rows.append([label, m["n"], m["fd"], m["noise_floor"], m["fd_over_floor"], m["confidence"],
                     m["confidence_real"], m["confidence"] / m["confidence_real"], m.get("class_entropy", float("nan")),
                     m.get("accuracy", float("nan"))])
    train = manifest(model)
    u = res["uncond"]
    summary = [
        f"{model} at 35-NFE Heun: FD {u['fd']:.3g} = {u['fd_over_floor']:.2f}x the real-data noise floor "
        f"({u['noise_floor']:.3g} at n={u['noise_floor_n']}); target <= 3x.",
        f"Classifier confidence {u['confidence']:.3f} vs {u['confidence_real']:.3f} on real held-out digits "
        f"(ratio {u['confidence'] / u['confidence_real']:.3f}; target within 10%). Confidence alone is weak (clamped "
        "noise scores ~0.94), so the class entropy of the predicted labels is shown too (log 10 = 2.30 is uniform).",
        f"Training: `{train.get('command')}`, {train.get('wall_s', float('nan')) / 60:.1f} min "
        f"({train.get('steps')} steps; device {train.get('device')}).",
    ]
    if time_steps:
        res["training_time"] = time_training(train["command"], time_steps, int(train.get("steps") or 0))
        summary += [f"Training speed at {t['threads']} thread(s): {t['s_per_step']:.3f} s/step over {time_steps} "
                    f"steps; the full {train.get('steps')} steps take about {t['projected_min']:.1f} min (projected)."
                    for t in res["training_time"]]
    payload = {"title": f"Foundation: the {model} teacher", "summary": summary, "raw": res,
               "tables": [{"title": f"{model}, 35-NFE Heun, n={n}",
                           "columns": ["sampling", "n", "FD", "noise floor", "FD/floor", "confidence",
                                       "confidence (real)", "ratio", "class entropy", "accuracy"],
                           "rows": rows}]}
    path = write_result("foundation", payload)
    click.echo(dumps(res, indent=1) if as_json else "\n".join(summary) + f"\nwrote {path}")


def time_training(command: str, steps: int, full_steps: int) -> list[dict[str, float]]:
    """Run the first `steps` steps of a recorded `fewstep train` command into a temporary folder at 1 and 2 threads;
    seconds per step (process start included, so the projection errs long) and the projected full run."""
    argv = shlex.split(command)
    if argv[:2] != ["fewstep", "train"] or "--out" not in argv:
        raise ValueError(f"the manifest's command is not a `fewstep train ... --out FILE` command: {command!r}")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for threads in (1, 2):
            args = list(argv[2:])
            args[args.index("--out") + 1] = str(Path(tmp) / f"t{threads}.safetensors")
            args += ["--steps", str(steps), "--ckpt-every", str(steps), "--threads", str(threads), "--quiet"]
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fewstep", "train", *args], check=True, capture_output=True)
            per = (time.perf_counter() - t0) / steps
            out.append({"threads": threads, "s_per_step": per, "projected_min": per * full_steps / 60})
    return out

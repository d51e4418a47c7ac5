"""`fewstep search`: S^3 plan search for a zoo model, a fewstep checkpoint or a local diffusers directory."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import click

from .checks import finite, nonempty, writable
from .options import common, json_option


def load_model(model: str, device: str) -> Any:
    """A denoiser from a zoo name, a fewstep .safetensors path, or a diffusers `save_pretrained` directory."""
    from ..bridge.load import is_diffusers_dir

    if is_diffusers_dir(model):
        import fewstep as fs

        return fs.from_diffusers(model, device=device)
    from .. import zoo

    return zoo.load(model, device)


def _command(model: str, nfe: int, out: str, budget: int | None, metric: str, n_samples: int, seed: int,
             sigma_min: float | None, sigma_max: float | None, threads: int | None = None) -> str:
    args = ["fewstep", "search", "--model", model, "--nfe", str(nfe), "--out", out, "--metric", metric,
            "--n-samples", str(n_samples), "--seed", str(seed)]
    if threads is not None:
        args += ["--threads", str(threads)]
    if budget is not None:
        args += ["--budget", str(budget)]
    for flag, v in (("--sigma-min", sigma_min), ("--sigma-max", sigma_max)):
        if v is not None:
            args += [flag, str(v)]
    return shlex.join(args)


@click.command()
@click.option("--model", required=True, callback=nonempty,
              help="zoo name (digits-edm), fewstep .safetensors path, or diffusers dir")
@click.option("--nfe", required=True, type=int, help="denoiser evaluations per sample (the budget of the plan)")
@click.option("--out", required=True, callback=writable, help="plan file to write (JSON)")
@click.option("--budget", type=int, default=None, help="plan evaluations to spend [default: a few minutes' worth]")
@click.option("--metric", type=click.Choice(["rms", "fd"]), default="rms", show_default=True,
              help="rms: error vs a high-accuracy solve from the same noise; fd: FD-digits vs real data")
@click.option("--n-samples", type=int, default=128, show_default=True, help="noises every candidate is scored on")
@click.option("--sigma-min", type=float, default=None, callback=finite, help="[default: the model's sigma_min]")
@click.option("--sigma-max", type=float, default=None, callback=finite, help="[default: the model's sigma_max]")
@click.option("--state", "state", default=None, callback=writable,
              help="search state file [default: OUT.state.pt]")
@click.option("--resume", is_flag=True, help="continue the search saved in the state file (a killed run goes on)")
@click.option("--workers", type=int, default=1, show_default=True, help="processes that score candidates")
@click.option("--quiet", is_flag=True, help="no progress display")
@click.option("--threads", type=int, default=None, help="torch threads (1 on a shared machine) [default: torch's]")
@common
@json_option
def search(model: str, nfe: int, out: str, budget: int | None, metric: str, n_samples: int, sigma_min: float | None,
           sigma_max: float | None, state: str | None, resume: bool, workers: int, quiet: bool, threads: int | None,
           device: str, seed: int, as_json: bool) -> None:
    """S^3: search the best solver plan for MODEL at NFE evaluations and write it to OUT."""
    import torch

    from ..io import git_commit
    from ..search import search as run_search
    from ..search import write_plan_file
    from ..solvers.plan import json_safe

    if nfe < 1:
        raise click.BadParameter(f"must be a positive integer, got {nfe}", param_hint="--nfe")
    if state is not None and Path(state).absolute().resolve() == Path(out).absolute().resolve():
        raise click.BadParameter(f"is the same file as --out ({out}); the search state would overwrite the plan: give "
                                 "--state another path", param_hint="--state")
    if threads is not None:
        if threads < 1:
            raise click.BadParameter(f"must be a positive integer, got {threads}", param_hint="--threads")
        torch.set_num_threads(threads)
    den = load_model(model, device)
    shape = getattr(den, "shape", None)
    if shape is None:
        raise ValueError(f"model {model!r} does not declare its sample shape (den.shape); it cannot be searched")
    lo = float(den.sigma_min) if sigma_min is None else sigma_min
    hi = float(den.sigma_max) if sigma_max is None else sigma_max
    state_path = Path(state or f"{out}.state.pt")
    if resume and not state_path.is_file():
        raise FileNotFoundError(f"no search state at {state_path}; run without --resume to start a fresh search")
    if state_path.exists() and not resume:
        state_path.unlink()  # a fresh search; --resume continues instead
    if torch.get_num_threads() > 1 and workers > 1:
        torch.set_num_threads(1)
    plan = run_search(den, nfe, tuple(shape), lo, hi, n_samples=n_samples, budget=budget, seed=seed, metric=metric,
                      progress=not quiet and not as_json, state_path=state_path, workers=workers, model_id=model)
    meta = {"command": _command(model, nfe, out, budget, metric, n_samples, seed, sigma_min, sigma_max, threads),
            "model": model, "commit": git_commit(), **{k: v for k, v in plan.extra.items() if k != "tau"},
            "predictor_tau_last": _last_tau(plan.extra.get("tau", []))}
    write_plan_file(out, plan, meta)
    if as_json:
        click.echo(json.dumps(json_safe({"out": out, "nfe": plan.nfe, **meta}), indent=2, default=float,
                              allow_nan=False))
    else:
        click.echo(f"wrote {out}: nfe={plan.nfe}, {metric}={meta['score']:.4g} (best hand-made "
                   f"{meta['best_baseline']}: {meta['best_baseline_score']:.4g}), {meta['evaluations']} evaluations "
                   f"in {meta['wall_s']:.0f} s")


def _last_tau(taus: list[float]) -> float | None:
    """Mean Kendall tau of the predictor over the last 5 guided stages; None (JSON null) when none ran."""
    vals = [t for t in taus if t == t]
    return sum(vals[-5:]) / len(vals[-5:]) if vals else None

"""`fewstep search`: S^3 plan search for a zoo model, a fewstep checkpoint or a local diffusers directory."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import click

from .checks import finite, nonempty, writable
from .options import common, init_distributed, json_option, leave_distributed

# fewstep.search.score.OBJECTIVES and search.api.DEFAULT_OBJECTIVE, spelled out so `--help` needs no torch
OBJECTIVES = ("mean", "rmse", "cvar")
DEFAULT_OBJECTIVE = "rmse"


def load_model(model: str, device: str) -> Any:
    """A denoiser from a zoo name, a fewstep .safetensors path, or a diffusers `save_pretrained` directory."""
    from ..bridge.load import is_diffusers_dir

    if is_diffusers_dir(model):
        import fewstep as fs

        return fs.from_diffusers(model, device=device)
    from .. import zoo

    return zoo.load(model, device)


def _command(model: str, nfe: int, out: str, budget: int | None, metric: str, n_samples: int, seed: int,
             sigma_min: float | None, sigma_max: float | None, threads: int | None = None,
             objective: str | None = None, n_val: int | None = None, labels: str | None = None,
             guidance: float | None = None) -> str:
    args = ["fewstep", "search", "--model", model, "--nfe", str(nfe), "--out", out, "--metric", metric,
            "--n-samples", str(n_samples), "--seed", str(seed)]
    if threads is not None:
        args += ["--threads", str(threads)]
    if budget is not None:
        args += ["--budget", str(budget)]
    for flag, v in (("--sigma-min", sigma_min), ("--sigma-max", sigma_max), ("--objective", objective),
                    ("--n-val", n_val), ("--class-label", labels), ("--guidance", guidance)):
        if v is not None:
            args += [flag, str(v)]
    return shlex.join(args)


def _labels(value: str | None, model: Any) -> list[int] | None:
    """--class-label "3" or "0,1,2" (cycled over the noises) -> labels, checked against the model's classes."""
    if value is None:
        return None
    from ..zoo.lookup import num_classes

    try:
        labels = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"must be a class index or comma-separated indices, got {value!r}",
                                 param_hint="--class-label") from None
    classes = num_classes(model) or getattr(model, "num_classes", 0)
    if not labels or any(v < 0 for v in labels) or (classes and max(labels) >= classes):
        raise click.BadParameter(f"class labels must lie in [0, {classes - 1 if classes else 'K-1'}], got {value!r}",
                                 param_hint="--class-label")
    if not classes and getattr(model, "config", None) is not None:
        raise click.BadParameter("this model is unconditional (no class labels); drop --class-label",
                                 param_hint="--class-label")
    return labels


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
@click.option("--workers", type=int, default=1, show_default=True,
              help="processes that score candidates (or run under torchrun: one rank per process/GPU)")
@click.option("--objective", type=click.Choice(list(OBJECTIVES)), default=None,
              help=f"rms: how per-sample errors reduce to a score [default: {DEFAULT_OBJECTIVE}: sees broken samples]")
@click.option("--n-val", type=int, default=None,
              help="validation noises of the final choice [default: max(512, 2 n-samples)]")
@click.option("--class-label", "class_label", default=None,
              help="class label, or comma-separated labels cycled over the noises (class-conditional model)")
@click.option("--guidance", type=float, default=None, callback=finite,
              help="classifier-free guidance scale, D_u + g (D_c - D_u) (1 = none); needs --class-label")
@click.option("--quiet", is_flag=True, help="no progress display")
@click.option("--threads", type=int, default=None, help="torch threads (1 on a shared machine) [default: torch's]")
@common
@json_option
def search(model: str, nfe: int, out: str, budget: int | None, metric: str, n_samples: int, sigma_min: float | None,
           sigma_max: float | None, state: str | None, resume: bool, workers: int, objective: str | None,
           n_val: int | None, class_label: str | None, guidance: float | None, quiet: bool, threads: int | None,
           device: str, seed: int, as_json: bool) -> None:
    """S^3: search the best solver plan for MODEL at NFE evaluations and write it to OUT (the best hand-made plan
    when no searched one beats it on validation noise). Under torchrun the evaluations spread over the ranks."""
    import torch

    from ..io import git_commit
    from ..search import dist, write_plan_file
    from ..search import search as run_search
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
    if n_val is not None and n_val < 2:
        raise click.BadParameter(f"must be an integer >= 2, got {n_val}", param_hint="--n-val")
    if guidance is not None and guidance != 1.0 and class_label is None:
        raise click.BadParameter("guidance pushes samples towards a class; give --class-label", param_hint="--guidance")
    device = init_distributed(device)
    main = dist.is_main()
    den = load_model(model, device)
    labels = _labels(class_label, den)
    shape = getattr(den, "shape", None)
    if shape is None:
        raise ValueError(f"model {model!r} does not declare its sample shape (den.shape); it cannot be searched")
    lo = float(den.sigma_min) if sigma_min is None else sigma_min
    hi = float(den.sigma_max) if sigma_max is None else sigma_max
    state_path = Path(state or f"{out}.state.pt")
    if resume and not state_path.is_file():
        raise FileNotFoundError(f"no search state at {state_path}; run without --resume to start a fresh search")
    if state_path.exists() and not resume and main:
        state_path.unlink()  # a fresh search; --resume continues instead
    if torch.get_num_threads() > 1 and workers > 1:
        torch.set_num_threads(1)
    kw = {"objective": objective} if objective else {}
    plan = run_search(den, nfe, tuple(shape), lo, hi, n_samples=n_samples, budget=budget, seed=seed, metric=metric,
                      cond=labels, guidance=guidance, progress=not quiet and not as_json, state_path=state_path,
                      workers=workers, model_id=model, n_val=n_val, **kw)
    meta = {"command": _command(model, nfe, out, budget, metric, n_samples, seed, sigma_min, sigma_max, threads,
                                objective, n_val, class_label, guidance),
            "model": model, "commit": git_commit(), "class_label": labels, "world_size": dist.world()[1],
            **{k: v for k, v in plan.extra.items() if k != "tau"},
            "predictor_tau_last": _last_tau(plan.extra.get("tau", []))}
    if main:
        write_plan_file(out, plan, meta)
        if as_json:
            click.echo(json.dumps(json_safe({"out": out, "nfe": plan.nfe, **meta}), indent=2, default=float,
                                  allow_nan=False))
        else:
            click.echo(_summary(out, plan, meta, metric))
    leave_distributed()


def _summary(out: str, plan: Any, meta: dict[str, Any], metric: str) -> str:
    """The human line: what was written, and whether it is a searched plan or the best hand-made one."""
    head = f"wrote {out}: nfe={plan.nfe}, "
    tail = f"{meta['evaluations']} evaluations in {meta['wall_s']:.0f} s"
    val = f"{meta['n_val']} validation noises"
    if meta["chosen"] == "hand-made":
        return (head + f"the best hand-made plan {plan.name}: no searched plan beat it on {val} (paired bootstrap, "
                f"one-sided {meta['confidence']:.3g}); {metric}={meta['score']:.4g}, {tail}")
    return (head + f"searched {metric}={meta['score']:.4g}, validation {meta['val_score']:.4g} vs best hand-made "
            f"{meta['best_baseline']} {meta['best_baseline_val']:.4g} (ratio bound {meta['val_ratio_bound']:.3g} at "
            f"{meta['confidence']:.3g}), {tail}")


def _last_tau(taus: list[float]) -> float | None:
    """Mean Kendall tau of the predictor over the last 5 guided stages; None (JSON null) when none ran."""
    vals = [t for t in taus if t == t]
    return sum(vals[-5:]) / len(vals[-5:]) if vals else None

"""`fewstep sample` (sample a model with a plan, write a grid, report FD next to its noise floor) and
`fewstep eval` (the same metrics on a saved sample file). Thin: the work is in fs.generate and fewstep.metrics."""

from __future__ import annotations

import time
from typing import Any

import click

from .checks import finite, nonempty, writable_or_empty
from .options import common, emit, json_option
from .plans import GRIDS, PLANS


def _metrics(x: Any, dataset: str | None, labels: Any, seed: int = 0, device: str = "cpu",
             progress: bool = False) -> dict[str, Any]:
    from .. import metrics

    if dataset is None:
        return {}
    return metrics.evaluate(x, dataset, labels=labels, seed=seed, device=device, progress=progress)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _render(r: dict[str, Any]) -> None:
    head = [k for k in ("model", "plan", "nfe", "grid", "class_label", "cfg", "samples_file", "dataset", "n")
            if r.get(k) is not None and not (k == "cfg" and r[k] == 1.0)]
    click.echo("  ".join(f"{k}={r[k]}" for k in head))
    if "fd" in r:
        click.echo(f"FD {r['fd']:.4g}  (real-data noise floor at n={r['noise_floor_n']}: {r['noise_floor']:.4g}, "
                   f"ratio {r['fd_over_floor']:.2f})")
        click.echo(f"precision {r['precision']:.3f}  recall {r['recall']:.3f}  density {r['density']:.3f}  "
                   f"coverage {r['coverage']:.3f}")
    if "confidence" in r:
        line = f"classifier confidence {r['confidence']:.3f} (real {r['confidence_real']:.3f})"
        click.echo(line + (f"  accuracy {r['accuracy']:.3f}" if "accuracy" in r else ""))
    if "sample_seconds" in r:
        click.echo(f"sampling {r['sample_seconds']:.3f} s  ({r['images_per_s']:.1f} images/s)  "
                   f"wall {r['wall_seconds']:.2f} s")
    for k in ("out", "save"):
        if r.get(k):
            click.echo(f"wrote {r[k]}")


def _labels(class_label: str | None, n: int, classes: int, cfg: float) -> Any:
    import torch

    if class_label is None:
        if cfg != 1.0:
            raise ValueError("--cfg needs --class-label (guidance pushes towards a class)")
        return None
    if classes == 0:
        raise ValueError("--class-label given but this model is unconditional (trained without classes); drop it")
    if class_label == "all":
        return torch.arange(n) % classes
    try:
        k = int(class_label)
    except ValueError:
        raise ValueError(f"--class-label expects a class index or 'all', got {class_label!r}") from None
    if not 0 <= k < classes:
        raise ValueError(f"--class-label {k} is outside this model's classes 0..{classes - 1}")
    return torch.full((n,), k, dtype=torch.long)


def _check_metrics_data(dataset: str | None) -> None:
    """Before sampling: the metrics need a shipped feature classifier, which an image folder never has; and a
    folder recorded by an older model is a path relative to where it was trained. Say so, and how to go on."""
    from pathlib import Path

    if dataset is None:
        return
    folder = dataset.removeprefix("folder:") if dataset.startswith("folder:") else None
    if folder is None and Path(dataset).is_dir():
        folder = dataset
    if folder is None:
        return
    where = "" if Path(folder).is_dir() else (
        f" (a path relative to the directory the model was trained in: from here it would be "
        f"{Path(folder).absolute()}, which does not exist)")
    raise click.BadParameter(f"the samples would be scored against the image folder {folder!r}{where}, but FD and the "
                             "other metrics need a shipped feature classifier and an image folder has none: pass "
                             "--no-metrics (the samples, --out and --save are written as usual)", param_hint="--data")


DTYPES = ("float32", "bfloat16", "float16")


@click.command()
@click.option("--model", required=True, callback=nonempty,
              help="zoo name (digits-edm), a fewstep .safetensors file or a diffusers folder")
@click.option("--plan", "plan_spec", default=None,
              help=f"plan name ({', '.join(PLANS)}), a plan .json file, or 'searched' (the shipped plan; "
                   "`fewstep plans list`) [the model's recorded default: dpm_solver_pp_2m for a denoiser; a "
                   "student's own sigmas]")
@click.option("--nfe", type=int, default=None,
              help="denoiser evaluations (a student's steps) [the recorded default: 10, or the plan file's]")
@click.option("--grid", default=None, help=f"sigma grid for a named plan: {', '.join(GRIDS)} [logsnr]")
@click.option("--n", "n", default=256, show_default=True, type=int, help="number of samples")
@click.option("--batch", default=256, show_default=True, type=int, help="samples per solver call")
@click.option("--class-label", default=None, help="class index, or 'all' to cycle through the classes")
@click.option("--cfg", "cfg_scale", default=1.0, show_default=True, type=float, callback=finite,
              help="classifier-free guidance scale (1 = none)")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(DTYPES),
              help="precision of the network (the solver keeps float32)")
@click.option("--data", "dataset", default=None, help="data set for FD [default: the model's own]")
@click.option("--out", default="samples.png", show_default=True, callback=writable_or_empty,
              help="image grid PNG ('' for none)")
@click.option("--grid-n", default=64, show_default=True, type=int, help="images in the grid")
@click.option("--save", default=None, callback=writable_or_empty, help="also save the samples to FILE.pt or FILE.npz")
@click.option("--no-metrics", is_flag=True, help="skip FD / precision / recall / confidence")
@click.option("--compile", "compile_", is_flag=True,
              help="run the network under torch.compile (the first batch pays the compilation: worth it for large n)")
@click.option("--quiet", is_flag=True, help="no progress bar (it is drawn on stderr)")
@common
@json_option
def sample(model: str, plan_spec: str | None, nfe: int | None, grid: str | None, n: int, batch: int,
           class_label: str | None, cfg_scale: float, dtype: str, dataset: str | None, out: str, grid_n: int,
           save: str | None, no_metrics: bool, compile_: bool, quiet: bool, device: str, seed: int,
           as_json: bool) -> None:
    """Sample a model (fs.generate) and report FD (with the real-data noise floor), NFE, time and images/s.

    --json keys: model, plan, nfe, grid, n, seed, class_label, cfg, device, dtype, compile, sample_seconds,
    images_per_s, wall_seconds, out, save, and from fs.metrics.evaluate: dataset, fd, noise_floor, noise_floor_n,
    fd_over_floor, precision, recall, density, coverage, confidence, confidence_real, class_entropy,
    accuracy (with labels).
    """
    import torch

    from ..io import save_grid, save_samples
    from ..zoo.generate import draw
    from ..zoo.lookup import dataset_of, model_name, num_classes, resolve

    t0 = time.perf_counter()
    if n < 2:
        raise ValueError(f"--n must be at least 2 (FD needs a covariance), got {n}")
    if save and not save.endswith((".pt", ".npz")):
        raise ValueError(f"--save takes a file ending in .pt or .npz, got {save!r}")
    m = resolve(model, device)
    labels = _labels(class_label, n, num_classes(m), cfg_scale)
    dataset = dataset or dataset_of(m)
    if not no_metrics:
        _check_metrics_data(dataset)
    d = draw(m, n, nfe=nfe, plan=plan_spec, seed=seed, labels=labels, guidance=cfg_scale, batch=batch,
             device=device, dtype=getattr(torch, dtype), grid=grid, name=model_name(model),
             progress=not quiet, compile=compile_)
    x, seconds = d.x, d.seconds
    r: dict[str, Any] = {"model": model, "plan": d.sampler.get("plan", d.sampler["sampler"]), "nfe": d.nfe,
                         "grid": grid, "n": n, "seed": seed, "class_label": class_label, "cfg": cfg_scale,
                         "device": device, "dtype": dtype, "compile": compile_, "sample_seconds": seconds,
                         "images_per_s": n / seconds if seconds > 0 else float("inf")}
    if "sigmas" in d.sampler:
        r["sigmas"] = d.sampler["sigmas"]
    if x.ndim == 4 and out:
        r["out"] = str(save_grid(x[:grid_n], out))
    if save:
        r["save"] = str(save_samples(x, save, labels, meta={k: r[k] for k in ("model", "plan", "nfe")}
                                     | {"data": dataset}))
    if not no_metrics:
        r.update(_metrics(x, dataset, labels, device=device, progress=not quiet))
    r["wall_seconds"] = time.perf_counter() - t0
    emit(r, as_json, _render)


@click.command("eval")
@click.option("--samples", "samples_file", required=True, help="samples saved as .npz (array x) or .pt")
@click.option("--data", "dataset", default=None, help="data set the samples imitate [default: the file's meta]")
@click.option("--labels/--no-labels", default=True, show_default=True,
              help="score accuracy against the labels stored in the file (array y)")
@click.option("--quiet", is_flag=True, help="no progress bar (it is drawn on stderr)")
@common
@json_option
def eval_cmd(samples_file: str, dataset: str | None, labels: bool, quiet: bool, device: str, seed: int,
             as_json: bool) -> None:
    """FD (with the real-data noise floor), precision/recall/density/coverage and classifier confidence of saved
    samples. The feature classifier runs on --device; --seed draws the real images precision/recall compare with."""
    from ..io import load_samples

    x, y = load_samples(samples_file)
    if dataset is None and samples_file.endswith(".pt"):
        import torch

        obj = torch.load(samples_file, map_location="cpu", weights_only=True)
        dataset = (obj.get("meta") or {}).get("data") if isinstance(obj, dict) else None
    if dataset is None:
        raise ValueError("name the data set the samples imitate with --data (e.g. --data digits)")
    if len(x) < 2:
        raise ValueError(f"{samples_file} holds {len(x)} samples; FD needs at least 2")
    r = {"samples_file": samples_file, "dataset": dataset} | _metrics(x, dataset, y if labels else None, seed, device,
                                                                      not quiet)
    emit(r, as_json, _render)

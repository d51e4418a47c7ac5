"""`fewstep edit --op boundary`: BoundaryDiffusion (Zhu et al. 2023) on held-out digits with a frozen model: fit
(or load) a linear boundary at the mixing step, move each image across it in one step, regenerate."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .checks import writable


def _sigma(ctx: click.Context, param: click.Parameter, value: str) -> str | float:
    if value == "auto":
        return value
    try:
        v = float(value)
    except ValueError:
        raise click.BadParameter(f"give 'auto' or a positive number, got {value!r}", ctx, param) from None
    if not v > 0:
        raise click.BadParameter(f"the mixing sigma must be > 0, got {v}", ctx, param)
    return v


def boundary_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options `--op boundary` reads (the other ops ignore them)."""
    opts = [
        click.option("--attribute", default="thickness",
                     help="boundary: thickness, slant or a class pair such as 3-8 (positive side last)"),
        click.option("--boundary", "boundary_path", default=None, help="boundary: load this boundary file instead "
                     "of fitting one"),
        click.option("--save-boundary", default=None, callback=writable,
                     help="boundary: write the fitted boundary here (.safetensors + .json)"),
        click.option("--n-fit", default=200, type=click.IntRange(2, 1000), help="boundary: labelled train images"),
        click.option("--sigma", "mix_sigma", default="0.5", callback=_sigma,
                     help="boundary: mixing step sigma, or 'auto' (the Gaussian-annulus criterion)"),
        click.option("--distance", default=2.5, type=float,
                     help="boundary: target signed distance in spreads of the fitting points; each image is moved "
                          "to the other side (sign chosen per image)"),
        click.option("--space", default="x", type=click.Choice(["x", "h", "both"]),
                     help="boundary: move x_t, the bottleneck h, or both"),
        click.option("--nfe", "edit_nfe", default=5, type=click.IntRange(2, 50),
                     help="boundary: regeneration NFE (the inversion spends one less)"),
        click.option("--overwrite", is_flag=True, help="boundary: replace an existing --save-boundary file"),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def run_boundary(model: str | None, n: int, out: str, as_json: bool, device: str, seed: int, attribute: str,
                 boundary_path: str | None, save_boundary: str | None, n_fit: int, mix_sigma: str | float,
                 distance: float, space: str, edit_nfe: int, overwrite: bool) -> None:
    import torch

    from ..bench import boundary as BB
    from ..edit import boundary as B
    from ..edit.boundary.attributes import measure
    from ..errors import CheckpointError
    from ..io import save_grid
    from ..zoo import load

    try:
        measure(attribute)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--attribute") from None
    if save_boundary and Path(save_boundary).with_suffix(".safetensors").exists() and not overwrite:
        raise click.BadParameter(f"{save_boundary} exists; pass --overwrite to replace it",
                                 param_hint="--save-boundary")
    model = model or "digits-edm"
    den = load(model, device).eval()
    if tuple(getattr(den, "shape", ()) or ()) != (1, 8, 8):
        raise click.BadParameter(f"{model} does not make 8x8 digits; the boundary op edits digits with a digits "
                                 "model such as digits-edm", param_hint="--model")
    t = BB.task(attribute, n_fit=n_fit, seed=seed)
    if boundary_path:
        try:
            b = B.load(boundary_path)
        except CheckpointError as e:
            raise click.BadParameter(str(e), param_hint="--boundary") from None
    else:
        b = B.fit(den, t.fit_x, t.fit_y, sigma=mix_sigma, plan={"nfe": edit_nfe}, attribute=attribute)
    if save_boundary:
        b.save(save_boundary)
    x, cls = torch.cat([t.val_x, t.test_x])[:n], torch.cat([t.val_cls, t.test_cls])[:n]
    res = BB.edit_task(den, t, b, x, cls, distance, space=space if b.h is not None else "x")
    save_grid(torch.cat([x, res]).cpu(), out, nrow=min(len(res), 16))
    s = BB.score(t, x, cls, res, BB.class_pool())
    result = {"op": "boundary", "model": model, "attribute": attribute, "sigma": b.sigma, "space": space,
              "distance": distance, "n": len(res), "nfe": 2 * int(b.plan["nfe"]) - 1,
              "seconds_fit": b.info.get("seconds_fit"), "success": s["success"], "class_kept": s["class_kept"],
              "closer": s["closer"], "out": out}
    if save_boundary:
        result["boundary"] = str(Path(save_boundary).with_suffix(".safetensors"))
    click.echo(json.dumps(result, indent=1) if as_json else " ".join(f"{k}={v}" for k, v in result.items()))

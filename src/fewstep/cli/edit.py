"""`fewstep edit`: zero-shot editing of held-out images with a consistency model (CM Alg. 4 and App. D)."""

from __future__ import annotations

import json
import math
from typing import Any

import click

from .checks import finite, nonempty, writable
from .edit_boundary import boundary_options, run_boundary
from .options import common, json_option

OPS = ["inpaint", "superres", "colorize", "stroke", "denoise", "interpolate", "boundary"]


def _sigmas(text: str | None, sigma_max: float) -> list[float]:
    if not text:
        return [sigma_max]
    try:
        s = [float(v) for v in text.split(",")]
    except ValueError as e:
        raise click.BadParameter(f"not a comma-separated list of numbers: {text!r}", param_hint="--sigmas") from e
    if not all(math.isfinite(v) for v in s):
        raise click.BadParameter(f"every sigma must be a finite number, got {text!r}", param_hint="--sigmas")
    return s


def _mask(kind: str, shape: tuple[int, ...]) -> Any:
    import torch

    C, H, W = shape
    m = torch.zeros(1, C, H, W)
    if kind == "lower":
        m[..., H // 2:, :] = 1
    elif kind == "right":
        m[..., W // 2:] = 1
    elif kind == "center":
        m[..., H // 4: H - H // 4, W // 4: W - W // 4] = 1
    else:
        raise click.BadParameter(f"unknown mask {kind!r}; use lower, right or center", param_hint="--mask")
    return m


@click.command(context_settings={"show_default": True})
@click.option("--op", required=True, type=click.Choice(OPS))
@click.option("--model", default=None, callback=nonempty,
              help="consistency model (zoo name or path) [digits-cd; digits-color-cd for colorize]")
@click.option("--data", "data_name", default=None, callback=nonempty,
              help="data set of the inputs [digits; digits_color for colorize]")
@click.option("--n", default=16, type=click.IntRange(1),
              help="number of held-out (test split) images to edit (interpolate: frames, at least 2)")
@click.option("--sigmas", default=None, help="comma-separated sigmas of Alg. 4 [sigma_max]; stroke: start sigma first")
@click.option("--mask", "mask_kind", default="lower", help="inpaint mask: lower, right or center half/box")
@click.option("--factor", default=2, type=click.IntRange(1), help="superres factor (8x8 -> 4x4 -> 8x8 for 2)")
@click.option("--candidates", default=1, type=click.IntRange(1),
              help="inpaint/superres/colorize: run K chains, keep per image the one whose known part the model "
                   "reconstructs best (self-consistency)")
@click.option("--noise", "noise_sigma", default=0.5, type=float, callback=finite,
              help="denoise: sigma of the added noise")
@click.option("--out", default="edit.png", callback=writable, help="PNG grid: inputs, results, truth")
@boundary_options
@json_option
@common
def edit(op: str, model: str | None, data_name: str | None, n: int, sigmas: str | None, mask_kind: str, factor: int,
         candidates: int, noise_sigma: float, out: str, as_json: bool, device: str, seed: int,
         **boundary: Any) -> None:
    """Zero-shot editing with a consistency model (inpaint, superres, colorize, stroke, denoise, interpolate), or
    BoundaryDiffusion with a frozen diffusion model (boundary)."""
    import torch

    if op == "boundary":
        return run_boundary(model, n, out, as_json, device, seed, **boundary)
    import torch.nn.functional as F

    from .. import data as fsdata
    from .. import edit as E
    from ..io import save_grid
    from ..metrics import confidence
    from ..zoo import load

    if op == "interpolate" and n < 2:
        raise click.BadParameter(f"interpolate needs at least 2 frames (the two ends), got {n}", param_hint="--n")
    model = model or ("digits-color-cd" if op == "colorize" else "digits-cd")
    cm = load(model, device)
    ds = fsdata.get(data_name or ("digits_color" if op == "colorize" else "digits"), split="test")
    if tuple(ds.shape) != tuple(cm.shape):
        fix = ("colorize needs a colour model (3 channels), e.g. --model digits-color-cd" if op == "colorize" else
               f"give --data a data set of shape {tuple(cm.shape)} or a --model trained on {ds.name}")
        raise click.BadParameter(f"{model} makes images {tuple(cm.shape)} but {ds.name} has {tuple(ds.shape)}; "
                                 f"{fix}", param_hint="--model")
    H, W = ds.shape[-2:]
    if op == "superres" and (H % factor or W % factor):
        ok = [f for f in range(2, min(H, W) + 1) if H % f == 0 and W % f == 0]
        raise click.BadParameter(f"{factor} does not divide the image size {H}x{W}; use one of {ok}",
                                 param_hint="--factor")
    x = ds.x[:n].to(device)
    g = torch.Generator(device=device).manual_seed(seed)
    s = _sigmas(sigmas, float(cm.sigma_max)) if (sigmas or op != "stroke") else [2.0, 0.5]
    if op == "inpaint":
        m = _mask(mask_kind, tuple(x.shape[1:])).to(device)
        inp, res = x * (1 - m) - m, E.inpaint(cm, x, m, s, generator=g, candidates=candidates)
    elif op == "superres":
        low = F.avg_pool2d(x, factor)
        inp = F.interpolate(low, scale_factor=factor, mode="nearest")
        res = E.superres(cm, low, factor, s, generator=g, candidates=candidates)
    elif op == "colorize":
        gray = E.transforms.to_gray(x)
        inp, res = gray.expand(-1, 3, -1, -1), E.colorize(cm, gray, s, generator=g, candidates=candidates)
    elif op == "stroke":
        inp = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest").sign()  # a crude 'stroke' painting
        res = E.stroke(cm, inp, s, generator=g)
    elif op == "denoise":
        inp = x + noise_sigma * torch.randn(x.shape, generator=g, device=device)
        res = E.denoise(cm, inp, noise_sigma)
    else:
        z = torch.randn((2, *x.shape[1:]), generator=g, device=device)
        res = E.interpolate(cm, z[:1], z[1:], [i / (n - 1) for i in range(n)])[:, 0]
        inp, x = res, res
    save_grid(torch.cat([inp, res, x]).cpu(), out, nrow=len(res))
    result: dict[str, Any] = {"op": op, "model": model, "n": len(res), "sigmas": s, "candidates": candidates,
                              "out": out}
    if x.shape[1] == 1 and op != "interpolate" and ds.y is not None and ds.name == "digits":
        y = ds.y[:n].to(device)
        result["label_kept"] = confidence(res, "digits", labels=y)["accuracy"]
    click.echo(json.dumps(result, indent=1) if as_json else
               " ".join(f"{k}={v}" for k, v in result.items()))

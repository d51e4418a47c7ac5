"""`fewstep quantize`: post-training quantization of a model (TFMQ-DM or the Q-Diffusion baseline), saved as the
"quantized" model kind that `fewstep sample`, `fs.zoo.load` and `fs.generate` run."""

from __future__ import annotations

from pathlib import Path

import click

from .checks import nonempty, writable
from .options import common, json_option


@click.command(context_settings={"show_default": True})
@click.option("--model", required=True, callback=nonempty, help="model to quantize (zoo name or checkpoint)")
@click.option("--bits", default="w8a8", type=click.Choice(["w8a8", "w4a8", "w4a32"]), help="weight / activation bits")
@click.option("--method", default="tfmq", type=click.Choice(["tfmq", "qdiffusion"]), help="PTQ method")
@click.option("--plan", default=None,
              help="plan TFMQ calibrates for: a name, 'searched' or a .json file [the model's recorded sampler]")
@click.option("--nfe", default=None, type=click.IntRange(min=1), help="NFE of a named or searched plan")
@click.option("--grid", default=None, help="sigma grid of a named plan [the recorded one]")
@click.option("--calib-n", default=128, type=click.IntRange(min=4), help="calibration noises (one sampling pass)")
@click.option("--iters", default=80, type=click.IntRange(min=0), help="AdaRound iterations per block")
@click.option("--no-cache", is_flag=True, help="TFMQ: use the TIAR-reconstructed TIB instead of the FP cache")
@click.option("--out", required=True, callback=writable, help="quantized model file to write (.safetensors)")
@click.option("--overwrite", is_flag=True, help="replace --out if it exists")
@click.option("--threads", default=1, type=int, help="torch CPU threads")
@common
@json_option
def quantize(model: str, bits: str, method: str, plan: str | None, nfe: int | None, grid: str | None, calib_n: int,
             iters: int, no_cache: bool, out: str, overwrite: bool, threads: int, seed: int, device: str,
             as_json: bool) -> None:
    """Quantize a model after training (TFMQ-DM, or Q-Diffusion) and save it as a quantized model."""
    import json

    import torch

    from ..errors import FewstepError
    from ..quant.api import quantize as run
    from ..quant.api import save
    from ..quant.recon import ReconConfig

    if device != "cpu":
        raise click.BadParameter("quantization runs on the CPU here (calibration and reconstruction are CPU-sized)",
                                 param_hint="--device")
    if Path(out).exists() and not overwrite:
        raise FewstepError(f"{out} exists; pass --overwrite to replace it or choose another --out")
    torch.set_num_threads(threads)
    q = run(model, bits=bits, method=method, plan=plan, nfe=nfe, grid=grid, calib_n=calib_n, seed=seed,
            cache=not no_cache, recon=ReconConfig(iters=iters))
    path = save(q, out)
    info = {"out": str(path), "bits": bits, "method": method, "keys": len(q.config["quant"]["keys"]),
            "calib_s": q.config["quant"]["calib_s"]}
    click.echo(json.dumps(info, indent=1) if as_json else
               f"wrote {path}: {bits} {method}, {info['keys']} plan steps, calibration {info['calib_s']:.0f} s")

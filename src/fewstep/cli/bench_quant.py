"""`fewstep bench quant`: TFMQ-DM vs Q-Diffusion (simulated W8A8 / W4A8 / W4A32) on digits-edm and digits-cd, and
optionally the real int8 table (PT2E, compiled) on mnist-ldm's UNet (fewstep.bench.quant_int8)."""

from __future__ import annotations

import click

from .options import common, json_option


@click.command(context_settings={"show_default": True})
@click.option("--n", default=500, type=click.IntRange(min=16), help="samples per FD")
@click.option("--calib-n", default=128, type=click.IntRange(min=4), help="calibration noises per plan step")
@click.option("--iters", default=60, type=click.IntRange(min=0), help="AdaRound iterations per block")
@click.option("--act-iters", default=30, type=click.IntRange(min=0), help="Q-Diffusion activation iterations")
@click.option("--bits", default="w8a8,w4a8,w4a32", help="teacher bit settings, comma-separated")
@click.option("--ship", default=None, help="also save the TFMQ NFE-5 W8A8/W4A8 teachers into this zoo folder")
@click.option("--int8", "int8_json", default=None, help="merge the int8 table from this JSON (bench.quant_int8)")
@click.option("--threads", default=1, type=int, help="torch CPU threads")
@click.option("--name", default="quant", help="result name: bench-results/<name>.json")
@common
@json_option
def quant(n: int, calib_n: int, iters: int, act_iters: int, bits: str, ship: str | None, int8_json: str | None,
          threads: int, name: str, seed: int, device: str, as_json: bool) -> None:
    """TFMQ-DM vs Q-Diffusion: FD vs full precision, temporal cosines, calibration time; real int8 speed."""
    import json
    from pathlib import Path

    import torch

    from ..bench import quant as Q
    from ..bench.common import write_result
    from ..bench.strict_json import dumps

    torch.set_num_threads(threads)
    payload = Q.run(n=n, seed=100 + seed, calib_n=calib_n, iters=iters, act_iters=act_iters,
                    bits=tuple(b for b in bits.split(",") if b), save_dir=ship)
    if int8_json:
        extra = json.loads(Path(int8_json).read_text())
        payload["tables"] += extra.get("tables", [])
        payload["summary"] += extra.get("summary", [])
        payload["raw"]["int8"] = extra.get("raw")
    path = write_result(name, payload)
    click.echo(dumps(payload["raw"], indent=1) if as_json else "\n".join(payload["summary"]) + f"\nwrote {path}")

"""`fewstep bench quant`: TFMQ-DM vs Q-Diffusion (simulated W8A8 / W4A8 / W4A32) on digits-edm and digits-cd, and
optionally the real int8 table (PT2E, compiled) on mnist-ldm's UNet (fewstep.bench.quant_int8)."""

from __future__ import annotations

import click

from .options import common, cpu_only, json_option


@click.command(context_settings={"show_default": True})
@click.option("--n", default=500, type=click.IntRange(min=16), help="samples per FD")
@click.option("--calib-n", default=128, type=click.IntRange(min=4), help="calibration noises per plan step")
@click.option("--iters", default=60, type=click.IntRange(min=0), help="AdaRound iterations per block")
@click.option("--act-iters", default=30, type=click.IntRange(min=0), help="Q-Diffusion activation iterations")
@click.option("--recon-n", default=512, type=click.IntRange(min=8), help="calibration rows the blocks are fit on")
@click.option("--bits", default="w8a8,w4a8,w4a32", help="teacher bit settings, comma-separated")
@click.option("--student-bits", default="w8a8,w4a8", help="student bit settings, comma-separated")
@click.option("--ship", default=None, help="also save the TFMQ NFE-5 W8A8/W4A8 teachers into this zoo folder")
@click.option("--sim/--no-sim", default=True, help="run the simulated part (else keep the saved one)")
@click.option("--int8/--no-int8", "int8", default=False,
              help="run the real int8 part on mnist-ldm (compiles four graphs: many minutes)")
@click.option("--int8-json", default=None,
              help="take the int8 part from this JSON (python -m fewstep.bench.quant_int8)")
@click.option("--threads", default=1, type=int, help="torch CPU threads")
@click.option("--name", default="quant", help="result name: bench-results/<name>.json")
@common
@json_option
def quant(n: int, calib_n: int, iters: int, act_iters: int, recon_n: int, bits: str, student_bits: str,
          ship: str | None, sim: bool, int8: bool, int8_json: str | None, threads: int, name: str, seed: int,
          device: str, as_json: bool) -> None:
    """TFMQ-DM vs Q-Diffusion: FD vs full precision, temporal cosines, calibration time; real int8 speed."""
    import json
    from pathlib import Path

    import torch

    from ..bench import quant as Q
    from ..bench.common import RESULTS_DIR, write_result
    from ..bench.strict_json import dumps
    from ..errors import FewstepError

    cpu_only(device, "fewstep bench quant")
    torch.set_num_threads(threads)
    saved = RESULTS_DIR / f"{name}.json"
    old = json.loads(saved.read_text()) if saved.is_file() else None
    if sim:
        payload = Q.run(n=n, seed=100 + seed, calib_n=calib_n, iters=iters, act_iters=act_iters,
                        recon_n=recon_n, bits=tuple(b for b in bits.split(",") if b),
                        student_bits=tuple(b for b in student_bits.split(",") if b), save_dir=ship)
    elif old is None:
        raise FewstepError(f"--no-sim keeps the simulated part of {saved}, which does not exist; run with --sim")
    else:
        payload = {k: v for k, v in old.items() if k != "meta"}
        payload["raw"].setdefault("sim_meta", old.get("meta"))  # the command that measured the simulated part
        payload["summary"] = [s for s in payload["summary"] if not s.startswith("Simulated part measured by")]
        sim_meta = payload["raw"]["sim_meta"] or {}
        payload["summary"].insert(1, f"Simulated part measured by `{sim_meta.get('command')}` (commit "
                                     f"{sim_meta.get('commit')}); the int8 part as its lines say.")
        payload["tables"] = [t for t in payload["tables"] if t.get("part") != "int8"]
        payload["summary"] = [s for s in payload["summary"] if not s.startswith(("Real int8", "FD (mnist"))]
    extra = None
    if int8:
        from ..bench import quant_int8

        extra = quant_int8.run(seed=100 + seed)
    elif int8_json:
        extra = json.loads(Path(int8_json).read_text())
    elif old is not None and sim:
        extra = {"tables": [t for t in old["tables"] if t.get("part") == "int8"],
                 "summary": [s for s in old["summary"] if s.startswith(("Real int8", "FD (mnist"))],
                 "raw": old.get("raw", {}).get("int8")}
    if extra:
        payload["tables"] += extra.get("tables", [])
        payload["summary"] += extra.get("summary", [])
        payload["raw"]["int8"] = extra.get("raw")
    path = write_result(name, payload)
    click.echo(dumps(payload["raw"], indent=1) if as_json else "\n".join(payload["summary"]) + f"\nwrote {path}")

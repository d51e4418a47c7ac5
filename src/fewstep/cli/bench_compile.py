"""`fewstep bench compile`: torch.compile vs eager sampling speed of a shipped model, one run, one machine."""

from __future__ import annotations

import click
import torch

from ..bench.common import write_result
from ..bench.compile import run
from ..bench.strict_json import dumps
from .options import common, json_option


@click.command(name="compile")
@click.option("--model", default="digits-edm", show_default=True, help="zoo name or checkpoint")
@click.option("--n", type=click.IntRange(min=1), default=256, show_default=True, help="samples (one batch)")
@click.option("--nfe", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--plan", default="dpm_solver_pp_2m", show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="timed runs per mode")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch CPU threads")
@common
@json_option
def compile_(model: str, n: int, nfe: int, plan: str, repeats: int, threads: int, device: str, seed: int,
             as_json: bool) -> None:
    """Median sampling time eager vs torch.compile (compilation timed apart), max output difference; writes
    bench-results/compile.json and BENCHMARKS.md."""
    torch.set_num_threads(threads)
    payload = run(model, n, nfe, plan, repeats, seed, device)
    path = write_result("compile", payload)
    click.echo(dumps(payload, indent=1) if as_json else "\n".join(payload["summary"]) + f"\nwrote {path}")

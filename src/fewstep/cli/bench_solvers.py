"""`fewstep bench solvers`: USF plans vs diffusers schedulers on one problem per model (mixtures, digits teacher)."""

from __future__ import annotations

import click
import torch

from ..bench.solvers_run import main
from ..bench.strict_json import dumps
from .options import common, cpu_only, json_option


@click.command()
@click.option("--n-2d", default=256, show_default=True, help="samples for the 2-D mixture")
@click.option("--n-64d", default=64, show_default=True, help="samples for the 64-D mixture")
@click.option("--digits/--no-digits", default=True, show_default=True,
              help="also FD-digits and images/s on the shipped digits-edm teacher (skipped if not shipped)")
@click.option("--inversion/--no-inversion", default=True, show_default=True,
              help="also the inversion round trip x0 -> x_T -> x0 against NFE (mixture; digits-edm with --digits)")
@click.option("--quick", is_flag=True, help="fewer samples, NFEs and plans: a smoke run of a few minutes")
@click.option("--threads", default=None, type=int, help="torch threads (1 when other jobs share the CPU)")
@click.option("--no-plot", is_flag=True, help="skip bench-results/solvers.png")
@common
@json_option
def solvers(n_2d: int, n_64d: int, digits: bool, inversion: bool, quick: bool, threads: int | None, no_plot: bool,
            device: str, seed: int, as_json: bool) -> None:
    """Error vs the exact ODE solution (mixtures) and FD-digits (teacher) at NFE 3-10, fewstep vs diffusers from
    the same x_T, per-step overhead and throughput, the inversion round trip at NFE 5-50; writes
    bench-results/solvers.json and BENCHMARKS.md."""
    cpu_only(device, "bench solvers")
    if threads:
        torch.set_num_threads(threads)
    payload = main(n_2d, n_64d, seed, plot=not no_plot, digits=digits, quick=quick, inversion=inversion)
    if as_json:
        click.echo(dumps(payload, indent=1))
        return
    for line in payload["summary"]:
        click.echo(line)

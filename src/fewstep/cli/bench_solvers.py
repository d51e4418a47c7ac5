"""`fewstep bench solvers`: USF plans vs diffusers schedulers on analytic mixtures, plus solver overhead."""

from __future__ import annotations

import click


@click.command()
@click.option("--n-2d", default=256, show_default=True, help="samples for the 2-D mixture")
@click.option("--n-64d", default=128, show_default=True, help="samples for the 64-D mixture")
@click.option("--seed", default=0, show_default=True, type=int, help="base random seed")
@click.option("--no-plot", is_flag=True, help="skip bench-results/solvers.png")
def solvers(n_2d: int, n_64d: int, seed: int, no_plot: bool) -> None:
    """Error vs exact ODE solution at NFE 3-10 and per-step overhead; writes bench-results/solvers.json."""
    from ..bench.solvers import main

    payload = main(n_2d, n_64d, seed, plot=not no_plot)
    for line in payload["summary"]:
        click.echo(line)

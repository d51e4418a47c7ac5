"""`fewstep metrics train-classifier|floor`: retrain the shipped feature classifiers from their recorded recipes,
and print the real-data FD noise floors of a data set."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from ..bench.strict_json import dumps
from ..metrics import classifier, frechet
from .options import json_always


@click.group()
def metrics() -> None:
    """The project's quality metrics: its feature classifiers and FD noise floors."""


@metrics.command(name="train-classifier")
@click.argument("names", nargs=-1, required=True, type=click.Choice(sorted(classifier.RECIPES)))
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch threads (the recipe is timed on one core)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder to write to (default: the shipped fewstep/metrics/files/)")
@json_always
def train_classifier(names: tuple[str, ...], threads: int, out: Path | None, as_json: bool) -> None:
    """Retrain and ship the classifiers of data sets NAMES from their recorded recipes (one JSON line each)."""
    torch.set_num_threads(threads)
    for name in names:
        man = classifier.retrain(name, out, verbose=True)
        click.echo(dumps({k: man[k] for k in ("data", "test_accuracy", "train_accuracy", "train_seconds")},
                         indent=None))


@metrics.command()
@click.argument("dataset")
@click.option("--n", "sizes", multiple=True, default=("256", "512", "all"), show_default=True,
              help="a sample size (repeat for several); 'all' = the held-out half")
@json_always
def floor(dataset: str, sizes: tuple[str, ...], as_json: bool) -> None:
    """Print the real-data FD noise floors of DATASET at each --n as JSON."""
    for s in sizes:
        if s != "all" and not s.isdigit():
            raise click.BadParameter(f"{s!r} is not a sample size; give an integer or 'all'", param_hint="--n")
    click.echo(dumps(frechet.floors(dataset, list(sizes)), indent=1))

"""Options shared by every command: --device, --seed, --json."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

F = Callable[..., Any]


def device_option(f: F) -> F:
    return click.option("--device", default="cpu", show_default=True, help="torch device: cpu, cuda, cuda:1, mps")(f)


def seed_option(f: F) -> F:
    return click.option("--seed", default=0, show_default=True, type=int, help="base random seed")(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="print the results as JSON")(f)


def common(f: F) -> F:
    return device_option(seed_option(f))


def emit(result: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], None]) -> None:
    """Print a result dict as JSON or through a human renderer."""
    if as_json:
        click.echo(json.dumps(result, indent=2, default=float))
    else:
        render(result)

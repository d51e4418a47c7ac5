"""`fewstep bench ...`: run a benchmark, write bench-results/<name>.json, regenerate BENCHMARKS.md."""

from __future__ import annotations

import contextlib
import importlib
import json
import sys

import click

from ..bench import registry
from ..bench.strict_json import dumps
from .options import common, json_option

# subcommand -> "module:attribute" of a click command, in registry order (fewstep.bench.registry lists them).
BENCHES: dict[str, str] = registry.commands()


class _LazyBench(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*BENCHES, "all", "report"])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in BENCHES:
            mod, attr = BENCHES[name].split(":")
            try:
                return getattr(importlib.import_module(mod), attr)
            except ModuleNotFoundError as e:
                if e.name and e.name.startswith("fewstep"):
                    return None
                raise
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The registry's help lines: listing the benchmarks imports none of them (so --help stays instant)."""
        helps = {**registry.helps(), "all": "Run every benchmark in registry order.",
                 "report": "Regenerate BENCHMARKS.md from bench-results/*.json."}
        with formatter.section("Commands"):
            formatter.write_dl([(n, helps[n]) for n in self.list_commands(ctx)])


@click.group(cls=_LazyBench)
def bench() -> None:
    """Run benchmarks (JSON in bench-results/, tables in BENCHMARKS.md)."""


@bench.command()
def report() -> None:
    """Regenerate BENCHMARKS.md from bench-results/*.json."""
    from ..bench.common import regenerate  # imports torch: only when the report is made

    click.echo(f"wrote {regenerate()}")


@bench.command(name="all")
@common
@json_option
@click.pass_context
def all_(ctx: click.Context, device: str, seed: int, as_json: bool) -> None:
    """Run every available benchmark with its defaults, in registry order (each regenerates BENCHMARKS.md); --device
    and --seed go to each (the CPU-only ones run on the CPU); --json prints {name: result payload}."""
    from ..bench.common import RESULTS_DIR  # imports torch: only when benchmarks run

    group = ctx.parent.command
    results = {}
    for name in BENCHES:
        cmd = group.get_command(ctx, name)
        if cmd is None:
            click.echo(f"skip {name}: not available in this build", err=True)
            continue
        dev = "cpu" if name in registry.cpu_only() else device
        click.echo(f"== bench {name}" + (" (on the CPU: its comparisons run there only)" if dev != device else ""),
                   err=True)
        # a benchmark's own report is a log line here when --json keeps stdout for the combined result
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            given = {"device": dev, "seed": seed}
            ctx.invoke(cmd, **{p.name: given[p.name] for p in cmd.params if p.name in given})
        path = RESULTS_DIR / f"{name}.json"
        results[name] = json.loads(path.read_text()) if path.is_file() else None
    if as_json:
        click.echo(dumps(results, indent=1))

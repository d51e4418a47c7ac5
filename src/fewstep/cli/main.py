"""`fewstep` entry point: a click group whose subcommands are imported only when called (so --help is instant)."""

from __future__ import annotations

import importlib
import sys

import click

from ..errors import FewstepError

# name -> "module:attribute" of a click command, imported lazily.
COMMANDS: dict[str, str] = {
    "train": "fewstep.cli.train:train",
    "sample": "fewstep.cli.sample:sample",
    "eval": "fewstep.cli.sample:eval_cmd",
    "search": "fewstep.cli.search:search",
    "distill": "fewstep.cli.distill:distill",
    "edit": "fewstep.cli.edit:edit",
    "bench": "fewstep.cli.bench:bench",
    "demo": "fewstep.cli.demo:demo",
    "zoo": "fewstep.cli.zoo:zoo",
    "plans": "fewstep.cli.plans:plans",
    "metrics": "fewstep.cli.metrics:metrics",
}

HELP = {
    "train": "Train a denoiser (EDM or VP loss, EMA, checkpoints, --resume, torchrun DDP).",
    "sample": "Sample from a model with a solver plan and report FD / NFE / time.",
    "eval": "Evaluate samples or a model: FD, precision/recall, classifier confidence.",
    "search": "S^3: search the best solver plan for a model under an NFE budget.",
    "distill": "Distill a teacher into a few-step student (consistency CD / CT / iCT).",
    "edit": "Zero-shot editing with a consistency model (inpaint, superres, colorize, ...).",
    "bench": "Run benchmarks, write JSON, and regenerate BENCHMARKS.md.",
    "demo": "Run the demo on the shipped models and write demo-report/.",
    "zoo": "List, evaluate or rebuild the shipped models and plans from their recorded commands.",
    "plans": "List the solver plan constructors, sigma grids and shipped searched plans.",
    "metrics": "Retrain the shipped feature classifiers; print FD noise floors.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        mod, attr = COMMANDS[name].split(":")
        try:
            return getattr(importlib.import_module(mod), attr)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("fewstep"):
                return click.Command(name, help=f"{HELP[name]} (not available in this build)",
                                     callback=lambda: _fail(f"`fewstep {name}` is not implemented yet"))
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(n, HELP[n]) for n in self.list_commands(ctx)])


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fewstep")
def cli() -> None:
    """fewstep: make diffusion models generate in few steps, and measure it."""


def main() -> None:
    """Run the CLI; known errors print one line and exit 2 instead of a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted")
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (FewstepError, ValueError, KeyError, TypeError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        _fail(f"{type(e).__name__}: {msg}")

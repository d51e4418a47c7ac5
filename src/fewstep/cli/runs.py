"""What `fewstep train` and `fewstep distill` share around a training run: the outputs checked and locked before
any work (fewstep.train.guard), the resolved run printed on stderr, the result on stdout (text or --json)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import click


@contextlib.contextmanager
def guarded(o: dict[str, Any], inputs: dict[str, Any] | None = None) -> Iterator[int]:
    """Lock --out (rank 0) and refuse what would destroy a file (an existing run without --resume/--overwrite, an
    input equal to --out), before any work; yields this process's rank."""
    from ..train.guard import check_outputs, hold
    from ..train.loop import dist_info

    rank = dist_info()[0]
    with hold(o["out"] if rank == 0 else None):
        check_outputs(o["out"], o["ckpt"], o["resume"], o["overwrite"], inputs)
        yield rank


def announce(resolved: dict[str, Any], rank: int) -> None:
    """The resolved run (command, configs, device) as JSON on stderr: a log line, not a result."""
    if rank == 0:
        click.echo(json.dumps(resolved, indent=1), err=True)


def report(res: Any, o: dict[str, Any], rank: int) -> None:
    """The result of a finished run on stdout: one line, or with --json {out, steps, wall_s, final_loss, losses}."""
    if rank != 0:
        return
    if o.get("as_json"):
        click.echo(json.dumps({"out": o["out"], "steps": res.step, "wall_s": res.wall_s,
                               "final_loss": res.losses[-1] if res.losses else None, "losses": res.losses},
                              indent=1, allow_nan=False, default=float))
    else:
        click.echo(f"trained {res.step} steps in {res.wall_s:.0f} s; final loss {res.losses[-1]:.4g}; wrote {o['out']}")

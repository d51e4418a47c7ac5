"""Up-front checks of option values, so a bad path or name fails before any work with one line naming the fix."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import click


def writable_path(path: str | os.PathLike, option: str) -> Path:
    """Refuse an output path that cannot be written (a folder, under a file, in a read-only folder); create nothing.

    The nearest existing ancestor must be a writable folder (atomic writes create the missing folders below it and
    rename a temp file into the last one); an existing file must itself be writable."""
    if not os.fspath(path).strip():
        raise click.BadParameter("the path is empty; give a file path", param_hint=option)
    p = Path(path).expanduser()
    if p.is_dir():
        raise click.BadParameter(f"{p} is a folder; give a file path, e.g. {p / 'out'}", param_hint=option)
    if p.exists() and not os.access(p, os.W_OK):
        raise click.BadParameter(f"{p} exists and is not writable; choose another path or fix its permissions",
                                 param_hint=option)
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise click.BadParameter(f"{p} lies under {parent}, which is a file, not a folder; choose another path",
                                 param_hint=option)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write into the folder {parent} (permission denied); choose a path in a "
                                 "writable folder", param_hint=option)
    return p


def writable(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """click callback: `writable_path` on the option's value (None passes: the option was not given)."""
    if value is not None:
        writable_path(value, param.opts[0] if param.opts else str(param.name))
    return value


def writable_or_empty(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """click callback: as `writable`, but '' passes too (for options where an empty path means "do not write")."""
    return writable(ctx, param, value) if value != "" else value


def nonempty(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """click callback: refuse an empty or blank name (e.g. --model '')."""
    if value is not None and not str(value).strip():
        raise click.BadParameter("the value is empty; give a name or a path", ctx=ctx, param=param)
    return value


def finite(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """click callback: refuse nan and inf for a float option."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}", ctx=ctx, param=param)
    return value

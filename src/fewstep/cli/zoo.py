"""`fewstep zoo list|show|rebuild`: the shipped models and plans, with the manifests that say how each was made."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import click

FILES = Path(__file__).resolve().parent.parent / "zoo" / "files"


def _manifests() -> list[tuple[str, str, dict]]:
    """(kind, name, manifest) for every shipped model (*.json beside a .safetensors) and searched plan."""
    out = []
    for m in sorted(FILES.glob("*.json")):
        out.append(("model", m.stem, json.loads(m.read_text())))
    for p in sorted((FILES / "plans").glob("*.json")):
        data = json.loads(p.read_text())
        out.append(("plan", p.stem, data.get("search", data.get("meta", {}))))
    return out


def _quality(man: dict) -> str:
    metrics = man.get("metrics") or {k: man[k] for k in ("score", "fd") if k in man}
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(metrics.items())[:4])


@click.group()
def zoo() -> None:
    """Shipped models and searched plans."""


@zoo.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="print the manifests as JSON")
def list_cmd(as_json: bool) -> None:
    """List shipped models and plans with their command, seed, commit and measured quality."""
    rows = _manifests()
    if as_json:
        click.echo(json.dumps([{"kind": k, "name": n, **m} for k, n, m in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="fewstep zoo")
    for col in ("kind", "name", "quality", "seed", "commit", "command"):
        t.add_column(col, overflow="fold")
    for kind, name, m in rows:
        t.add_row(kind, name, _quality(m), str(m.get("seed", "")), str(m.get("commit", "")), str(m.get("command", "")))
    Console().print(t)


@zoo.command()
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="print the recorded command instead of running it")
def rebuild(name: str, dry_run: bool) -> None:
    """Re-run the recorded command that produced a shipped model or plan (each stage in turn, if it had stages)."""
    found = {n: m for _, n, m in _manifests()}
    if name not in found:
        raise KeyError(f"no shipped entry {name!r}; see `fewstep zoo list` for the names")
    cmds = found[name].get("stages") or [found[name].get("command")]
    if not all(cmds):
        raise ValueError(f"{name} has no recorded command in its manifest; it cannot be rebuilt automatically")
    for cmd in cmds:
        argv = shlex.split(cmd)
        if argv and argv[0] == "fewstep":
            argv = [sys.executable, "-m", "fewstep", *argv[1:]]
        click.echo(f"$ {cmd}")
        if not dry_run and (rc := subprocess.call(argv)):
            raise SystemExit(rc)

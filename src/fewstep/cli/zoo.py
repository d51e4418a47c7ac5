"""`fewstep zoo list|evaluate|rebuild`: the shipped models and plans, with the manifests that say how each was
made, and the measurement that writes a model's metrics."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..bench.strict_json import dumps
from .options import SEED_MAX, device_option, json_always

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


def _ratio(m: dict) -> str:
    """`fd=X` with its floor ratio when the metrics carry one (fewstep.metrics.evaluate), plus the accuracy."""
    out = f"fd={m['fd']:.4g}" + (f" ({m['fd_over_floor']:.2f}x floor)" if "fd_over_floor" in m else "")
    return out + (f", acc={m['accuracy']:.3f}" if "accuracy" in m else "")


def _quality(man: dict) -> str:
    """One readable line of a manifest's quality: FD (and its floor ratio) of a model, uncond and cond apart for
    a `fewstep zoo evaluate` manifest; a plan's search score named by its metric, beside the best hand-made plan."""
    metrics = man.get("metrics")
    if isinstance(metrics, dict) and isinstance(metrics.get("uncond"), dict):
        parts = [f"{k} {_ratio(metrics[k])}" for k in ("uncond", "cond") if isinstance(metrics.get(k), dict)]
        return "; ".join(parts) + f" (n={metrics.get('n')}, {metrics.get('nfe')}-NFE {metrics.get('solver')})"
    if isinstance(metrics, dict) and "fd_recon" in metrics:  # an autoencoder: its held-out reconstructions
        return (f"reconstructions fd={metrics['fd_recon']:.4g} ({metrics['fd_recon_over_floor']:.2f}x floor), "
                f"acc={metrics['accuracy_recon']:.3f} (originals {metrics['accuracy_original']:.3f}; "
                f"n={metrics['n']})")
    if isinstance(metrics, dict) and isinstance(metrics.get("best_guidance"), dict):  # a guided latent teacher
        c, b = metrics["cond"], metrics["best_guidance"]
        return (f"guidance 1: {_ratio(c)}; guidance {b['guidance']}: {_ratio(b)} (n={metrics.get('n')}, "
                f"{metrics.get('nfe')}-NFE {metrics.get('solver')}, decoded)")
    if metrics:
        return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(metrics.items())[:4])
    if "score" in man:  # a searched plan: its score on the search set, in its metric
        name = man.get("metric", "score")
        out = f"{name}={man['score']:.4g}"
        if isinstance(man.get("best_baseline_score"), float):
            out += f" (best hand-made {man.get('best_baseline')}: {name}={man['best_baseline_score']:.4g})"
        return out
    return f"fd={man['fd']:.4g}" if isinstance(man.get("fd"), float) else ""


@click.group()
def zoo() -> None:
    """Shipped models and searched plans."""


@zoo.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="print the manifests as JSON")
def list_cmd(as_json: bool) -> None:
    """List shipped models and plans with their command, seed, commit and measured quality."""
    rows = _manifests()
    if as_json:
        click.echo(dumps([{"kind": k, "name": n, **m} for k, n, m in rows], indent=2))
        return
    t = Table(title="fewstep zoo")
    for col in ("kind", "name", "quality", "seed", "commit", "command"):
        t.add_column(col, overflow="fold")
    for kind, name, m in rows:
        t.add_row(kind, name, _quality(m), str(m.get("seed", "")), str(m.get("commit", "")), str(m.get("command", "")))
    Console().print(t)


@zoo.command(name="evaluate")
@click.argument("name")
@click.option("--n", type=click.IntRange(min=2), default=1000, show_default=True, help="samples per setting")
@click.option("--nfe", type=click.IntRange(min=1), default=35, show_default=True, help="Heun evaluations")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, show_default=True,
              help="base noise seed (cond: seed + 1)")
@click.option("--write-manifest", is_flag=True, help="write the result into the shipped files/NAME.json")
@click.option("--png", default=None, help="also save a 10x10 grid of unconditional samples here")
@device_option
@json_always
def evaluate_cmd(name: str, n: int, nfe: int, seed: int, write_manifest: bool, png: str | None, device: str,
                 as_json: bool) -> None:
    """Measure a zoo model's quality (35-NFE Heun FD with its noise floor, confidence, accuracy) as JSON."""
    # torch comes with these: imported when a model is measured, so `zoo list` / `zoo rebuild` start at once
    from ..io import save_grid
    from ..zoo import evaluate, load

    res = evaluate.evaluate(name, n, nfe, seed, device)
    click.echo(dumps(res, indent=2))
    if png:
        save_grid(evaluate.draw(load(name), 100, nfe, seed), png, nrow=10)
    if write_manifest:
        click.echo(f"wrote {evaluate.write_manifest(name, res, evaluate.command(name, n, nfe, seed))}")


PATH_OPTIONS = ("--out", "--init", "--ckpt", "--state", "--ae")  # options of a recorded command that name a file
# it writes or reads back (--ae: the latent teacher's autoencoder, an earlier stage); inside the shipped files/ folder
# they are redirected by `rebuild`


def redirect(argv: list[str], target: Path) -> list[str]:
    """A recorded command with every PATH_OPTIONS value inside the shipped files/ folder (recorded from a checkout as
    src/fewstep/zoo/files/..., or the installed folder itself) moved to the same place under `target`."""
    out = list(argv)
    for i, a in enumerate(out[:-1]):
        if a not in PATH_OPTIONS:
            continue
        parts = Path(out[i + 1]).parts
        at = next((j for j in range(len(parts) - 2) if parts[j:j + 3] == ("fewstep", "zoo", "files")), None)
        if at is not None:
            out[i + 1] = str(target.joinpath(*parts[at + 3:]))
        elif Path(out[i + 1]).absolute().is_relative_to(FILES.absolute()):
            out[i + 1] = str(target / Path(out[i + 1]).absolute().relative_to(FILES.absolute()))
    return out


@zoo.command()
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="print the recorded command instead of running it")
@click.option("--out", "target", default=None, type=click.Path(file_okay=False),
              help="folder for the rebuilt files [the user cache: $FEWSTEP_CACHE/zoo, default ~/.cache/fewstep/zoo]")
@click.option("--overwrite", is_flag=True, help="let the training stages start afresh over files an earlier "
                                                "rebuild left (they refuse otherwise)")
def rebuild(name: str, dry_run: bool, target: str | None, overwrite: bool) -> None:
    """Re-run the recorded command that produced a shipped model or plan (each stage in turn, if it had stages),
    writing into --out or the user cache, never into the installed package."""
    from ..cache import rebuild_dir

    found = {n: m for _, n, m in _manifests()}
    if name not in found:
        raise KeyError(f"no shipped entry {name!r}; see `fewstep zoo list` for the names")
    cmds = found[name].get("stages") or [found[name].get("command")]
    if not all(cmds):
        raise ValueError(f"{name} has no recorded command in its manifest; it cannot be rebuilt automatically")
    dest = Path(target) if target else rebuild_dir()
    for cmd in cmds:
        argv = redirect(shlex.split(cmd), dest)
        if overwrite and argv[:2] in (["fewstep", "train"], ["fewstep", "distill"], ["fewstep", "latent"]):
            argv.append("--overwrite")
        click.echo(f"$ {shlex.join(argv)}")
        if argv and argv[0] == "fewstep":
            argv = [sys.executable, "-m", "fewstep", *argv[1:]]
        if not dry_run and (rc := subprocess.call(argv)):
            click.echo(f"error: the stage above failed (exit {rc}); if it refused an existing output, rerun with "
                       f"`fewstep zoo rebuild {name} --overwrite`", err=True)
            raise SystemExit(rc)

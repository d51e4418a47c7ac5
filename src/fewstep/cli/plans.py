"""`fewstep plans list`: the plan constructors, the sigma grids and the shipped searched plans (with their metric)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .options import json_option

# fewstep.solvers.constructors.names() and fewstep.grids.GRIDS, spelled out so `--help` needs no torch import
# (tests/cli/test_plans_cli.py keeps them equal)
PLANS = ("ddim", "deis_3", "dpm_solver_2s", "dpm_solver_3s", "dpm_solver_pp_2m", "dpm_solver_pp_2s",
         "dpm_solver_pp_3m", "dpm_solver_pp_3s", "euler", "heun", "ipndm", "ipndm_v", "unipc_bh1", "unipc_bh2")
STOCHASTIC = ("consistency", "dpm_solver_pp_2m_sde", "euler_ancestral")  # constructors.names(stochastic=True)
GRIDS = ("logsnr", "karras", "uniform_t", "quadratic_t", "vp_discrete")
SHIPPED = Path(__file__).resolve().parent.parent / "zoo" / "files" / "plans"


def shipped() -> list[dict]:
    """One row per shipped searched plan: name, model, NFE, its score with the metric, the best hand-made plan's."""
    rows = []
    for p in sorted(SHIPPED.glob("*.json"), key=lambda p: (p.stem.rsplit("-nfe", 1)[0], int(p.stem.rsplit("nfe")[-1]))):
        data = json.loads(p.read_text())
        s = data.get("search", {})
        rows.append({"name": p.stem, "model": s.get("model"), "nfe": data.get("nfe"), "metric": s.get("metric"),
                     "score": s.get("score"), "best_baseline": s.get("best_baseline"),
                     "best_baseline_score": s.get("best_baseline_score"), "command": s.get("command")})
    return rows


@click.group()
def plans() -> None:
    """Solver plans: constructors, grids and the shipped searched plans."""


@plans.command(name="list")
@json_option
def list_cmd(as_json: bool) -> None:
    """List plan constructors (--plan), sigma grids (--grid) and shipped searched plans (--plan searched)."""
    rows = shipped()
    if as_json:
        click.echo(json.dumps({"constructors": list(PLANS), "stochastic": list(STOCHASTIC), "grids": list(GRIDS),
                               "searched": rows}, indent=2))
        return
    click.echo("constructors (--plan NAME): " + ", ".join(PLANS))
    click.echo("stochastic constructors (--plan NAME; noise per sample from --seed): " + ", ".join(STOCHASTIC))
    click.echo("grids (--grid NAME): " + ", ".join(GRIDS))
    click.echo("shipped searched plans (--plan searched --nfe N with their model):")
    for r in rows:
        click.echo(f"  {r['name']}: {r['metric']}={r['score']:.4g} (best hand-made {r['best_baseline']}: "
                   f"{r['metric']}={r['best_baseline_score']:.4g})")

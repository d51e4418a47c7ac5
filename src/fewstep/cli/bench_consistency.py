"""`fewstep bench consistency`: teacher vs digits-cd / digits-ict FD at 1 and 2 steps, the FD-vs-training-time
curves, and zero-shot editing; `--train cd|ict|color-cd` first rebuilds that zoo model while recording its curve."""

from __future__ import annotations

from typing import Any

import click
import torch

from ..bench.common import tables_text, write_result
from ..bench.consistency import run
from ..bench.strict_json import dumps
from ..recipes.consistency import RECIPES, train_recipe
from ..zoo import FILES
from .options import common, cpu_only, json_option


@click.command(context_settings={"show_default": True})
@click.option("--cd", default="digits-cd", help="consistency-distilled model (zoo name or path)")
@click.option("--ict", default="digits-ict", help="iCT model (zoo name or path)")
@click.option("--teacher", default="digits-edm", help="teacher (zoo name or path)")
@click.option("--n", default=800, type=int, help="samples per FD")
@click.option("--search-n", default=400, type=int,
              help="samples per seed and FD inside the 2-step ternary search (the mean over 4 search seeds)")
@click.option("--train", "train_mode", default=None, type=click.Choice(["cd", "ict", "color-cd"]),
              help="first retrain this zoo model (segments + curve), as recorded in its manifest, into the shipped "
                   "files (a maintainer step, in a checkout)")
@click.option("--steps", default=None, type=int,
              help="with --train: training steps (of stage 1, for a recipe with stages) [the recipe's]")
@click.option("--extend", is_flag=True,
              help="with --train: continue the shipped run from its checkpoint (its stable phase, if it ended in a "
                   "cool-down)")
@click.option("--threads", default=None, type=int, help="torch CPU threads")
@common
@json_option
def consistency(cd: str, ict: str, teacher: str, n: int, search_n: int, train_mode: str | None, steps: int | None,
                extend: bool, threads: int | None, device: str, seed: int, as_json: bool) -> None:
    """Consistency models: FD of CD / iCT at 1-2 steps against the teacher's 35-NFE Heun, curves, editing.

    --seed shifts the seeds of the FD table, the large-n check and the 2-step search (editing keeps its own)."""
    cpu_only(device, "bench consistency")
    if threads:
        torch.set_num_threads(threads)
    if train_mode is not None:
        recipe: dict[str, Any] = dict(RECIPES[train_mode])
        if steps is not None:
            recipe["steps"] = steps
        train_recipe(f"digits-{train_mode}", recipe, FILES, threads=threads, extend=extend)
    payload = run(cd=cd, ict=ict, teacher=teacher, n=n, search_n=search_n, seed=seed)
    path = write_result("consistency", payload)
    if as_json:
        click.echo(dumps(payload, indent=1))
    else:
        click.echo(tables_text(payload))
        click.echo(f"wrote {path}")

"""`fewstep bench ufogen`: digits-ufogen at 1-4 steps beside the teacher's 35-NFE Heun and digits-cd / digits-ict at
1 step (FD, recall, class entropy, training wall-clock), its FD-vs-time curve, the gap ablation, image-to-image;
`--train` first retrains the zoo model while recording its curve, `--ablate N` reruns the ablation (N steps each)."""

from __future__ import annotations

import click
import torch

from ..bench.common import tables_text, write_result
from ..bench.strict_json import dumps
from ..bench.ufogen import ABLATION_FILE, run
from .options import common, cpu_only, json_option


@click.command(context_settings={"show_default": True})
@click.option("--ufogen", "model", default="digits-ufogen", help="the UFOGen generator (zoo name or path)")
@click.option("--cd", default="digits-cd", help="consistency-distilled model (zoo name or path)")
@click.option("--ict", default="digits-ict", help="iCT model (zoo name or path)")
@click.option("--teacher", default="digits-edm", help="teacher (zoo name or path)")
@click.option("--n", default=800, type=int, help="samples per FD")
@click.option("--train", "retrain", is_flag=True,
              help="first retrain digits-ufogen (segments + curve) into the shipped files (a maintainer step)")
@click.option("--ablate", default=0, type=int,
              help="first rerun the gap / reconstruction ablation for N steps per variant (0: read its file)")
@click.option("--threads", default=None, type=int, help="torch CPU threads")
@common
@json_option
def ufogen(model: str, cd: str, ict: str, teacher: str, n: int, retrain: bool, ablate: int, threads: int | None,
           device: str, seed: int, as_json: bool) -> None:
    """UFOGen (Xu et al. 2024): one-step FD, recall and class entropy against the teacher's 35-NFE Heun and the
    consistency students on the same noise; curve; gap ablation; image-to-image label kept."""
    cpu_only(device, "bench ufogen")
    if threads:
        torch.set_num_threads(threads)
    if retrain or ablate:
        from ..recipes import ufogen as recipe
        from ..zoo import FILES

        if retrain:
            recipe.train_recipe(FILES / "digits-ufogen.safetensors", threads=threads)
        if ablate:
            recipe.ablate("runs/ufogen-ablation", steps=ablate, threads=threads, result=ABLATION_FILE)
    payload = run(ufogen=model, cd=cd, ict=ict, teacher=teacher, n=n, seed=seed)
    path = write_result("ufogen", payload)
    if as_json:
        click.echo(dumps(payload, indent=1))
    else:
        click.echo(tables_text(payload))
        click.echo(f"wrote {path}")

"""`fewstep distill consistency`: consistency distillation (CD) or training (CT / iCT) through the one
training loop (progress, checkpoints, --resume, torchrun DDP)."""

from __future__ import annotations

import json
from typing import Any

import click

from .options import common, init_distributed, leave_distributed, recorded_command, run_config, run_options

# fewstep.distill.teacher.ONE_STEP_NFE's keys, spelled out so `--help` needs no torch import (a test keeps them equal)
TEACHER_SOLVERS = ["euler", "ddim", "heun", "dpm_solver_2s", "dpm_solver_pp_2s", "dpm_solver_3s", "dpm_solver_pp_3s"]


@click.group()
def distill() -> None:
    """Distill a teacher into a few-step student (consistency CD / CT / iCT, DMD)."""


@distill.command(context_settings={"show_default": True})
@click.option("--teacher", default=None, help="zoo name or checkpoint of the teacher (CD; for ct/ict: architecture)")
@click.option("--mode", default="cd", type=click.Choice(["cd", "ct", "ict", "dmd"]),
              help="cd/ct/ict: consistency losses; dmd: distribution matching of the one-step map (Yin et al. 2024), "
                   "usually a last stage from a CD model (--init)")
@click.option("--data", "data_name", default="digits", help="data set name (fewstep.data.get)")
@click.option("--N", "N", default=18, type=int, help="CD grid size")
@click.option("--mu", default=0.0, type=float, help="CD target EMA rate (0 = stop-gradient)")
@click.option("--s0", default=None, type=int, help="CT/iCT curriculum start [ct 2, ict 10]")
@click.option("--s1", default=None, type=int, help="CT/iCT curriculum end [ct 150, ict 1280]")
@click.option("--mu0", default=0.9, type=float, help="CT initial target EMA rate")
@click.option("--horizon", default=None, type=int, help="K of the N(k) curriculum [--steps]")
@click.option("--dist", default=None, type=click.Choice(["l2", "l1", "pseudo_huber", "lpips"]),
              help="distance [cd/ct l2, ict pseudo_huber]; lpips: perceptual, on a shipped net for the image shape")
@click.option("--weight", default=None, type=click.Choice(["uniform", "snr", "snr+1", "karras", "truncated-snr",
                                                           "ict"]), help="lambda [cd/ct uniform, ict ict]")
@click.option("--solver", default="heun", type=click.Choice(TEACHER_SOLVERS),
              help="CD teacher step: a one-step plan of the solver engine")
@click.option("--skip", default=1, type=int,
              help="CD: grid intervals the teacher spans per target (LCM's skipping step k; 1 = the CM paper)")
@click.option("--reg", default=0.0, type=click.FloatRange(min=0),
              help="CD/DMD: weight of a regression of f onto the teacher's ODE samples along stored teacher "
                   "trajectories (0 = the CM paper's CD)")
@click.option("--reg-paths", default=20000, type=click.IntRange(min=1),
              help="CD/DMD: teacher trajectories generated for --reg (cached beside the checkpoint)")
@click.option("--fake-lr", default=1e-4, type=click.FloatRange(min=0, min_open=True),
              help="DMD: learning rate of the online fake denoiser (a copy of the teacher)")
@click.option("--dropout", default=None, type=float, help="network dropout (iCT uses it)")
@click.option("--init", default=None, help="start the student from this model's weights (zoo name or .safetensors), "
                                         "e.g. a second stage with a larger batch")
@click.option("--label-dropout", default=1.0, type=float,
              help="probability of the null label: 1 trains an unconditional student (how `fewstep sample` and the "
                   "benchmark draw it); lower it for a class-conditional one")
@run_options(steps=2000, lr=2e-4, warmup=100, ema_decay=0.995, ckpt_every=250,
             out_help="output student .safetensors")
@common
@click.pass_context
def consistency(ctx: click.Context, **o: Any) -> None:
    """Consistency distillation (--mode cd, Song et al. 2023 Alg. 2), training from scratch (ct: Alg. 3,
    ict: Song & Dhariwal 2024), or distribution matching of the one-step map (dmd: Yin et al. 2024).

    Example: fewstep distill consistency --teacher digits-edm --mode cd --out cd.safetensors"""
    import torch

    from .. import data as fsdata
    from ..distill.consistency import ConsistencyConfig
    from ..distill.run import distill as run_distill
    from ..train.loop import dist_info

    if o["threads"]:
        torch.set_num_threads(o["threads"])
    device = init_distributed(o["device"])
    cc = ConsistencyConfig(mode=o["mode"], N=o["N"], mu=o["mu"], s0=o["s0"], s1=o["s1"], mu0=o["mu0"],
                           dist=o["dist"], weight=o["weight"], solver=o["solver"], horizon=o["horizon"],
                           skip=o["skip"], reg=o["reg"], reg_paths=o["reg_paths"],
                           fake_lr=o["fake_lr"])
    ds = fsdata.get(o["data_name"], split="train")
    tc = run_config(o, label_dropout=o["label_dropout"] if ds.y is not None else 0.0)
    command = recorded_command(ctx, ["fewstep", "distill", "consistency"])
    rank, world = dist_info()
    if rank == 0:
        click.echo(json.dumps({"command": command, "consistency": cc.__dict__, "train": tc.__dict__,
                               "device": device, "world_size": world}, indent=1))
    res = run_distill(cc, tc, ds, teacher=o["teacher"], out=o["out"], ckpt=o["ckpt"], resume=o["resume"],
                      device=device, command=command, dropout=o["dropout"], init=o["init"])
    if rank == 0:
        click.echo(f"trained {res.step} steps in {res.wall_s:.0f} s; final loss {res.losses[-1]:.4g}; "
                   f"wrote {o['out']}")
    leave_distributed()

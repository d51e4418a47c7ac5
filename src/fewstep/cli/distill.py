"""`fewstep distill consistency|dmd`: consistency distillation (CD) or training (CT / iCT), and DMD, through the one
training loop (progress, checkpoints, --resume, torchrun DDP). The options come from the config fields."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from ..distill.config import MODES, TEACHER_SOLVERS, ConsistencyConfig, DMDConfig, LCMConfig, make_config
from ..distill.ufogen_config import UFOGenConfig
from ..train.config import TrainConfig
from .options import (
    common,
    config_options,
    init_distributed,
    json_option,
    leave_distributed,
    recorded_command,
    run_config,
    run_options,
)
from .runs import announce, guarded, report

__all__ = ["TEACHER_SOLVERS", "consistency", "distill", "dmd", "lcm", "lcm_times", "ufogen"]

CONSISTENCY_OPTIONS = ("N", "mu", "s0", "s1", "mu0", "horizon", "dist", "weight", "solver", "skip", "reg",
                       "reg_paths")
DMD_OPTIONS = ("N", "dist", "solver", "reg", "reg_paths", "fake_lr")
STAGE_HELP = "start the student from this model's weights (zoo name or .safetensors), e.g. a second stage with a " \
             "larger batch"


@click.group()
def distill() -> None:
    """Distill a teacher into a few-step student (consistency CD / CT / iCT, DMD)."""


def _run(ctx: click.Context, o: dict[str, Any], cfg: ConsistencyConfig | DMDConfig, name: str) -> None:
    """Build the data and TrainConfig of the options, print the resolved run, train, report."""
    import torch

    from .. import data as fsdata
    from ..distill.run import check_teacher
    from ..distill.run import distill as run_distill
    from ..train.loop import dist_info

    if o["threads"]:
        torch.set_num_threads(o["threads"])
    check_teacher(cfg, o["teacher"])  # a usage error comes before the checks of the files
    device = init_distributed(o["device"])
    with guarded(o, {"--init": o["init"], "--teacher": o["teacher"]}) as rank:
        ds = fsdata.get(o["data_name"], split="train")
        tc = run_config(o, label_dropout=o["label_dropout"] if ds.y is not None else 0.0)
        command = recorded_command(ctx, ["fewstep", "distill", name])
        announce({"command": command, name: {"mode": cfg.mode, **cfg.__dict__}, "train": tc.__dict__,
                  "device": device, "world_size": dist_info()[1]}, rank)
        res = run_distill(cfg, tc, ds, teacher=o["teacher"], out=o["out"], ckpt=o["ckpt"], resume=o["resume"],
                          device=device, command=command, dropout=o.get("dropout"), init=o["init"])
    report(res, o, rank)
    leave_distributed()


@distill.command(context_settings={"show_default": True})
@click.option("--teacher", default=None, help="zoo name or checkpoint of the teacher (CD; for ct/ict: architecture)")
@click.option("--mode", default="cd", type=click.Choice([*MODES, "dmd"]),
              help="cd/ct/ict: consistency losses; dmd: distribution matching of the one-step map (Yin et al. 2024), "
                   "usually a last stage from a CD model (--init); the same as `fewstep distill dmd`")
@click.option("--data", "data_name", default="digits", help="data set name (fewstep.data.get)")
@config_options(ConsistencyConfig, *CONSISTENCY_OPTIONS)
@config_options(DMDConfig, "fake_lr")
@click.option("--dropout", default=None, type=float, help="network dropout (iCT uses it)")
@click.option("--init", default=None, help=STAGE_HELP)
@config_options(TrainConfig, "label_dropout", label_dropout=1.0)
@run_options(steps=2000, lr=2e-4, warmup=100, ema_decay=0.995, ckpt_every=250,
             out_help="output student .safetensors")
@common
@json_option
@click.pass_context
def consistency(ctx: click.Context, **o: Any) -> None:
    """Consistency distillation (--mode cd, Song et al. 2023 Alg. 2), training from scratch (ct: Alg. 3,
    ict: Song & Dhariwal 2024), or distribution matching of the one-step map (dmd: Yin et al. 2024).

    Example: fewstep distill consistency --teacher digits-edm --mode cd --out cd.safetensors"""
    cfg = make_config(o["mode"], **{k: o[k] for k in (*CONSISTENCY_OPTIONS, "fake_lr")})
    _run(ctx, o, cfg, "consistency")


@distill.command(context_settings={"show_default": True})
@click.option("--teacher", required=True, help="zoo name or checkpoint of the teacher (the real score)")
@click.option("--data", "data_name", default="digits", help="data set name (fewstep.data.get; sets the shape)")
@config_options(DMDConfig, *DMD_OPTIONS)
@click.option("--init", default=None, help=STAGE_HELP + " (usually a CD student)")
@config_options(TrainConfig, "label_dropout", label_dropout=1.0)
@run_options(steps=2000, lr=2e-4, warmup=100, ema_decay=0.995, ckpt_every=250,
             out_help="output student .safetensors")
@common
@json_option
@click.pass_context
def dmd(ctx: click.Context, **o: Any) -> None:
    """Distribution matching distillation of a consistency student's one-step map (Yin et al. 2024, Alg. 1), with
    an optional ODE-pair regression onto teacher trajectories (--reg, Eq. 6).

    Example: fewstep distill dmd --teacher digits-edm --init cd.safetensors --reg 0.05 --out dmd.safetensors"""
    _run(ctx, o, DMDConfig(**{k: o[k] for k in DMD_OPTIONS}), "dmd")


LCM_OPTIONS = tuple(f.name for f in dataclasses.fields(LCMConfig))


@distill.command(context_settings={"show_default": True})
@click.option("--teacher", default="mnist-ldm", help="the latent teacher (zoo name or diffusers folder)")
@click.option("--data", "data_name", default="mnist5k", help="data set the teacher's autoencoder encodes")
@click.option("--autoencoder", default="mnist-ae", help="the autoencoder's path recorded in the student, relative "
                                                        "to --out (the zoo keeps mnist-ae beside its models)")
@config_options(LCMConfig, *LCM_OPTIONS)
@click.option("--segments", default=1, type=click.IntRange(min=1),
              help="train in this many resumed pieces, scoring FD after each (the curve in <out>.json)")
@click.option("--extend", is_flag=True, help="with --segments: continue a finished shorter run to --steps (e.g. "
                                             "with a --cooldown), keeping its curve")
@run_options(steps=1500, lr=1e-4, warmup=100, ema_decay=0.995, ckpt_every=250,
             out_help="output student .safetensors")
@common
@json_option
@click.pass_context
def lcm(ctx: click.Context, **o: Any) -> None:
    """Guided latent consistency distillation (LCM, Luo et al. 2023, Alg. 1): a student taking the guidance scale
    w as input, trained on the w-guided PF-ODE with a skipping step; --lora-rank > 0 trains LoRA adapters only.

    Example: fewstep distill lcm --teacher mnist-ldm --out mnist-lcm.safetensors --segments 6"""
    import json
    from pathlib import Path

    import torch

    from .. import data as fsdata
    from ..distill.lcm import distill_lcm
    from ..distill.run import frozen
    from ..recipes.curve import command_line
    from ..recipes.lcm import train_lcm
    from ..train.loop import dist_info

    cfg = LCMConfig(**{k: o[k] for k in LCM_OPTIONS})
    if o["threads"]:
        torch.set_num_threads(o["threads"])
    device = init_distributed(o["device"])
    with guarded(o, {"--teacher": o["teacher"]}) as rank:
        teacher = frozen(o["teacher"], device)
        if getattr(teacher, "autoencoder", None) is None:
            raise click.BadParameter("LCM distils a latent teacher (one with an autoencoder, e.g. mnist-ldm)",
                                     param_hint="--teacher")
        ds = fsdata.get(o["data_name"], split="train")
        tc = run_config(o, label_dropout=0.0)
        command = recorded_command(ctx, ["fewstep", "distill", "lcm"])
        announce({"command": command, "lcm": dataclasses.asdict(cfg), "train": tc.__dict__, "device": device,
                  "world_size": dist_info()[1]}, rank)
        if o["segments"] > 1:
            opts = {k: v for k, v in ctx.params.items() if k not in ("segments", "as_json", "quiet", "resume",
                                                                     "overwrite", "data_name", "extend")}
            manifest = train_lcm(cfg, tc, ds, teacher, o["autoencoder"], Path(o["out"]), o["segments"],
                                 lambda k: command_line(["fewstep", "distill", "lcm", "--data", o["data_name"]],
                                                        {**opts, "steps": k}), o["resume"], device,
                                 extend=o["extend"])
            if rank == 0:
                click.echo(json.dumps(manifest["metrics"]) if o["as_json"] else
                           f"{o['out']}: {manifest['metrics']}")
            leave_distributed()
            return
        res = distill_lcm(cfg, tc, ds, teacher, o["autoencoder"], out=o["out"], ckpt=o["ckpt"], resume=o["resume"],
                          device=device, command=command)
    report(res, o, rank)
    leave_distributed()


@distill.command("lcm-times", context_settings={"show_default": True})
@click.option("--student", required=True, help="the LCM (its .safetensors; the manifest <student>.json beside it "
                                               "gets the times)")
@click.option("--steps", "steps_text", default="2,3,4", help="step counts to search times for")
@click.option("--guidance", default=2.0, type=float, help="guidance scale the times are searched at")
@click.option("--n", default=250, type=click.IntRange(min=16), help="samples per FD of the search")
@click.option("--threads", default=1, type=int, help="torch CPU threads")
@common
@json_option
def lcm_times(student: str, steps_text: str, guidance: float, n: int, threads: int, seed: int, device: str,
              as_json: bool) -> None:
    """Search the LCM multistep sampler's times for each step count (the CM ternary search on FD, search seeds
    seed and seed + 1), and record them in the student's manifest, where fs.generate reads them.

    Example: fewstep distill lcm-times --student mnist-lcm.safetensors --steps 2,3,4"""
    import json
    from pathlib import Path

    import torch

    from ..kinds import load
    from ..recipes.lcm import record_times, search_times
    from ..zoo.lookup import dataset_of

    torch.set_num_threads(threads)
    path = Path(student)
    if not path.is_file():
        raise click.BadParameter(f"{student} is not a file; give the student's .safetensors", param_hint="--student")
    try:
        steps = [int(v) for v in steps_text.split(",") if v.strip()]
    except ValueError as e:
        raise click.BadParameter(f"not a comma-separated list of step counts: {steps_text!r}",
                                 param_hint="--steps") from e
    if not steps or min(steps) < 2:
        raise click.BadParameter("every step count must be >= 2 (one step has no times to choose)",
                                 param_hint="--steps")
    st = load(path, device)
    found = {k: search_times(st, dataset_of(st) or "mnist5k", k, guidance, n, (seed, seed + 1))[0] for k in steps}
    m = record_times(path.with_suffix(".json"), found, guidance)
    click.echo(json.dumps(m["sampler"]) if as_json else f"{path.with_suffix('.json')}: {m['sampler']}")


UFOGEN_OPTIONS = ("T", "gap", "num_times", "times", "recon", "recon_weight", "gamma_max", "adv_weight", "clamp", "r1",
                  "d_every", "d_lr", "disc")


@distill.command(context_settings={"show_default": True})
@click.option("--teacher", required=True, help="zoo name or checkpoint of the teacher (G and D start from it)")
@click.option("--data", "data_name", default="digits", help="data set name (fewstep.data.get)")
@config_options(UFOGenConfig, *UFOGEN_OPTIONS)
@config_options(TrainConfig, "label_dropout", label_dropout=1.0)
@run_options(steps=3000, lr=1e-4, warmup=20, ema_decay=0.99, ckpt_every=250, out_help="output generator .safetensors")
@common
@json_option
@click.pass_context
def ufogen(ctx: click.Context, **o: Any) -> None:
    """UFOGen (Xu et al. 2024, Eq. 9): a one-step diffusion-GAN generator initialised from the teacher, with a
    discriminator (the teacher's network, zero-initialised head) on x_{t-gap} and the reconstruction term.

    Example: fewstep distill ufogen --teacher digits-edm --gap 750 --out ufogen.safetensors"""
    import torch

    from .. import data as fsdata
    from ..distill.ufogen import distill_ufogen
    from ..train.loop import dist_info

    cfg = UFOGenConfig(**{k: o[k] for k in UFOGEN_OPTIONS})
    if o["threads"]:
        torch.set_num_threads(o["threads"])
    device = init_distributed(o["device"])
    with guarded(o, {"--teacher": o["teacher"]}) as rank:
        ds = fsdata.get(o["data_name"], split="train")
        tc = run_config(o, label_dropout=o["label_dropout"] if ds.y is not None else 0.0)
        command = recorded_command(ctx, ["fewstep", "distill", "ufogen"])
        announce({"command": command, "ufogen": {"mode": "ufogen", **cfg.__dict__}, "train": tc.__dict__,
                  "device": device, "world_size": dist_info()[1]}, rank)
        res = distill_ufogen(cfg, tc, ds, o["teacher"], out=o["out"], ckpt=o["ckpt"], resume=o["resume"],
                             device=device, command=command)
    report(res, o, rank)
    leave_distributed()

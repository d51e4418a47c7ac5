"""`fewstep latent`: train the latent stack's parts (the KL autoencoder, the class-conditional latent teacher) and
write them as diffusers folders (`mnist-ae`, `mnist-ldm` are rebuilt with these commands)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..latent.config import AEConfig, LDMConfig
from ..train.config import TrainConfig
from .options import common, config_options, json_option, recorded_command, run_config, run_options

AE_FIELDS = ("channels", "latent_channels", "kl_weight", "perceptual", "steps", "batch", "lr", "warmup", "ckpt_every")


def _check_out(out: str, resume: bool, overwrite: bool) -> None:
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise click.BadParameter(f"{out} exists and is a file; the output is a folder", param_hint="--out")
    if p.is_dir() and any(p.iterdir()) and not (resume or overwrite):
        raise click.BadParameter(f"{out} already holds a model; pass --overwrite to replace it, --resume to continue "
                                 "its run, or another --out", param_hint="--out")


@click.group()
def latent() -> None:
    """Train the latent stack: a KL autoencoder and a class-conditional latent teacher (diffusers folders)."""


@latent.command("train-ae", context_settings={"show_default": True})
@click.option("--data", "data_name", default="mnist5k", help="data set (its train split)")
@config_options(AEConfig, *AE_FIELDS)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output diffusers folder")
@click.option("--resume", is_flag=True, help="continue exactly from OUT.ckpt.pt")
@click.option("--overwrite", is_flag=True, help="replace an existing model at --out")
@click.option("--threads", default=1, type=int, help="torch CPU threads")
@click.option("--quiet", is_flag=True, help="no progress bar")
@common
@json_option
@click.pass_context
def train_ae(ctx: click.Context, **o: Any) -> None:
    """Train a KL autoencoder (LDM practice) and write it as a diffusers AutoencoderKL folder."""
    import torch

    from .. import data as fsdata
    from ..latent.train_ae import train_autoencoder

    _check_out(o["out"], o["resume"], o["overwrite"])
    torch.set_num_threads(o["threads"])
    cfg = AEConfig(**{k: o[k] for k in AE_FIELDS}, seed=o["seed"])
    cfg.widths()
    ds = fsdata.get(o["data_name"], "train")
    command = recorded_command(ctx, ["fewstep", "latent", "train-ae"])
    ae = train_autoencoder(ds, cfg, o["out"], resume=o["resume"], device=o["device"], command=command,
                           progress=not o["quiet"])
    click.echo(json.dumps({"out": o["out"], "latent_shape": list(ae.latent_shape), **ae.config["latents"],
                           "wall_s": ae.config["train"]["wall_s"], "final_l1": ae.config["train"]["final_l1"]},
                          indent=2 if o["as_json"] else None))


@latent.command("train-ldm", context_settings={"show_default": True})
@click.option("--data", "data_name", default="mnist5k", help="data set (its train split, with labels)")
@click.option("--ae", "ae_folder", required=True, type=click.Path(file_okay=False, exists=True),
              help="the autoencoder's diffusers folder (fewstep latent train-ae)")
@config_options(LDMConfig, "unet_channels", "layers_per_block", "attention_head_dim")
@config_options(TrainConfig, "label_dropout", label_dropout=0.2)
@run_options(steps=2000, lr=1e-3, warmup=200, ema_decay=0.999, ckpt_every=250, out_help="output diffusers folder")
@common
@json_option
@click.pass_context
def train_ldm(ctx: click.Context, **o: Any) -> None:
    """Train the class-conditional latent teacher (EDM, diffusers UNet2DModel) and write the diffusers folder."""
    _train_unet(ctx, o, "train-ldm", objective="edm")


@latent.command("train-lfm", context_settings={"show_default": True})
@click.option("--data", "data_name", default="mnist5k", help="data set (its train split, with labels)")
@click.option("--ae", "ae_folder", required=True, type=click.Path(file_okay=False, exists=True),
              help="the autoencoder's diffusers folder (fewstep latent train-ae)")
@click.option("--coupling", default="independent", type=click.Choice(["independent", "ot"]),
              help="pairing of data and noise per batch: independent, or exact minibatch optimal transport (POT)")
@config_options(LDMConfig, "unet_channels", "layers_per_block", "attention_head_dim")
@config_options(TrainConfig, "label_dropout", label_dropout=0.2)
@run_options(steps=1200, lr=1e-3, warmup=100, ema_decay=0.999, ckpt_every=200, out_help="output diffusers folder")
@common
@json_option
@click.pass_context
def train_lfm(ctx: click.Context, **o: Any) -> None:
    """Train a class-conditional latent flow-matching model (Dao et al. 2023) and write the diffusers folder."""
    _train_unet(ctx, o, "train-lfm", objective="flow", coupling=o["coupling"])


def _train_unet(ctx: click.Context, o: dict[str, Any], command_name: str, **objective: Any) -> None:
    """The latent UNet's run behind train-ldm and train-lfm (latent.teacher.train_teacher with `objective`)."""
    import torch

    from .. import data as fsdata
    from ..latent.teacher import train_teacher

    _check_out(o["out"], o["resume"], o["overwrite"])
    torch.set_num_threads(o["threads"] or 1)
    run = run_config(o, label_dropout=o["label_dropout"])
    cfg = LDMConfig(o["unet_channels"], o["layers_per_block"], o["attention_head_dim"])
    command = recorded_command(ctx, ["fewstep", "latent", command_name])
    den = train_teacher(o["ae_folder"], fsdata.get(o["data_name"], "train"), cfg, run, o["out"], resume=o["resume"],
                        device=o["device"], command=command, overwrite=o["overwrite"] or o["resume"], **objective)
    click.echo(json.dumps({"out": o["out"], "params": sum(p.numel() for p in den.parameters())},
                          indent=2 if o["as_json"] else None))

"""`fewstep train`: train a denoiser (EDM or eps/VP loss) with EMA, checkpoints, --resume and torchrun DDP."""

from __future__ import annotations

import json
import math
import os
import shlex
from typing import Any

import click

from .options import common

# Options that do not change what is trained; left out of the recorded command.
_NOT_RECORDED = {"device", "resume", "threads", "quiet", "ckpt"}


def _init_distributed(device: str) -> str:
    """Under torchrun (WORLD_SIZE > 1): join the process group (nccl on GPU, gloo on CPU); return this rank's device."""
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    cuda = device.startswith("cuda")
    dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def _command(ctx: click.Context) -> str:
    """The canonical `fewstep train ...` command (every option spelled out) that reproduces this run."""
    args = ["fewstep", "train"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in _NOT_RECORDED or value is None or not isinstance(param, click.Option):
            continue
        if param.is_flag:
            flags = param.opts if value else param.secondary_opts
            args += flags[:1]
        else:
            args += [param.opts[0], str(value)]
    return shlex.join(args)


def model_config(data: Any, net: str, channels: int, channel_mult: str, num_blocks: int, cond: bool,
                 net_kwargs: dict[str, Any], precond: str, sigma_data: float, sigma_min: float,
                 sigma_max: float, data_name: str, split: str) -> dict[str, Any]:
    """The io config (net class + kwargs, preconditioning, sigma range, shape, data) of the model to train."""
    num_classes = int(data.num_classes or 0) if cond else 0
    if cond and (num_classes == 0 or data.y is None):
        raise click.BadParameter(f"data set {data_name!r} has no class labels; use --no-cond", param_hint="--cond")
    shape = tuple(int(s) for s in data.shape)
    if net == "unet":
        if len(shape) != 3:
            raise click.BadParameter(f"the unet needs image data [C, H, W], {data_name!r} has shape {shape}; "
                                     "use --net mlp", param_hint="--net")
        kwargs = {"in_channels": shape[0], "channels": channels, "num_blocks": num_blocks,
                  "channel_mult": [int(m) for m in channel_mult.split(",")], "num_classes": num_classes}
    else:
        kwargs = {"dim": math.prod(shape), "hidden": channels, "depth": num_blocks, "num_classes": num_classes}
    kwargs.update(net_kwargs)
    pc_kwargs = {"sigma_data": sigma_data} if precond in ("edm", "consistency") else {}
    return {"kind": "denoiser", "net": {"class": net, "kwargs": kwargs},
            "precond": {"name": precond, "kwargs": pc_kwargs}, "sigma_min": sigma_min, "sigma_max": sigma_max,
            "shape": list(shape), "data": {"name": data_name, "split": split}}


@click.command(context_settings={"show_default": True})
@click.option("--data", "data_name", default="digits", help="data set name (fewstep.data.get)")
@click.option("--split", default="train", type=click.Choice(["train", "test", "all"]))
@click.option("--net", default="unet", type=click.Choice(["unet", "mlp"]))
@click.option("--channels", default=32, type=int, help="UNet base channels / MLP hidden width")
@click.option("--channel-mult", default="1,2,2", help="UNet channel multipliers per level, comma-separated")
@click.option("--num-blocks", default=2, type=int, help="UNet residual blocks per level / MLP depth")
@click.option("--net-kwargs", default="{}", help="extra network kwargs as JSON (override the above)")
@click.option("--cond/--no-cond", default=True, help="class-conditional (with a null label for CFG) if labels exist")
@click.option("--label-dropout", default=0.1, type=float, help="probability of the null label in training (CFG)")
@click.option("--precond", default="edm", type=click.Choice(["edm", "eps", "v", "x0", "flow"]))
@click.option("--sigma-data", default=0.5, type=float)
@click.option("--loss", default="edm", type=click.Choice(["edm", "vp"]))
@click.option("--sigma-min", default=0.002, type=float)
@click.option("--sigma-max", default=80.0, type=float)
@click.option("--steps", default=4000, type=int)
@click.option("--batch", default=128, type=int, help="global batch size (split across DDP ranks)")
@click.option("--lr", default=1e-3, type=float)
@click.option("--warmup", default=200, type=int, help="linear LR warm-up steps")
@click.option("--weight-decay", default=0.0, type=float)
@click.option("--ema-decay", default=0.999, type=float)
@click.option("--grad-clip", default=1.0, type=float)
@click.option("--ckpt-every", default=500, type=int, help="write the training checkpoint every N steps")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="output model .safetensors")
@click.option("--ckpt", default=None, type=click.Path(dir_okay=False), help="checkpoint path [OUT.ckpt.pt]")
@click.option("--resume", is_flag=True, help="continue exactly from the checkpoint")
@click.option("--threads", default=None, type=int, help="torch CPU threads")
@click.option("--quiet", is_flag=True, help="no progress bar")
@common
@click.pass_context
def train(ctx: click.Context, **o: Any) -> None:
    """Train a denoiser (EDM or VP loss, EMA, checkpoints, --resume, torchrun DDP)."""
    import torch

    from .. import data as fsdata
    from ..train import TrainConfig
    from ..train import train as run_train
    from ..train.loop import dist_info

    if o["threads"]:
        torch.set_num_threads(o["threads"])
    device = _init_distributed(o["device"])
    try:
        net_kwargs = json.loads(o["net_kwargs"])
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not valid JSON ({e})", param_hint="--net-kwargs") from e
    ds = fsdata.get(o["data_name"], split=o["split"])
    mc = model_config(ds, o["net"], o["channels"], o["channel_mult"], o["num_blocks"], o["cond"], net_kwargs,
                      o["precond"], o["sigma_data"], o["sigma_min"], o["sigma_max"], o["data_name"], o["split"])
    cfg = TrainConfig(steps=o["steps"], batch=o["batch"], lr=o["lr"], weight_decay=o["weight_decay"],
                      warmup=o["warmup"], ema_decay=o["ema_decay"], grad_clip=o["grad_clip"], loss=o["loss"],
                      label_dropout=o["label_dropout"] if mc["net"]["kwargs"].get("num_classes") else 0.0,
                      ckpt_every=o["ckpt_every"], seed=o["seed"], progress=not o["quiet"])
    command = _command(ctx)
    rank, world = dist_info()
    if rank == 0:
        click.echo(json.dumps({"command": command, "model": mc, "train": cfg.__dict__, "device": device,
                               "world_size": world, "examples": int(ds.x.shape[0])}, indent=2))
    res = run_train(mc, ds, cfg, out=o["out"], ckpt=o["ckpt"], resume=o["resume"], device=device, command=command)
    if rank == 0:
        click.echo(f"trained {res.step} steps in {res.wall_s:.0f} s; final loss {res.losses[-1]:.4f}; "
                   f"wrote {o['out']}")

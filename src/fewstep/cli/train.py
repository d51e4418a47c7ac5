"""`fewstep train`: train a denoiser (EDM or eps/VP loss) with EMA, checkpoints, --resume and torchrun DDP."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

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


def channel_mult_list(ctx: click.Context | None, param: click.Parameter | None, value: str) -> str:
    """click callback: --channel-mult must be comma-separated positive integers (e.g. 1,2,2); kept as given (it is
    recorded in the command)."""
    parts = [p.strip() for p in value.split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise click.BadParameter(f"expected comma-separated positive integers, one per UNet level, e.g. 1,2,2; got "
                                 f"{value!r}", ctx=ctx, param=param, param_hint="--channel-mult")
    return value


def _unet_kwargs(shape: tuple[int, ...], data_name: str, kwargs: dict[str, Any]) -> None:
    """Refuse a UNet that cannot be built, naming the option: the attention at the lowest resolution splits
    channels x the last multiplier into attn_heads heads."""
    if len(shape) != 3:
        raise click.BadParameter(f"the unet needs image data [C, H, W], {data_name!r} has shape {shape}; "
                                 "use --net mlp", param_hint="--net")
    c, m, h = kwargs["channels"], kwargs["channel_mult"][-1], int(kwargs.get("attn_heads", 4))
    if (c * m) % h:
        step = h // math.gcd(m, h)
        raise click.BadParameter(f"{c} x the last --channel-mult {m} = {c * m} channels at the lowest resolution "
                                 f"must split evenly into the UNet's {h} attention heads: use a multiple of {step}, "
                                 f"e.g. --channels {max(step, c - c % step)}", param_hint="--channels")


def model_config(data: Any, net: str, channels: int, channel_mult: str, num_blocks: int, cond: bool,
                 net_kwargs: dict[str, Any], precond: str, sigma_data: float, sigma_min: float,
                 sigma_max: float, data_name: str, split: str) -> dict[str, Any]:
    """The io config (net class + kwargs, preconditioning, sigma range, shape, data) of the model to train."""
    num_classes = int(data.num_classes or 0) if cond else 0
    if cond and (num_classes == 0 or data.y is None):
        raise click.BadParameter(f"data set {data_name!r} has no class labels; use --no-cond", param_hint="--cond")
    shape = tuple(int(s) for s in data.shape)
    if net == "unet":
        kwargs = {"in_channels": shape[0], "channels": channels, "num_blocks": num_blocks,
                  "channel_mult": [int(m) for m in channel_mult_list(None, None, channel_mult).split(",")],
                  "num_classes": num_classes}
        kwargs.update(net_kwargs)
        _unet_kwargs(shape, data_name, kwargs)
    else:
        if len(shape) != 1:
            raise click.BadParameter(f"the mlp is for vector data such as the 2-D toy sets (moons, rings, gmm8); "
                                     f"{data_name!r} holds images of shape {shape}: use --net unet", param_hint="--net")
        kwargs = {"dim": math.prod(shape), "hidden": channels, "depth": num_blocks, "num_classes": num_classes}
        kwargs.update(net_kwargs)
    pc_kwargs = {"sigma_data": sigma_data} if precond in ("edm", "consistency") else {}
    # name: the distribution, which the metrics score against; loader: the fewstep.data name that was trained on
    name = getattr(data, "name", data_name)
    if name.startswith("folder:"):  # an image folder: its absolute path, so the model finds it from anywhere
        name = "folder:" + str(Path(data_name.removeprefix("folder:")).expanduser().resolve())
    source = {"name": data_name} if name == data_name else {"name": name, "loader": data_name}
    return {"kind": "denoiser", "net": {"class": net, "kwargs": kwargs},
            "precond": {"name": precond, "kwargs": pc_kwargs}, "sigma_min": sigma_min, "sigma_max": sigma_max,
            "shape": list(shape), "data": {**source, "split": split}}


@click.command(context_settings={"show_default": True})
@click.option("--data", "data_name", default="digits", help="data set name (fewstep.data.get)")
@click.option("--split", default="train", type=click.Choice(["train", "test", "all"]))
@click.option("--net", default="unet", type=click.Choice(["unet", "mlp"]))
@click.option("--channels", default=32, type=click.IntRange(min=1),
              help="UNet base channels (times the last multiplier: a multiple of the 4 attention heads) / MLP width")
@click.option("--channel-mult", default="1,2,2", callback=channel_mult_list,
              help="UNet channel multipliers per level, comma-separated")
@click.option("--num-blocks", default=2, type=click.IntRange(min=1), help="UNet residual blocks per level / MLP depth")
@click.option("--net-kwargs", default="{}", help="extra network kwargs as JSON (override the above)")
@click.option("--cond/--no-cond", default=True, help="class-conditional (with a null label for CFG) if labels exist")
@config_options(TrainConfig, "label_dropout")
@click.option("--precond", default="edm", type=click.Choice(["edm", "eps", "v", "x0", "flow"]))
@click.option("--sigma-data", default=0.5, type=float)
@config_options(TrainConfig, "loss")
@click.option("--sigma-min", default=0.002, type=float)
@click.option("--sigma-max", default=80.0, type=float)
@config_options(TrainConfig, "weight_decay")
@run_options(steps=4000, lr=1e-3, warmup=200, ema_decay=0.999, ckpt_every=500)
@common
@json_option
@click.pass_context
def train(ctx: click.Context, **o: Any) -> None:
    """Train a denoiser (EDM or VP loss, EMA, checkpoints, --resume, torchrun DDP).

    The resolved run and the progress bar go to stderr; stdout gets the result (--json: out, steps, wall_s,
    final_loss, losses)."""
    import torch

    from .. import data as fsdata
    from ..train import train as run_train
    from ..train.loop import dist_info

    if o["threads"]:
        torch.set_num_threads(o["threads"])
    try:
        net_kwargs = json.loads(o["net_kwargs"])
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not valid JSON ({e})", param_hint="--net-kwargs") from e
    device = init_distributed(o["device"])
    with guarded(o) as rank:
        ds = fsdata.get(o["data_name"], split=o["split"])
        mc = model_config(ds, o["net"], o["channels"], o["channel_mult"], o["num_blocks"], o["cond"], net_kwargs,
                          o["precond"], o["sigma_data"], o["sigma_min"], o["sigma_max"], o["data_name"], o["split"])
        cfg = run_config(o, weight_decay=o["weight_decay"], loss=o["loss"],
                         label_dropout=o["label_dropout"] if mc["net"]["kwargs"].get("num_classes") else 0.0)
        command = recorded_command(ctx, ["fewstep", "train"])
        announce({"command": command, "model": mc, "train": cfg.__dict__, "device": device,
                  "world_size": dist_info()[1], "examples": int(ds.x.shape[0])}, rank)
        res = run_train(mc, ds, cfg, out=o["out"], ckpt=o["ckpt"], resume=o["resume"], device=device,
                        command=command)
    report(res, o, rank)
    leave_distributed()

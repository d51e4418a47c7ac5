"""Options shared by every command: --device, --seed, --json."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

F = Callable[..., Any]


def device_option(f: F) -> F:
    """--device, checked at parse time against the devices this machine has (cpu; cuda:0.. and mps when present)."""

    def check(ctx: click.Context, param: click.Parameter, value: str) -> str:
        if value == "cpu":
            return value
        import torch

        cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        mps = ["mps"] if torch.backends.mps.is_available() else []
        have = ", ".join(["cpu", *(["cuda", *cuda] if cuda else []), *mps])
        try:
            dev = torch.device(value)
        except (RuntimeError, ValueError):
            raise click.BadParameter(f"{value!r} is not a torch device; available here: {have}", ctx, param) from None
        ok = (dev.type == "cpu" or (dev.type == "cuda" and cuda and (dev.index or 0) < len(cuda))
              or (dev.type == "mps" and mps and not dev.index))
        if not ok:
            raise click.BadParameter(f"{value!r} is not available on this machine; available here: {have}", ctx, param)
        return value

    return click.option("--device", default="cpu", show_default=True, callback=check,
                        help="torch device: cpu, cuda, cuda:1, mps")(f)


# Largest --seed: derived seeds (seed * 1_000_003 + i, then * 1_009 + rank in training) must stay inside the
# unsigned 64-bit range torch.Generator.manual_seed accepts; 2**32 - 1 leaves room for both.
SEED_MAX = 2**32 - 1


def seed_option(f: F) -> F:
    return click.option("--seed", default=0, show_default=True, type=click.IntRange(0, SEED_MAX),
                        help="base random seed")(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="print the results as JSON")(f)


def common(f: F) -> F:
    return device_option(seed_option(f))


def emit(result: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], None]) -> None:
    """Print a result dict as JSON or through a human renderer."""
    if as_json:
        click.echo(json.dumps(result, indent=2, default=float))
    else:
        render(result)


# Options that do not change what is trained; left out of a recorded training command.
NOT_RECORDED = {"device", "resume", "threads", "quiet", "ckpt"}


def run_options(*, steps: int, lr: float, warmup: int, ema_decay: float, ckpt_every: int,
                out_help: str = "output model .safetensors") -> Callable[[F], F]:
    """The options every training run shares (optimisation, EMA, checkpoints, resume, threads), with its defaults."""
    opts = [
        click.option("--steps", default=steps, type=int),
        click.option("--batch", default=128, type=int, help="global batch size (split across DDP ranks)"),
        click.option("--lr", default=lr, type=float),
        click.option("--warmup", default=warmup, type=int, help="linear LR warm-up steps"),
        click.option("--cooldown", default=0, type=int,
                     help="decay the LR linearly to 0 over the last N steps; a run's checkpoint from before the "
                          "cool-down resumes into one exactly"),
        click.option("--ema-decay", default=ema_decay, type=float, help="EMA of the weights kept as the artefact"),
        click.option("--average-from", default=None, type=click.IntRange(min=0),
                     help="save the uniform mean of the EMA weights taken every --average-every steps from this "
                          "step on, instead of the last EMA (checkpoint averaging)"),
        click.option("--average-every", default=None, type=click.IntRange(min=1),
                     help="steps between averaged snapshots [500]"),
        click.option("--grad-clip", default=1.0, type=float),
        click.option("--ckpt-every", default=ckpt_every, type=int, help="write the training checkpoint every N steps"),
        click.option("--out", required=True, type=click.Path(dir_okay=False), help=out_help),
        click.option("--ckpt", default=None, type=click.Path(dir_okay=False), help="checkpoint path [OUT.ckpt.pt]"),
        click.option("--resume", is_flag=True, help="continue exactly from the checkpoint"),
        click.option("--threads", default=None, type=int, help="torch CPU threads"),
        click.option("--quiet", is_flag=True, help="no progress bar"),
    ]

    def deco(f: F) -> F:
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


def run_config(o: dict[str, Any], **extra: Any) -> Any:
    """The TrainConfig of the options `run_options` declares (plus --seed and `extra`, e.g. the loss)."""
    from ..train.loop import TrainConfig

    return TrainConfig(steps=o["steps"], batch=o["batch"], lr=o["lr"], warmup=o["warmup"], cooldown=o["cooldown"],
                       ema_decay=o["ema_decay"], average_from=o["average_from"],
                       average_every=o["average_every"] or TrainConfig.average_every, grad_clip=o["grad_clip"],
                       ckpt_every=o["ckpt_every"], seed=o["seed"], progress=not o["quiet"], **extra)


def recorded_command(ctx: click.Context, prefix: list[str]) -> str:
    """The canonical command (every option spelled out) that reproduces this run, for manifests."""
    import shlex

    args = list(prefix)
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in NOT_RECORDED or value is None or not isinstance(param, click.Option):
            continue
        if param.is_flag:
            args += (param.opts if value else param.secondary_opts)[:1]
        else:
            args += [param.opts[0], str(value)]
    return shlex.join(args)


def init_distributed(device: str) -> str:
    """Under torchrun (WORLD_SIZE > 1): join the process group (nccl on GPU, gloo on CPU); return this rank's device."""
    import os

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


def leave_distributed() -> None:
    """After a finished run: wait for every rank, then leave the group, so no rank tears gloo/nccl down under another.

    Not called on errors: a barrier there would hang the healthy ranks instead of letting torchrun stop them."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()

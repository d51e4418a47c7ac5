"""Options shared by every command: --device, --seed, --json; and the options of a config dataclass's fields
(config_options), so each training option is declared once, beside its field (fewstep.train.config.option)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any

import click

from ..bench.strict_json import dumps
from ..train.config import TrainConfig
from .checks import writable

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


def json_always(f: F) -> F:
    """--json on a command whose output is JSON already: accepted, so every command that reports numbers takes it."""
    return click.option("--json", "as_json", is_flag=True, help="the output is JSON either way")(f)


def common(f: F) -> F:
    return device_option(seed_option(f))


def cpu_only(device: str, what: str) -> None:
    """Refuse a device other than the CPU for a command whose comparisons run there only (e.g. the diffusers
    drivers of the solver benchmark), naming the option."""
    if device != "cpu":
        raise click.BadParameter(f"{what} runs on the CPU only (its analytic models and comparisons are CPU code); "
                                 "give --device cpu or drop --device", param_hint="--device")


def emit(result: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], None]) -> None:
    """Print a result dict as JSON or through a human renderer."""
    if as_json:
        click.echo(dumps(result, indent=2))
    else:
        render(result)


# Options that do not change what is trained; left out of a recorded training command.
NOT_RECORDED = {"device", "resume", "overwrite", "threads", "quiet", "ckpt", "as_json"}


def _scalar_type(hint: Any) -> Any:
    """int / float / str / bool of a field's annotation (`int | None` -> int)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def config_options(cls: type, *names: str, **defaults: Any) -> Callable[[F], F]:
    """click options for the fields `names` of the config dataclass `cls`, in that order, each from its field: the
    type and default, and the help, flag, choices and lower bound that fewstep.train.config.option declared.
    `defaults` sets a command's own default (None: the option is unset and the field's default applies; the help
    names it)."""
    hints, fields = typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}
    opts = []
    for name in names:
        f, meta = fields[name], fields[name].metadata
        kind, default = _scalar_type(hints[name]), defaults.get(name, f.default)
        if meta.get("choices"):
            kind = click.Choice(list(meta["choices"]))
        elif meta.get("min") is not None:
            kind = (click.IntRange if kind is int else click.FloatRange)(min=meta["min"], min_open=meta["min_open"])
        help = meta.get("help") or None
        if default is None and f.default is not None:
            help = f"{help} [{f.default}]" if help else f"[{f.default}]"
        flag = meta.get("flag") or "--" + name.replace("_", "-")
        opts.append(click.option(flag, name, default=default, type=kind, help=help))

    def deco(f: F) -> F:
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


# TrainConfig's fields that every training command offers, in this order.
RUN_FIELDS = ("steps", "batch", "lr", "warmup", "cooldown", "ema_decay", "average_from", "average_every",
              "grad_clip", "ckpt_every")


def run_options(*, steps: int, lr: float, warmup: int, ema_decay: float, ckpt_every: int,
                out_help: str = "output model .safetensors") -> Callable[[F], F]:
    """The options every training run shares (optimisation, EMA, checkpoints, resume, threads), with its defaults."""
    fields = config_options(TrainConfig, *RUN_FIELDS, steps=steps, lr=lr, warmup=warmup, ema_decay=ema_decay,
                            ckpt_every=ckpt_every, average_every=None)
    opts = [
        click.option("--out", required=True, callback=writable, help=out_help),
        click.option("--ckpt", default=None, callback=writable, help="checkpoint path [OUT.ckpt.pt]"),
        click.option("--resume", is_flag=True, help="continue exactly from the checkpoint"),
        click.option("--overwrite", is_flag=True,
                     help="start afresh over an existing --out and its checkpoint (without it, or --resume, an "
                          "existing one is refused)"),
        click.option("--threads", default=None, type=int, help="torch CPU threads"),
        click.option("--quiet", is_flag=True, help="no progress bar"),
    ]

    def deco(f: F) -> F:
        for o in reversed(opts):
            f = o(f)
        return fields(f)
    return deco


def run_config(o: dict[str, Any], **extra: Any) -> TrainConfig:
    """The TrainConfig of the options `run_options` declares (plus --seed and `extra`, e.g. the loss); an unset
    option (None) keeps the field's default."""
    given = {k: o[k] for k in RUN_FIELDS if o.get(k) is not None}
    return TrainConfig(**{**given, "seed": o["seed"], "progress": not o["quiet"], **extra})


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

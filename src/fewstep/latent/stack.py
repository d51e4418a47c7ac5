"""The latent stack as a diffusers folder: `vae/` (AutoencoderKL), `unet/` (UNet2DModel), `scheduler/` (diffusers'
EDMEulerScheduler config: VE sigmas, EDM preconditioning, c_noise = ln(sigma) / 4; Karras et al. 2022, Table 1) and
`fewstep.json` (kind, classes, data set, default sampler, training record). `fs.from_diffusers(folder)` and
`fs.zoo.load` read it as a LatentDenoiser; diffusers' own classes read each part."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..bridge.load import from_diffusers
from ..data.sets import ImageData
from ..errors import CheckpointError
from .autoencoder import META, KLAutoencoder, copy_as


@torch.no_grad()
def encode_dataset(ae: KLAutoencoder, data: ImageData, batch: int = 500) -> ImageData:
    """The data set's standardised latents (posterior means, LDM's practice), labels kept: what the teacher learns."""
    z = torch.cat([ae.encode(data.x[i:i + batch]) for i in range(0, len(data), batch)]).float()
    return ImageData(data.name, z, data.y, data.num_classes)


def scheduler_config(den: nn.Module) -> dict[str, Any]:
    """The EDMEulerScheduler config matching a fewstep EDM-preconditioned denoiser (its sigma range, sigma_data), or
    FlowMatchEulerDiscreteScheduler's for a velocity model (precond.flow with time_scale 1000: timestep = 1000 t)."""
    pc = den.config["precond"]
    if pc["name"] == "flow":
        if float(pc["kwargs"].get("time_scale", 1.0)) != 1000.0:
            raise ValueError("a diffusers flow scheduler needs the velocity precond with time_scale=1000 (timestep "
                             f"= 1000 t), got {pc['kwargs']}")
        return {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0}
    if pc["name"] != "edm":
        raise ValueError(f"the diffusers EDM schedulers need an EDM-preconditioned denoiser, got {pc['name']!r}")
    return {"_class_name": "EDMEulerScheduler", "sigma_min": float(den.sigma_min), "sigma_max": float(den.sigma_max),
            "sigma_data": float(pc["kwargs"].get("sigma_data", 0.5)), "sigma_schedule": "karras",
            "num_train_timesteps": 1000, "prediction_type": "epsilon", "rho": 7.0, "final_sigmas_type": "zero"}


def save_stack(folder: str | os.PathLike, den: nn.Module, ae: KLAutoencoder | str | os.PathLike,
               meta: dict[str, Any], dtype: torch.dtype | None = torch.float16, overwrite: bool = False) -> Path:
    """Write a trained fewstep latent teacher (a Preconditioned DiffusersUNet2D, EDM precond) and its autoencoder
    (object or folder) as one diffusers folder; weights stored in `dtype` (16-bit by default)."""
    import diffusers

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} exists and is not empty; pass overwrite=True (--overwrite) or another path")
    unet = getattr(getattr(den, "net", None), "unet", None)
    if unet is None:
        raise TypeError("save_stack needs a denoiser whose network is a DiffusersUNet2D (net class diffusers_unet2d)")
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (unet if dtype is None else copy_as(unet, dtype)).save_pretrained(str(tmp / "unet"))
    if isinstance(ae, KLAutoencoder):
        ae.save_pretrained(tmp / "vae", dtype)
    else:
        shutil.copytree(Path(ae), tmp / "vae")
    sched = scheduler_config(den)
    scheduler_class = getattr(diffusers, sched["_class_name"])
    scheduler_class(**{k: v for k, v in sched.items() if not k.startswith("_")}).save_pretrained(str(tmp / "scheduler"))
    classes = int(den.config["net"]["kwargs"].get("num_classes", 0))
    (tmp / META).write_text(json.dumps({"kind": "latent_denoiser", "num_classes": classes, **meta}, indent=2,
                                       sort_keys=True) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def load_stack(folder: str | os.PathLike, device: str = "cpu") -> nn.Module:
    """A latent stack folder as a LatentDenoiser (fs.from_diffusers on it)."""
    folder = Path(folder)
    if not (folder / "unet").is_dir() or not (folder / "vae").is_dir():
        raise CheckpointError(f"{folder} is not a latent stack: it needs unet/, vae/ and scheduler/ folders")
    return from_diffusers(folder, device=device)

"""Load a diffusers UNet (local `save_pretrained` dir or in-memory module) as a fewstep denoiser D(x, sigma, cond).

D(x, sigma) = c_skip x + c_out F(c_in x, c_noise) (Karras et al. 2022, Eq. 7) with the eps / x0 / v / flow
preconditioning of precond.py and c_noise(sigma) = the diffusers timestep (schedule.py); c_in x is exactly the
pipeline's native latent alpha * x_VE. diffusers is imported inside functions only; nothing is fetched from a hub.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..precond import Preconditioned
from .schedule import TrainSchedule, config_dict, schedule_from_config

LAYOUT = (
    "expected a diffusers `save_pretrained` directory: either a pipeline root holding `unet/config.json` "
    "(+ weights) and `scheduler/scheduler_config.json`, or a bare UNet directory holding `config.json` (+ weights) "
    "with its scheduler config given as scheduler=... or found as `scheduler_config.json` beside it or in "
    "`../scheduler/`"
)
_UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel")


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def is_diffusers_dir(path: str | Path) -> bool:
    """True if `path` is a local diffusers pipeline root or a diffusers model dir (for the sample/search CLIs)."""
    p = Path(path)
    if not p.is_dir():
        return False
    if (p / "model_index.json").is_file() or (p / "unet" / "config.json").is_file():
        return True
    cfg = p / "config.json"
    if not cfg.is_file():
        return False
    try:
        data = _read_json(cfg)
    except (OSError, ValueError):
        return False
    return "_diffusers_version" in data or str(data.get("_class_name", "")) in _UNET_CLASSES


def _resolve_dir(path: Path) -> tuple[Path, list[Path]]:
    """(unet dir, candidate scheduler config files) for a pipeline root or a bare UNet dir."""
    if not path.exists():
        raise FileNotFoundError(f"no such path: {path}; {LAYOUT}")
    if (path / "unet" / "config.json").is_file():
        return path / "unet", [path / "scheduler" / "scheduler_config.json"]
    if (path / "config.json").is_file():
        return path, [path / "scheduler_config.json", path.parent / "scheduler" / "scheduler_config.json"]
    raise FileNotFoundError(f"{path} holds neither unet/config.json nor config.json; {LAYOUT}")


def _load_unet(unet_dir: Path) -> nn.Module:
    import diffusers

    name = str(_read_json(unet_dir / "config.json").get("_class_name", "UNet2DModel"))
    cls = getattr(diffusers, name, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ValueError(f"{unet_dir}/config.json names class {name!r}, which diffusers does not have")
    return cls.from_pretrained(str(unet_dir))


def _scheduler_config(scheduler: Any, candidates: list[Path]) -> dict[str, Any]:
    """A scheduler object / config dict / dir / JSON file, else the first candidate file that exists."""
    if scheduler is None:
        for c in candidates:
            if c.is_file():
                return _read_json(c)
        where = ", ".join(str(c) for c in candidates) or "(an in-memory module has no directory)"
        raise FileNotFoundError(
            f"no scheduler config found (looked in {where}); pass scheduler= a diffusers scheduler, its config dict "
            f"or a path to scheduler_config.json; {LAYOUT}"
        )
    if isinstance(scheduler, dict) or hasattr(scheduler, "config"):
        return config_dict(scheduler)
    p = Path(scheduler)
    f = p / "scheduler_config.json" if p.is_dir() else p
    if not f.is_file():
        raise FileNotFoundError(f"scheduler config {f} does not exist; pass a scheduler_config.json or its directory")
    return _read_json(f)


class UNetNet(nn.Module):
    """Adapter F(x_in, c_noise, cond) -> raw UNet output; `cond` is a tensor or a dict of UNet kwargs."""

    def __init__(self, unet: nn.Module, learned_variance: bool = False) -> None:
        super().__init__()
        self.unet, self.learned_variance = unet, learned_variance
        params = inspect.signature(unet.forward).parameters
        self.cond_key = "encoder_hidden_states" if "encoder_hidden_states" in params else "class_labels"

    def forward(self, x_in: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        if cond is None:
            kwargs: dict[str, Any] = {}
        elif isinstance(cond, dict):
            kwargs = dict(cond)
        else:
            kwargs = {self.cond_key: cond}
        out = self.unet(x_in, t, return_dict=False, **kwargs)[0]
        if self.learned_variance and out.shape[1] == 2 * x_in.shape[1]:
            out = out[:, : x_in.shape[1]]  # learned-variance heads: the first half is the mean parameterisation
        return out


class DiffusersDenoiser(Preconditioned):
    """A diffusers UNet as D(x, sigma, cond) -> x0 (VE); `.schedule` holds the training schedule."""

    def __init__(
        self, unet: nn.Module, schedule: TrainSchedule, sigma_min: float | None = None, sigma_max: float | None = None,
    ) -> None:
        cfg = getattr(unet, "config", {})
        size = cfg.get("sample_size", None) if hasattr(cfg, "get") else None
        chans = cfg.get("in_channels", None) if hasattr(cfg, "get") else None
        hw = (size, size) if isinstance(size, int) else tuple(size) if size is not None else None
        shape = (chans, *hw) if chans is not None and hw is not None else None
        super().__init__(
            UNetNet(unet, schedule.learned_variance), schedule.precond(),
            schedule.sigma_min if sigma_min is None else sigma_min,
            schedule.sigma_max if sigma_max is None else sigma_max, shape,
        )
        self.schedule = schedule
        self.config = {"source": "diffusers", "scheduler": schedule.config, "prediction_type": schedule.prediction_type}

    @property
    def unet(self) -> nn.Module:
        return self.net.unet

    def timestep(self, sigma: Tensor | float) -> Tensor:
        """The diffusers timestep the UNet sees at VE noise level sigma."""
        return self.schedule.timestep(sigma)


def from_diffusers(
    path_or_module: Any,
    scheduler: Any = None,
    *,
    prediction_type: str | None = None,
    round_timesteps: bool = False,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> DiffusersDenoiser:
    """A diffusers model (local dir, pipeline object or UNet module) -> fewstep denoiser (Karras et al. 2022, Eq. 7).

    `scheduler` (object, config dict, dir or JSON file) overrides the scheduler found beside the model; it is
    required for a bare module. sigma_min/sigma_max default to the training schedule's range.
    """
    if isinstance(path_or_module, (str, Path)):
        unet_dir, candidates = _resolve_dir(Path(path_or_module))
        cfg = _scheduler_config(scheduler, candidates)
        unet = _load_unet(unet_dir)
    elif hasattr(path_or_module, "unet") and not isinstance(path_or_module, nn.Module):
        unet = path_or_module.unet
        cfg = _scheduler_config(scheduler if scheduler is not None else getattr(path_or_module, "scheduler", None), [])
    elif isinstance(path_or_module, nn.Module):
        unet, cfg = path_or_module, _scheduler_config(scheduler, [])
    else:
        raise TypeError(
            f"from_diffusers takes a local directory, a diffusers pipeline or a UNet module, got "
            f"{type(path_or_module).__name__}"
        )
    if device is not None:
        unet = unet.to(device)
    if dtype is not None:
        unet = unet.to(dtype)
    unet.eval().requires_grad_(False)
    sched = schedule_from_config(cfg, prediction_type, round_timesteps)
    return DiffusersDenoiser(unet, sched, sigma_min, sigma_max)

"""Load a diffusers UNet (local `save_pretrained` dir or in-memory module) as a fewstep denoiser D(x, sigma, cond).

D(x, sigma) = c_skip x + c_out F(c_in x, c_noise) (Karras et al. 2022, Eq. 7) with the eps / x0 / v / flow
preconditioning of precond.py and c_noise(sigma) = the diffusers timestep (schedule.py); c_in x is exactly the
pipeline's native latent alpha * x_VE. diffusers is imported inside functions only; nothing is fetched from a hub.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..denoiser import append_dims, batch_sigma
from ..latent.autoencoder import META, KLAutoencoder, is_autoencoder_dir
from ..latent.denoiser import LatentDenoiser
from ..nets.diffusers_unet import UNetNet
from ..precond import Preconditioned
from .schedule import TrainSchedule, config_dict, schedule_from_config

LAYOUT = (
    "expected a diffusers `save_pretrained` directory: either a pipeline root holding `unet/config.json` "
    "(+ weights) and `scheduler/scheduler_config.json`, or a bare UNet directory holding `config.json` (+ weights) "
    "with its scheduler config given as scheduler=... or found as `scheduler_config.json` beside it or in "
    "`../scheduler/`"
)
_UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel")
_HALF = (torch.float16, torch.bfloat16)


def _unsupported(where: Any, name: str) -> ValueError:
    kind = "a transformer backbone" if "Transformer" in name else "a backbone"
    return ValueError(
        f"{where} holds {kind} ({name}); fewstep's diffusers bridge supports {' and '.join(_UNET_CLASSES)} only: "
        "transformer backbones (DiT, SD3, Flux) are not supported yet"
    )


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
    if (path / "model_index.json").is_file() or (path / "transformer" / "config.json").is_file():
        index = _read_json(path / "model_index.json") if (path / "model_index.json").is_file() else {}
        entry = index.get("transformer")
        if (path / "transformer" / "config.json").is_file():
            name = str(_read_json(path / "transformer" / "config.json").get("_class_name", "a transformer"))
        elif isinstance(entry, list) and len(entry) == 2:
            name = str(entry[1])
        else:
            name = ""
        if name:
            raise _unsupported(path, name)
    if (path / "config.json").is_file():
        return path, [path / "scheduler_config.json", path.parent / "scheduler" / "scheduler_config.json"]
    raise FileNotFoundError(f"{path} holds neither unet/config.json nor config.json; {LAYOUT}")


def _load_unet(unet_dir: Path, torch_dtype: torch.dtype | None) -> nn.Module:
    """from_pretrained on a local dir; without accelerate, low_cpu_mem_usage=False (diffusers would warn each load)."""
    import diffusers

    name = str(_read_json(unet_dir / "config.json").get("_class_name", "UNet2DModel"))
    cls = getattr(diffusers, name, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ValueError(f"{unet_dir}/config.json names class {name!r}, which diffusers does not have")
    if name not in _UNET_CLASSES:
        raise _unsupported(unet_dir, name)
    kw: dict[str, Any] = {} if importlib.util.find_spec("accelerate") else {"low_cpu_mem_usage": False}
    if torch_dtype is not None:
        kw["torch_dtype"] = torch_dtype
    return cls.from_pretrained(str(unet_dir), **kw)


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


class DiffusersDenoiser(Preconditioned):
    """A diffusers UNet as D(x, sigma, cond) -> x0 (VE); `.schedule` holds the training schedule."""

    def __init__(
        self, unet: nn.Module, schedule: TrainSchedule, sigma_min: float | None = None, sigma_max: float | None = None,
        null_label: int | None = None,
    ) -> None:
        cfg = getattr(unet, "config", {})
        size = cfg.get("sample_size", None) if hasattr(cfg, "get") else None
        chans = cfg.get("in_channels", None) if hasattr(cfg, "get") else None
        hw = (size, size) if isinstance(size, int) else tuple(size) if size is not None else None
        shape = (chans, *hw) if chans is not None and hw is not None else None
        super().__init__(
            UNetNet(unet, schedule.learned_variance, null_label), schedule.precond(),
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

    def forward(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        """D = c_skip x + c_out F(c_in x, t) (Karras et al. 2022, Eq. 7) in x's dtype; a float16/bfloat16 UNet gets
        its timestep in float32, as diffusers pipelines pass it (fp16 would round t near 999 to steps of 0.5)."""
        dtype = next(self.unet.parameters()).dtype
        if dtype not in _HALF:
            return super().forward(x, sigma, cond)
        s = batch_sigma(sigma, x).to(torch.float64)
        p = self.precond
        c_skip, c_out, c_in = (append_dims(f(s), x.ndim) for f in (p.c_skip, p.c_out, p.c_in))
        F_x = self.net((c_in * x).to(dtype), p.c_noise(s).to(torch.float32), cond)
        return (c_skip * x.to(torch.float64) + c_out * F_x.to(torch.float64)).to(x.dtype)


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
    torch_dtype: torch.dtype | None = None,
) -> DiffusersDenoiser | LatentDenoiser:
    """A diffusers model (local dir, pipeline object or UNet module) -> fewstep denoiser (Karras et al. 2022, Eq. 7).

    `scheduler` (object, config dict, dir or JSON file) overrides the scheduler found beside the model; it is
    required for a bare module. sigma_min/sigma_max default to the training schedule's range. `torch_dtype` (alias
    `dtype`) is the network's dtype (given to from_pretrained); the denoiser returns x's dtype. UNet backbones only.
    A pipeline folder with a `vae/` AutoencoderKL is a latent stack: the result is a LatentDenoiser that
    fs.generate decodes; its `fewstep.json` adds the class count (the null label for guidance), data set and
    default sampler.
    """
    if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
        raise ValueError(f"dtype={dtype} and torch_dtype={torch_dtype} disagree; pass one of them")
    dtype = torch_dtype if torch_dtype is not None else dtype
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"torch_dtype must be a torch.dtype such as torch.float16, got {dtype!r}")
    root: Path | None = None
    if isinstance(path_or_module, (str, Path)):
        unet_dir, candidates = _resolve_dir(Path(path_or_module))
        root = Path(path_or_module) if unet_dir != Path(path_or_module) else None
        cfg = _scheduler_config(scheduler, candidates)
        unet = _load_unet(unet_dir, dtype)
    elif hasattr(path_or_module, "unet") and not isinstance(path_or_module, nn.Module):
        unet = path_or_module.unet
        cfg = _scheduler_config(scheduler if scheduler is not None else getattr(path_or_module, "scheduler", None), [])
    elif isinstance(path_or_module, nn.Module):
        if "Transformer" in type(path_or_module).__name__:
            raise _unsupported("the given module", type(path_or_module).__name__)
        unet, cfg = path_or_module, _scheduler_config(scheduler, [])
    elif getattr(path_or_module, "transformer", None) is not None:
        raise _unsupported(f"the {type(path_or_module).__name__} pipeline", type(path_or_module.transformer).__name__)
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
    meta = _read_json(root / META) if root is not None and (root / META).is_file() else {}
    classes = int(meta.get("num_classes", 0) or 0)
    den = DiffusersDenoiser(unet, sched, sigma_min, sigma_max, null_label=classes or None)
    den.config.update({k: v for k, v in meta.items() if k != "kind"})
    if root is not None and is_autoencoder_dir(root / "vae"):  # a latent stack: decode with its AutoencoderKL
        ae = KLAutoencoder.from_pretrained(root / "vae").to(device or "cpu")
        out = LatentDenoiser(den, ae)
        out.config = {**den.config, "kind": "latent_denoiser"}
        return out
    return den

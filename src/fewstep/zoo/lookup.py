"""Names -> models and plans: a zoo name, a checkpoint path, a diffusers folder or a loaded model; a plan name, a
plan file, a Plan or "searched" (the shipped searched plan of a zoo model at an NFE); per-sample class labels."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import cache, kinds
from ..bridge.load import from_diffusers, is_diffusers_dir
from ..errors import PlanError
from ..latent.autoencoder import KLAutoencoder, is_autoencoder_dir
from ..nets import conditions
from ..solvers import constructors
from ..solvers.plan import Plan

FILES = Path(__file__).resolve().parent / "files"


def names() -> list[str]:
    """Names of the shipped models: files/<name>.safetensors, and folders files/<name>/ (diffusers folders: the
    latent stack's autoencoders and teachers) with a manifest files/<name>.json."""
    files = {p.name[: -len(".safetensors")] for p in FILES.glob("*.safetensors")}
    folders = {p.name for p in FILES.iterdir() if p.is_dir() and (FILES / f"{p.name}.json").is_file()}
    return sorted(files | folders)


def path(name: str) -> Path:
    """The weights file (or diffusers folder) of a shipped model; KeyError listing the shipped names otherwise."""
    for p in (FILES / f"{name}.safetensors", FILES / name):
        if name and (p.is_file() or (p.is_dir() and (FILES / f"{name}.json").is_file())):
            return p
    raise KeyError(f"no shipped model named {name!r}; shipped: {', '.join(names()) or '(none)'}; "
                   "or pass a path to a .safetensors file saved by fewstep")


def manifest(name: str) -> dict[str, Any]:
    """The manifest of a shipped model (command, seed, commit, metrics, wall time, default sampler)."""
    path(name)
    m = FILES / f"{name}.json"
    if not m.is_file():
        raise FileNotFoundError(f"shipped model {name!r} has no manifest at {m}; rebuild it with `fewstep zoo`")
    return json.loads(m.read_text())


def model_name(spec: str | os.PathLike) -> str:
    """A short name of a model spec: the zoo name, or the file/folder stem of a path."""
    s = os.fspath(spec).rstrip("/\\")
    return Path(s).name.removesuffix(".safetensors")


def load(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """Any fewstep model from a shipped name (e.g. "digits-edm") or a path (a checkpoint, an autoencoder or a
    diffusers folder), as its kind's object (fewstep.kinds); a shipped model's config carries its zoo name."""
    s = os.fspath(name_or_path)
    if not s:
        raise KeyError("the model name is empty; give a shipped name (`fewstep zoo list`) or a .safetensors path")
    if s in names():
        p = path(s)
        model = load_folder(p, device) if p.is_dir() else kinds.load(p, device)
        model.config["zoo_name"] = s
        return model
    if Path(s).is_dir():
        return load_folder(Path(s), device)
    looks_like_path = s.endswith(".safetensors") or os.sep in s or (os.altsep is not None and os.altsep in s)
    if looks_like_path or Path(s).exists():
        return kinds.load(s, device)
    raise KeyError(f"unknown model {s!r}: not a shipped name ({', '.join(names()) or 'none shipped'}) and not a "
                   "file; give a shipped name or a path to a .safetensors file fewstep saved")


def load_folder(folder: Path, device: str | torch.device = "cpu") -> Any:
    """A folder model: a diffusers AutoencoderKL folder (an autoencoder), a diffusers model folder (a denoiser;
    a latent denoiser when it holds vae/), or a folder whose fewstep.json names a method's kind (LCM-LoRA)."""
    if is_autoencoder_dir(folder):
        return KLAutoencoder.from_pretrained(folder).to(device).requires_grad_(False)
    meta = folder / "fewstep.json"
    if meta.is_file() and not is_diffusers_dir(folder):  # a method's folder kind (e.g. LCM-LoRA: adapter + json)
        obj = kinds.build(json.loads(meta.read_text()), None, folder)
        return obj.eval().requires_grad_(False).to(device) if isinstance(obj, torch.nn.Module) else obj
    if not is_diffusers_dir(folder):
        raise FileNotFoundError(f"{folder} is a folder but not a diffusers model (no model_index.json, "
                                "unet/config.json or an AutoencoderKL config.json); give a zoo name, a .safetensors "
                                "file or a diffusers folder")
    return from_diffusers(folder, device=device)


def resolve(spec: Any, device: str | torch.device = "cpu") -> Any:
    """A model from a zoo name, a fewstep checkpoint, a local diffusers folder, or a loaded model (returned as is)."""
    if not isinstance(spec, (str, os.PathLike)):
        return spec
    return load(spec, device)


def zoo_name(model: Any) -> str | None:
    """The zoo name a model was loaded under, or None."""
    return (getattr(model, "config", None) or {}).get("zoo_name")


def dataset_of(model: Any) -> str | None:
    """The data set a model was trained on (config["data"] of fewstep checkpoints), or None."""
    data = (getattr(model, "config", None) or {}).get("data")
    return data.get("name") if isinstance(data, dict) else data


def num_classes(model: Any) -> int:
    """Number of classes of a class-conditional fewstep model, declared by num_classes= or a label condition
    (fewstep.nets.conditions); 0 when unconditional or unknown."""
    config = getattr(model, "config", None) or {}
    if config.get("num_classes"):  # a diffusers stack's fewstep.json
        return int(config["num_classes"])
    kwargs = (config.get("net") or {}).get("kwargs") or {}
    label = conditions.parse(kwargs.get("conds"), int(kwargs.get("num_classes", 0) or 0)).get(conditions.LABEL)
    return int(label["num_classes"]) if label else 0


def searched_plan_path(model: str, nfe: int) -> Path:
    """Where the shipped searched plan of a zoo model at an NFE lives: zoo/files/plans/<model>-nfe<N>.json."""
    return FILES / "plans" / f"{model}-nfe{nfe}.json"


def find_searched_plan(model: str, nfe: int) -> Path | None:
    """The searched plan of `model` at `nfe`: the shipped one, else the user's in the cache (fewstep.cache), else
    None."""
    for p in (searched_plan_path(model, nfe), cache.plan_path(model, nfe)):
        if p.is_file():
            return p
    return None


def resolve_plan(spec: str | Plan, den: Any, nfe: int | None = None, grid: str = "logsnr",
                 model: str | None = None) -> Plan:
    """A Plan from a Plan, a plan name (built over the model's sigma range), a JSON file, or "searched" (the shipped
    searched plan of `model` at `nfe`). A file's or Plan's NFE must agree with `nfe` when both are given."""
    if nfe is not None and nfe <= 0:
        raise ValueError(f"--nfe must be a positive number of denoiser evaluations, got {nfe}")
    if isinstance(spec, Plan):
        plan = spec
    elif spec == "searched":
        if nfe is None or model is None:
            raise ValueError("plan 'searched' needs the model's zoo name and --nfe")
        path = find_searched_plan(model, nfe)
        if path is None:
            mine = cache.plan_path(model, nfe)
            raise FileNotFoundError(f"no searched plan for model {model!r} at NFE {nfe} (shipped or in {mine.parent}); "
                                    f"produce it with `fewstep search --model MODEL --nfe {nfe} --out {mine}` (the "
                                    "user cache, FEWSTEP_CACHE; `--plan searched` looks there), or pass a plan name or "
                                    "a plan .json file")
        plan = _read_plan(path)
    elif os.fspath(spec).endswith(".json") or Path(spec).is_file():
        if not Path(spec).is_file():
            raise FileNotFoundError(f"plan file {spec} does not exist; give a plan name "
                                    f"({', '.join(constructors.names())}) or an existing .json plan")
        plan = _read_plan(Path(spec))
    else:
        return constructors.get(spec, nfe=10 if nfe is None else nfe, sigma_min=float(den.sigma_min),
                                sigma_max=float(den.sigma_max), grid=grid)
    if nfe is not None and plan.nfe != nfe:
        what = f"plan file {spec}" if isinstance(spec, str) else "the given plan"
        raise PlanError(f"{what} spends {plan.nfe} NFE but --nfe {nfe} was asked; drop --nfe or pick the matching "
                        "file")
    return plan


def _read_plan(path: Path) -> Plan:
    try:
        return Plan.from_json(path.read_text())
    except PlanError:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise PlanError(f"plan file {path} is not a valid fewstep plan ({e}); write it with plan.to_json()") from e


def labels_for(n: int, cond: int | Tensor | None, classes: int) -> Tensor | None:
    """Per-sample class labels [n]: None stays None, an int is repeated, a tensor is checked."""
    if cond is None:
        return None
    y = torch.full((n,), int(cond), dtype=torch.long) if isinstance(cond, int) else torch.as_tensor(cond).long()
    if y.shape != (n,):
        raise ValueError(f"need one label per sample ({n}), got shape {tuple(y.shape)}")
    if classes and ((y < 0) | (y >= classes)).any():
        raise ValueError(f"class labels must lie in [0, {classes - 1}] for this model, got {y.min()}..{y.max()}")
    return y

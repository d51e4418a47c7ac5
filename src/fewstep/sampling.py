"""Sample a model with a plan and keep what was made: model/plan resolution, per-sample seeded generation with
timing, image grids and sample files. Used by `fewstep sample`/`eval`, the benchmarks and the demo.

Noise is drawn per sample (fs.seed.randn over seeds_for(n, seed)), so sample i is the same whatever the batch
size (EDM's StackedRandomGenerator idea, Karras et al. 2022).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import PlanError


def model_name(spec: str | os.PathLike) -> str:
    """A short name of a model spec: the zoo name, or the file/folder stem of a path."""
    s = os.fspath(spec).rstrip("/\\")
    return Path(s).name.removesuffix(".safetensors")


def load_denoiser(spec: str | os.PathLike, device: str = "cpu") -> Any:
    """A denoiser from a zoo name, a fewstep .safetensors checkpoint, or a local diffusers model folder."""
    from .bridge.load import from_diffusers, is_diffusers_dir
    from .zoo import load

    s = os.fspath(spec)
    if Path(s).is_dir():
        if not is_diffusers_dir(s):
            raise FileNotFoundError(f"{s} is a folder but not a diffusers model (no model_index.json or "
                                    "unet/config.json); give a zoo name, a .safetensors file or a diffusers folder")
        return from_diffusers(s, device=device)
    return load(s, device=device)


def dataset_of(den: Any) -> str | None:
    """The data set a model was trained on (config["data"] of fewstep checkpoints), or None."""
    data = (getattr(den, "config", None) or {}).get("data")
    return data.get("name") if isinstance(data, dict) else data


def num_classes(den: Any) -> int:
    """Number of classes of a class-conditional fewstep model (0 when unconditional or unknown)."""
    kwargs = ((getattr(den, "config", None) or {}).get("net") or {}).get("kwargs") or {}
    return int(kwargs.get("num_classes", 0) or 0)


def searched_plan_path(model: str, nfe: int) -> Path:
    """Where the shipped searched plan of a zoo model at an NFE lives: zoo/files/plans/<model>-nfe<N>.json."""
    from .zoo import FILES

    return FILES / "plans" / f"{model}-nfe{nfe}.json"


def resolve_plan(spec: str, den: Any, nfe: int | None = None, grid: str = "logsnr", model: str | None = None) -> Any:
    """A Plan from a plan name (built over the model's sigma range), a JSON file, or "searched" (the shipped
    searched plan of `model` at `nfe`). A file's NFE must agree with `nfe` when both are given."""
    from .solvers import constructors
    from .solvers.plan import Plan

    if nfe is not None and nfe <= 0:
        raise ValueError(f"--nfe must be a positive number of denoiser evaluations, got {nfe}")
    if spec == "searched":
        if nfe is None or model is None:
            raise ValueError("plan 'searched' needs the model's zoo name and --nfe")
        path = searched_plan_path(model, nfe)
        if not path.is_file():
            raise FileNotFoundError(f"no searched plan for model {model!r} at NFE {nfe} ({path}); produce it with "
                                    f"`fewstep search --model {model} --nfe {nfe} --out {path}`, or pass a plan name "
                                    "or a plan .json file")
        spec = str(path)
    if spec.endswith(".json") or Path(spec).is_file():
        if not Path(spec).is_file():
            raise FileNotFoundError(f"plan file {spec} does not exist; give a plan name "
                                    f"({', '.join(constructors.names())}) or an existing .json plan")
        try:
            plan = Plan.from_json(Path(spec).read_text())
        except PlanError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise PlanError(f"plan file {spec} is not a valid fewstep plan ({e}); write it with plan.to_json()") from e
        if nfe is not None and plan.nfe != nfe:
            raise PlanError(f"plan file {spec} spends {plan.nfe} NFE but --nfe {nfe} was asked; drop --nfe or "
                            "pick the matching file")
        return plan
    return constructors.get(spec, nfe=10 if nfe is None else nfe, sigma_min=float(den.sigma_min),
                            sigma_max=float(den.sigma_max), grid=grid)


def noise(n: int, seed: int, shape: tuple[int, ...], sigma: float, device: str = "cpu") -> Tensor:
    """x_T = sigma * n_i with n_i drawn from sample i's own seed (fs.seed.seeds_for(n, seed))."""
    from .seed import randn, seeds_for

    return randn(seeds_for(n, seed), shape, device=device) * float(sigma)


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


@torch.no_grad()
def generate(den: Any, plan: Any, n: int, seed: int = 0, cond: int | Tensor | None = None, batch: int = 256,
             device: str = "cpu", shape: tuple[int, ...] | None = None) -> tuple[Tensor, float]:
    """Draw n samples with `plan` (fs.sample) from per-sample seeded noise; returns (x0 on CPU, seconds spent
    sampling). cond: None, one class label, or labels [n]."""
    from .solvers.engine import sample

    if n <= 0 or batch <= 0:
        raise ValueError(f"n and batch must be positive, got n={n}, batch={batch}")
    shape = tuple(shape or getattr(den, "shape", None) or ())
    if not shape:
        raise ValueError("the denoiser has no `shape`; pass shape=(C, H, W) or (D,)")
    x_T = noise(n, seed, shape, float(plan.sigmas[0]))
    y = labels_for(n, cond, num_classes(den))
    outs, seconds = [], 0.0
    for i in range(0, n, batch):
        xb = x_T[i:i + batch].to(device)
        cb = None if y is None else y[i:i + batch].to(device)
        t0 = time.perf_counter()
        outs.append(sample(den, xb, plan, cond=cb).cpu())
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
    return torch.cat(outs), seconds


def save_grid(x: Tensor, path: str | os.PathLike, nrow: int | None = None, scale: int | None = None,
              pad: int = 1) -> Path:
    """Write images [n, C, H, W] in [-1, 1] as one PNG grid (nrow per row, nearest-neighbour upscaled by `scale`,
    by default to tiles of about 64 px)."""
    import numpy as np
    from PIL import Image

    from .io import atomic_write

    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"a grid needs images [n, 1 or 3, H, W], got shape {tuple(x.shape)}")
    n, C, H, W = x.shape
    scale = scale or max(1, 64 // max(H, W))
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    img = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    canvas = np.full((rows * (H + pad) + pad, nrow * (W + pad) + pad, C), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        canvas[pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = \
            img[i].transpose(1, 2, 0)
    canvas = canvas.repeat(scale, 0).repeat(scale, 1)
    pil = Image.fromarray(canvas[..., 0] if C == 1 else canvas, "L" if C == 1 else "RGB")
    return atomic_write(path, lambda tmp: pil.save(tmp, format="PNG"))


def save_samples(x: Tensor, path: str | os.PathLike, labels: Tensor | None = None,
                 meta: dict[str, Any] | None = None) -> Path:
    """Save samples (and labels) as .pt ({"x", "y", "meta"}) or .npz (arrays x, y)."""
    import numpy as np

    from .io import atomic_torch_save, atomic_write

    path = Path(path)
    if path.suffix == ".pt":
        return atomic_torch_save({"x": x.cpu(), "y": None if labels is None else labels.cpu(), "meta": meta or {}},
                                 path)
    if path.suffix == ".npz":
        arrays = {"x": x.cpu().numpy()} | ({} if labels is None else {"y": labels.cpu().numpy()})
        return atomic_write(path, lambda tmp: np.savez(open(tmp, "wb"), **arrays))
    raise ValueError(f"sample files end in .pt or .npz, got {path.name}")


def load_samples(path: str | os.PathLike) -> tuple[Tensor, Tensor | None]:
    """Read samples saved by `save_samples` (or any .npz with array x / .pt tensor or dict with key x)."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sample file at {path}; write one with `fewstep sample --save FILE.npz`")
    if path.suffix not in (".npz", ".pt"):
        raise ValueError(f"sample files end in .pt or .npz, got {path.name}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                obj = {k: torch.from_numpy(f[k]) for k in f.files}
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # numpy/zipfile/pickle raise many types on a damaged file
        raise ValueError(f"cannot read samples from {path} ({type(e).__name__}); the file is corrupt or not a "
                         "sample file") from e
    if torch.is_tensor(obj):
        return obj.float(), None
    if not isinstance(obj, dict) or not torch.is_tensor(obj.get("x")):
        raise ValueError(f"{path} holds no tensor 'x'; save samples with fewstep.sampling.save_samples")
    y = obj.get("y")
    return obj["x"].float(), (y.long() if torch.is_tensor(y) else None)

"""Files: checkpoints (safetensors weights with the JSON config in the file's metadata), sample files and PNG grids,
all written atomically.

A fewstep model file is one `.safetensors` whose metadata key "fewstep" holds a JSON config:
{"format": 1, "kind": "denoiser", "net": {"class", "kwargs"}, "precond": {"name", "kwargs"},
 "sigma_min", "sigma_max", "shape", "process"?, "data"?, "train"?: {command, seed, commit}, "metrics"?: {...}}.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .errors import CheckpointError

FORMAT = 1


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the `.NAME.PID.XXXX.tmp` files `atomic_write` left beside `path` when its writer was killed: only
    those whose writer PID no longer exists (a live writer's temp file is never touched). Returns the removed."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[^.]+\.tmp")
    removed = []
    for p in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        m = pattern.fullmatch(p.name)
        if m and not _pid_alive(int(m.group(1))):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:  # another writer cleaned it first
                pass
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call write(tmp_path) on a temp file in the target folder, fsync it, then rename over `path`.

    The temp file is `.NAME.PID.XXXX.tmp`; temp files of killed writers of the same `path` are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode a plain open() would
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save through a temp file + rename: a kill never leaves a half-written file behind."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def git_commit() -> str:
    """The current git commit of the fewstep source tree, or 'unknown'."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_model(path: str | os.PathLike, module: nn.Module, config: dict[str, Any]) -> Path:
    """Save a module's weights and its config to one safetensors file, atomically."""
    from safetensors.torch import save_file

    config = {"format": FORMAT, **config}
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    meta = {"fewstep": json.dumps(config, sort_keys=True)}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))


def save_half(src: str | os.PathLike, dst: str | os.PathLike, dtype: torch.dtype = torch.float16) -> Path:
    """A copy of a saved model with its floating weights stored in `dtype` (the zoo's 16-bit storage; they load
    back into float32 networks), the config unchanged."""
    from safetensors.torch import save_file

    config = read_config(src)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_state(src).items()}
    meta = {"fewstep": json.dumps(config, sort_keys=True)}
    return atomic_write(dst, lambda tmp: save_file(state, tmp, metadata=meta))


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read the JSON config stored in a fewstep safetensors file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; give a path to a .safetensors file fewstep saved, "
                                "or a zoo name (`fewstep zoo list`)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); re-download or re-train it") from e
    if "fewstep" not in meta:
        raise CheckpointError(f"{path} has no fewstep config in its metadata; was it saved by fewstep.io.save_model?")
    try:
        config = json.loads(meta["fewstep"])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: the stored config is not valid JSON ({e})") from e
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: config format {config.get('format')!r} is not {FORMAT}; upgrade fewstep")
    return config


def load_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read the weights ({e}); the file is corrupt or truncated") from e


def build_denoiser(config: dict[str, Any], state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Rebuild a Preconditioned denoiser from its config (and load weights if given)."""
    from . import nets
    from . import precond as P

    for key in ("net", "precond", "sigma_min", "sigma_max"):
        if key not in config:
            raise CheckpointError(f"checkpoint config lacks {key!r}; it was not saved by this version of fewstep")
    net_cfg = config["net"]
    if net_cfg.get("class") not in nets.NETS:
        raise CheckpointError(f"unknown network class {net_cfg.get('class')!r}; known: {', '.join(nets.NETS)}")
    net = nets.NETS[net_cfg["class"]](**net_cfg.get("kwargs", {}))
    pc = P.get(config["precond"]["name"], **config["precond"].get("kwargs", {}))
    den = P.Preconditioned(net, pc, config["sigma_min"], config["sigma_max"], config.get("shape"))
    den.config = config
    if state is not None:
        missing, unexpected = den.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"weights do not match the network: missing {missing[:5]}, unexpected "
                                  f"{unexpected[:5]}")
    return den.eval()


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load a denoiser saved by `save_model`, ready for sampling (eval mode, no grad needed)."""
    config = read_config(path)
    den = build_denoiser(config, load_state(path))
    for p in den.parameters():
        p.requires_grad_(False)
    return den.to(device)


def save_grid(x: Tensor, path: str | os.PathLike, nrow: int | None = None, scale: int | None = None,
              pad: int = 1) -> Path:
    """Write images [n, C, H, W] in [-1, 1] as one PNG grid (nrow per row, nearest-neighbour upscaled by `scale`,
    by default to tiles of about 64 px)."""
    from PIL import Image

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
        raise ValueError(f"{path} holds no tensor 'x'; save samples with fewstep.io.save_samples")
    y = obj.get("y")
    return obj["x"].float(), (y.long() if torch.is_tensor(y) else None)

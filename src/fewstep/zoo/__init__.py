"""The model zoo: small trained checkpoints shipped inside the package, each with a JSON manifest
(`files/<name>.json`: command, seed, commit, metrics, wall time) that says how to rebuild it.

`load(name_or_path)` returns a ready denoiser for a shipped name or for any checkpoint fewstep saved.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

FILES = Path(__file__).resolve().parent / "files"


def names() -> list[str]:
    """Names of the shipped models (files/<name>.safetensors)."""
    return sorted(p.name[: -len(".safetensors")] for p in FILES.glob("*.safetensors"))


def path(name: str) -> Path:
    """The weights file of a shipped model; KeyError listing the shipped names otherwise."""
    p = FILES / f"{name}.safetensors"
    if not p.is_file():
        raise KeyError(f"no shipped model named {name!r}; shipped: {', '.join(names()) or '(none)'}; "
                       "or pass a path to a .safetensors file saved by fewstep")
    return p


def manifest(name: str) -> dict[str, Any]:
    """The manifest of a shipped model (command, seed, commit, metrics, wall time)."""
    path(name)
    m = FILES / f"{name}.json"
    if not m.is_file():
        raise FileNotFoundError(f"shipped model {name!r} has no manifest at {m}; rebuild it with `fewstep zoo`")
    return json.loads(m.read_text())


def load(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """A denoiser from a shipped name (e.g. "digits-edm") or a path to a fewstep checkpoint (io.load_model)."""
    from ..io import load_model

    s = os.fspath(name_or_path)
    if (FILES / f"{s}.safetensors").is_file():
        return load_model(FILES / f"{s}.safetensors", device)
    looks_like_path = s.endswith(".safetensors") or os.sep in s or (os.altsep is not None and os.altsep in s)
    if looks_like_path or Path(s).exists():
        return load_model(s, device)
    raise KeyError(f"unknown model {s!r}: not a shipped name ({', '.join(names()) or 'none shipped'}) and not a "
                   "file; give a shipped name or a path to a .safetensors file fewstep saved")


__all__ = ["FILES", "load", "manifest", "names", "path"]

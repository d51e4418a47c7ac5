"""The model zoo: small trained checkpoints shipped inside the package, each with a JSON manifest
(`files/<name>.json`: command, seed, commit, metrics, wall time, default sampler) that says how to rebuild it;
name resolution (`load`, `resolve`) and `generate` (`fs.generate`: any model to images).
"""

from __future__ import annotations

from .generate import Drawn, draw, generate
from .lookup import FILES, load, manifest, names, path, resolve

__all__ = ["FILES", "Drawn", "draw", "generate", "load", "manifest", "names", "path", "resolve"]

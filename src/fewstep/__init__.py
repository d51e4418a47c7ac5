"""fewstep: make diffusion models generate in few steps, and measure the trade-off honestly.

Everything is a denoiser D(x, sigma, cond=None) -> x0 in VE coordinates; solvers, searches, distillers,
quantizers and editors consume only that. Heavy submodules load on first use, so `import fewstep` is quick.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {
    "analytic", "bench", "cache", "data", "denoiser", "distill", "edit", "errors", "grids", "io", "kinds", "latent",
    "metrics", "nets", "noise", "plans", "precond", "recipes", "report", "search", "seed", "solvers", "train", "zoo",
    "bridge", "guidance", "quant", "flow",
}
_ATTRS = {
    "Denoiser": ("denoiser", "Denoiser"),
    "reference_solve": ("reference", "reference_solve"),
    "Plan": ("solvers.plan", "Plan"),
    "sample": ("solvers.engine", "sample"),
    "invert": ("solvers.engine", "invert"),
    "from_diffusers": ("bridge.load", "from_diffusers"),
    "FewStepScheduler": ("bridge.scheduler", "FewStepScheduler"),
    "generate": ("zoo.generate", "generate"),
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _ATTRS:
        mod, attr = _ATTRS[name]
        return getattr(importlib.import_module(f".{mod}", __name__), attr)
    raise AttributeError(f"module 'fewstep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES | set(_ATTRS))

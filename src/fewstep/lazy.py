"""Lazy package attributes (PEP 562): a name is imported from its submodule on first use, so a package whose
torch-free parts (configs) are imported by `fewstep --help` does not pull in torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def attach(package: str, attrs: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(__getattr__, __dir__) for `package`, where attrs maps a name to its module relative to the package; other
    names are the package's submodules, imported on first use."""
    def getattr_(name: str) -> Any:
        if name in attrs:
            return getattr(importlib.import_module(f".{attrs[name]}", package), name)
        if not name.startswith("_"):  # a submodule, e.g. fs.distill.lcm_lora
            try:
                return importlib.import_module(f".{name}", package)
            except ModuleNotFoundError as e:
                if e.name != f"{package}.{name}":
                    raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        return sorted(set(attrs) | {"__doc__", "__name__"})

    return getattr_, dir_

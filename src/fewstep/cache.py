"""Where fewstep writes what it rebuilds or searches for the user: a cache folder of their own, never the installed
package (which may be read-only, and is replaced by the next install)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$FEWSTEP_CACHE, else $XDG_CACHE_HOME/fewstep, else ~/.cache/fewstep (not created here)."""
    if os.environ.get("FEWSTEP_CACHE"):
        return Path(os.environ["FEWSTEP_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fewstep"


def plan_path(model: str, nfe: int) -> Path:
    """Where a user's searched plan of `model` at an NFE goes, so `--plan searched` finds it: <cache>/plans/."""
    return cache_dir() / "plans" / f"{model}-nfe{nfe}.json"


def rebuild_dir() -> Path:
    """Where `fewstep zoo rebuild` writes rebuilt models and plans by default: <cache>/zoo/."""
    return cache_dir() / "zoo"

"""JSON that strict parsers accept: NaN and +-inf are written as null (RFC 8259 has no such numbers), tensors and
arrays as lists. Torch-free, so the CLI's `--json` paths can use it without importing torch."""

from __future__ import annotations

import json
import math
from typing import Any


def clean(v: Any) -> Any:
    """`v` with every non-finite float replaced by None, tuples as lists, and objects with .tolist() (tensors,
    numpy arrays and scalars) or another number type converted, as `json.dumps(default=float)` did before."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    if hasattr(v, "tolist"):
        return clean(v.tolist())
    return clean(float(v))


def dumps(v: Any, indent: int | None = 1) -> str:
    """json.dumps of `clean(v)`; raises ValueError rather than write a NaN."""
    return json.dumps(clean(v), indent=indent, allow_nan=False)

"""What a demo section is made of: measured rows and a section, torch-free, shared by the demo and each method's
benchmark module (a method adds its section with one `demo=` entry in fewstep.bench.registry)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    """One model x sampler x NFE, scored on `n` held-out samples: FD (and FD over the noise floor at the same n),
    classifier confidence, images/s in this run, the grid's path relative to the report folder, class accuracy
    (conditional samples only)."""

    method: str
    family: str
    nfe: int
    fd: float
    fd_over_floor: float
    confidence: float
    images_per_s: float
    grid: str = ""
    accuracy: float | None = None


@dataclass
class DemoSection:
    """A method's part of the demo report. `dataset` names the data its FDs are measured on: rows on "digits" join
    the front page's best-per-NFE table and plot beside the teacher; rows on other data get a table of their own
    against `floor` (the noise floor at the same n). `images` are (path relative to the report folder, caption);
    `tables` go below the rows."""

    title: str
    text: str
    rows: list[Row]
    dataset: str
    floor: float
    images: list[tuple[str, str]] = field(default_factory=list)
    tables: list[Any] = field(default_factory=list)

"""The demo: every working method on the shipped models, measured side by side, written as a report.

No training happens here: the teacher (digits-edm), the consistency students and the searched plans are read
from the zoo. Each method is sampled from the same per-sample seeds and scored with the same FD-digits (next to
the real-data noise floor at the same n) and classifier confidence; wall time gives images/s.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor

from . import data, zoo
from .bench import registry
from .bench.latent import accuracy
from .edit import ops
from .errors import PlanError
from .io import save_grid
from .metrics import confidence, fd, noise_floor
from .progress import stderr_console
from .report import write_page
from .report.demo_page import build
from .report.rows import DemoSection, Row
from .seed import HELD_OUT_SEED
from .solvers import constructors
from .zoo.generate import draw
from .zoo.lookup import resolve_plan, searched_plan_path

DATASET = "digits"
BASELINES = registry.baselines()  # the hand-made solvers, and below the captions, of every benchmark
PAPERS = registry.papers()


LATENT = "mnist-ldm"  # the latent teacher of the demo's latent section (28x28 MNIST, decoded)
LATENT_PLANS = ("dpm_solver_pp_2m", "unipc_bh2")


@dataclass
class DemoConfig:
    out: str = "demo-report"
    n: int = 500                # samples per method and NFE (FD's noise floor is computed at the same n)
    nfes: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10)
    grid_nfe: int = 5           # the NFE whose sample grid is shown for every solver
    seed: int = HELD_OUT_SEED   # held-out noise: the shipped searched plans were fit on other seeds
    device: str = "cpu"
    baselines: tuple[str, ...] = BASELINES

    @classmethod
    def quick(cls, out: str = "demo-report") -> DemoConfig:
        return cls(out=out, n=64, nfes=(2, 5), baselines=("ddim", "dpm_solver_pp_3m"))


def _measure(name: str, family: str, nfe: int, make: Callable[[], tuple[Tensor, float]], cfg: DemoConfig,
             floor: float, grid_dir: Path | None) -> Row:
    x, seconds = make()
    x = x.clamp(-1, 1)
    d = fd(x, DATASET)
    grid = ""
    if grid_dir is not None:
        grid = f"grids/{name}-nfe{nfe}.png"
        save_grid(x[:64], Path(cfg.out) / grid, nrow=8, scale=4)
    return Row(name, family, nfe, d, d / floor, confidence(x, DATASET)["confidence"], len(x) / max(seconds, 1e-9),
               grid)


def _solver_tasks(den: Any, cfg: DemoConfig) -> list[tuple[str, str, int, Callable[[], tuple[Tensor, float]]]]:
    def generate(den: Any, plan: Any) -> tuple[Tensor, float]:
        d = draw(den, cfg.n, plan=plan, seed=cfg.seed, device=cfg.device)
        return d.x, d.seconds

    tasks = []
    for nfe in cfg.nfes:
        for name in cfg.baselines:
            try:
                plan = constructors.get(name, nfe=nfe, sigma_min=den.sigma_min, sigma_max=den.sigma_max)
            except (PlanError, ValueError):
                continue  # e.g. heun cannot spend exactly 1 NFE
            tasks.append((name, "solver", nfe, lambda p=plan: generate(den, p)))
        if searched_plan_path("digits-edm", nfe).is_file():
            plan = resolve_plan("searched", den, nfe, model="digits-edm")
            tasks.append(("searched", "S^3", nfe, lambda p=plan: generate(den, p)))
    ref = constructors.get("heun", nfe=35, sigma_min=den.sigma_min, sigma_max=den.sigma_max)
    tasks.append(("teacher", "reference", 35, lambda: generate(den, ref)))
    return tasks


def _cm_tasks(cfg: DemoConfig) -> list[tuple[str, str, int, Callable[[], tuple[Tensor, float]]]]:
    tasks = []
    for name in ("digits-cd", "digits-ict"):
        if name not in zoo.names():
            continue
        cm = zoo.load(name, device=cfg.device)
        for steps in (1, 2):  # the student's recorded sigmas (its manifest's sampler), one batch
            def make(cm: Any = cm, steps: int = steps) -> tuple[Tensor, float]:
                d = draw(cm, cfg.n, nfe=steps, seed=cfg.seed, batch=cfg.n, device=cfg.device)
                return d.x, d.seconds
            tasks.append((name, "consistency", steps, make))
    return tasks


def _latent_rows(cfg: DemoConfig, grid_dir: Path) -> tuple[list[Row], float]:
    """The latent teacher (decoded, at its recorded best guidance) at 2, 4 and 8 NFE with hand-made and searched
    plans, and at 35-NFE Heun; FD on the MNIST classifier next to its noise floor at the same n."""
    if LATENT not in zoo.names():
        return [], float("nan")
    den = zoo.load(LATENT, device=cfg.device)
    dataset = zoo.lookup.dataset_of(den) or "mnist5k"
    g = float(zoo.manifest(LATENT).get("guidance", 1.0))  # the scale the benchmark found best
    y = torch.arange(cfg.n) % int(den.config.get("num_classes", 10))
    floor = noise_floor(dataset, cfg.n)
    runs: list[tuple[str, str, int, Any, str]] = [("teacher", "reference", 35, "heun", "karras")]
    for nfe in (2, 4, 8):
        runs += [(name, "solver", nfe, name, "logsnr") for name in LATENT_PLANS]
        if searched_plan_path(LATENT, nfe).is_file():
            runs.append(("searched", "S^3", nfe, "searched", "logsnr"))
    rows = []
    for name, family, nfe, plan, grid in runs:
        d = draw(den, cfg.n, nfe=nfe, plan=plan, grid=grid, seed=cfg.seed, labels=y, guidance=g, device=cfg.device)
        path = f"grids/{LATENT}-{name}-nfe{nfe}.png"
        save_grid(d.x[:80], Path(cfg.out) / path, nrow=10, scale=2)
        f = fd(d.x, dataset)
        acc = accuracy(d.x, y, dataset)
        rows.append(Row(f"{LATENT} {name}", family, nfe, f, f / floor, confidence(d.x, dataset)["confidence"],
                        cfg.n / max(d.seconds, 1e-9), path, acc))
    return rows, floor


def run(cfg: DemoConfig, progress: bool = True) -> dict[str, Any]:
    """Sample and measure every method, write `cfg.out`/index.html + index.md; returns the rows and paths."""
    out = Path(cfg.out)
    (out / "grids").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    den = zoo.load("digits-edm", device=cfg.device)
    floor = noise_floor(DATASET, cfg.n)
    tasks = _solver_tasks(den, cfg) + _cm_tasks(cfg)
    rows: list[Row] = []
    with _progress(progress) as bar:
        job = bar.add_task("sampling", total=len(tasks))
        for name, family, nfe, make in tasks:
            bar.update(job, description=f"{name} @ {nfe} NFE")
            show = nfe == cfg.grid_nfe or family in ("consistency", "reference")
            rows.append(_measure(name, family, nfe, make, cfg, floor, out / "grids" if show else None))
            bar.advance(job)
        bar.update(job, description="editing examples")
        edits = _edits(cfg)
        bar.update(job, description=f"latent teacher {LATENT}")
        latent, latent_floor = _latent_rows(cfg, out / "grids")
        sections = []
        for ref in registry.demos():
            bar.update(job, description=f"demo section {ref}")
            section = method_section(ref, cfg)
            if section is not None:
                sections.append(section)
    rows += [r for s in sections if s.dataset == DATASET for r in s.rows]  # same data: the front table and plot
    plot = _plot(rows, floor, out / "nfe_vs_fd.png")
    page = build(rows, edits, floor, cfg, plot.name, PAPERS, time.perf_counter() - t_start, latent, latent_floor,
                 sections)
    html, md = write_page(page, out)
    return {"rows": [asdict(r) for r in rows], "noise_floor": floor, "html": str(html), "markdown": str(md),
            "edits": edits, "seconds": time.perf_counter() - t_start, "n": cfg.n,
            "latent_rows": [asdict(r) for r in latent], "latent_noise_floor": latent_floor,
            "sections": [{**asdict(s), "tables": []} for s in sections]}


def method_section(ref: str, cfg: DemoConfig) -> DemoSection | None:
    """A method's demo section from its registry reference "module:attr"."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)(cfg)


def _progress(enabled: bool) -> Any:
    return Progress(TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), disable=not enabled, transient=False, console=stderr_console())


def _plot(rows: list[Row], floor: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=110)
    for name in dict.fromkeys(r.method for r in rows if r.family != "reference"):
        pts = sorted((r.nfe, r.fd) for r in rows if r.method == name)
        style = "--." if next(r.family for r in rows if r.method == name) == "solver" else "-o"
        ax.plot(*zip(*pts, strict=True), style, label=name, lw=2 if style == "-o" else 1)
    teacher = [r.fd for r in rows if r.family == "reference"]
    if teacher:
        ax.axhline(teacher[0], color="k", ls=":", label="teacher, 35-NFE Heun")
    ax.axhline(floor, color="gray", ls="-.", label="real-data noise floor")
    ax.set(xlabel="network evaluations (NFE)", ylabel="FD-digits (lower is better)", yscale="log",
           title="Quality against cost, same model, same noise")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _edits(cfg: DemoConfig) -> list[dict[str, Any]]:
    """One example per zero-shot editing operator with the consistency student (CM Algorithm 4)."""
    if "digits-cd" not in zoo.names():
        return []
    cm = zoo.load("digits-cd", device=cfg.device)
    test = data.get(DATASET, "test")
    y = test.x[:8].to(cfg.device)
    g = torch.Generator(cfg.device).manual_seed(cfg.seed)
    mask = torch.zeros_like(y[:1])
    mask[..., 4:, :] = 1  # lower half unknown
    low = torch.nn.functional.avg_pool2d(y, 2)
    noisy = y + 0.5 * torch.randn(y.shape, generator=g, device=y.device)
    stroke_in = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(y, 4), scale_factor=4)
    z0, z1 = (torch.randn((1, *cm.shape), generator=g, device=y.device) for _ in range(2))
    examples = {
        "inpaint": ("input with the lower half masked", y * (1 - mask) - mask,
                    lambda: ops.inpaint(cm, y, mask, generator=g)),
        "superres": ("4x4 input, upsampled by nearest neighbour", torch.nn.functional.interpolate(low, scale_factor=2),
                     lambda: ops.superres(cm, low, 2, generator=g)),
        "denoise": ("input with Gaussian noise, sigma = 0.5", noisy, lambda: ops.denoise(cm, noisy, 0.5)),
        "stroke": ("coarse 2x2-block strokes", stroke_in, lambda: ops.stroke(cm, stroke_in, [5.0, 1.0], generator=g)),
        "interpolate": ("slerp between two noises", None,
                        lambda: ops.interpolate(cm, z0, z1, torch.linspace(0, 1, 8).tolist()).reshape(8, *cm.shape)),
    }
    out = []
    for op, (caption, before, run_op) in examples.items():
        with torch.no_grad():
            after = run_op().clamp(-1, 1)
        imgs = after if before is None else torch.cat([before.clamp(-1, 1), after])
        path = f"grids/edit-{op}.png"
        save_grid(imgs.cpu(), Path(cfg.out) / path, nrow=8, scale=4)
        out.append({"op": op, "image": path,
                    "caption": caption + ("" if before is None else " (top) and the result (bottom)")})
    return out

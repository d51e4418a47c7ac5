"""The LCM benchmark's measurements: the guided teacher at 25 NFE against the latent consistency students at 1-8
steps, over guidance scales, on the same held-out noise and balanced labels (FD and accuracy of decoded samples on
the data set's classifier), and the demo's LCM section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import zoo
from ..io import save_grid
from ..metrics import confidence, noise_floor
from ..report.rows import DemoSection, Row
from ..zoo.generate import draw
from .latent import balanced_labels, score

TEACHER_PLAN, TEACHER_NFE = "dpm_solver_pp_2m", 25  # the anchor: the CFG teacher at 25 NFE (converged here)
STUDENT = "mnist-lcm"
LORA = "mnist-lcm-lora"


def classes(model: Any) -> int:
    return int((getattr(model, "config", None) or {}).get("num_classes") or 10)


def teacher_row(teacher: Any, dataset: str, w: float, n: int, seed: int, nfe: int = TEACHER_NFE,
                plan: str = TEACHER_PLAN) -> dict[str, Any]:
    """The CFG teacher at guidance w (nfe network-evaluation steps, each a conditional + unconditional call)."""
    y = balanced_labels(n, classes(teacher))
    d = draw(teacher, n, nfe=nfe, plan=plan, seed=seed, labels=y, guidance=w)
    return {"model": "teacher", "sampler": f"{plan} {nfe}", "steps": nfe, "guidance": w, "seconds": d.seconds,
            **score(d.x, y, dataset)}


def student_row(student: Any, name: str, dataset: str, steps: int, w: float, n: int, seed: int,
                sigmas: list[float] | None = None) -> dict[str, Any]:
    """A consistency student (w as input, or LoRA at its own w) at `steps` steps (CM Alg. 1 / LCM's multistep
    sampler; `sigmas`: its times, else the recorded / geometric ones)."""
    y = balanced_labels(n, classes(student))
    d = draw(student, n, nfe=None if sigmas else steps, plan=sigmas, seed=seed, labels=y, guidance=w)
    return {"model": name, "sampler": "lcm" if sigmas is None else "lcm (given times)", "steps": steps,
            "guidance": w, "seconds": d.seconds, "sigmas": d.sampler.get("sigmas"), **score(d.x, y, dataset)}


def ratio(rows: list[dict[str, Any]], model: str, steps: int, w: float, anchor: dict[float, float]) -> float:
    """FD of `model` at (steps, w) over the teacher's FD at the same w."""
    fd = next(r["fd"] for r in rows if r["model"] == model and r["steps"] == steps and r["guidance"] == w)
    return fd / anchor[w]


def demo_section(cfg: Any) -> DemoSection | None:
    """mnist-lcm at 1, 2, 4 and 8 steps at the teacher's recorded guidance (decoded, same noise and labels as the
    latent teacher's rows)."""
    if STUDENT not in zoo.names():
        return None
    student = zoo.load(STUDENT, device=cfg.device)
    dataset = zoo.lookup.dataset_of(student) or "mnist5k"
    w = float(zoo.manifest(STUDENT).get("guidance", 2.0))
    y = balanced_labels(cfg.n, classes(student))
    floor = noise_floor(dataset, cfg.n)
    rows, images = [], []
    for k in (1, 2, 4, 8):
        d = draw(student, cfg.n, nfe=k, seed=cfg.seed, labels=y, guidance=w, device=cfg.device)
        path = f"grids/{STUDENT}-{k}step.png"
        save_grid(d.x[:80], Path(cfg.out) / path, nrow=10, scale=2)
        s = score(d.x, y, dataset)
        rows.append(Row(STUDENT, "consistency", k, s["fd"], s["fd"] / floor, confidence(d.x, dataset)["confidence"],
                        cfg.n / max(d.seconds, 1e-9), path, s["accuracy"]))
        images.append((path, f"{STUDENT}, {k} step(s), guidance {w:g}: FD {s['fd']:.3g}, accuracy "
                             f"{s['accuracy']:.2f}"))
    text = ("Latent consistency distillation (Luo et al. 2023): one student for every guidance scale, distilled "
            f"from mnist-ldm's CFG-augmented PF-ODE; here at guidance {w:g}, labels 0-9 in turn, decoded by mnist-ae. "
            "Compare with the latent teacher's rows above (same noise, same labels).")
    return DemoSection("Latent consistency model: mnist-lcm", text, rows, dataset, floor, images)

"""The LCM benchmark's measurements: the guided teacher at 25 NFE against the latent consistency students at 1-8
steps, over guidance scales, on the same held-out noise and balanced labels (FD and accuracy of decoded samples on
the data set's classifier), and the demo's LCM section."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import zoo
from ..data.sets import ImageData
from ..distill import lcm_lora
from ..guidance import CFG
from ..io import load_model, save_grid
from ..latent.denoiser import LatentDenoiser
from ..metrics import confidence, noise_floor
from ..metrics.frechet import fd_between, features, stats_of
from ..plans import get as plans_get
from ..report.rows import DemoSection, Row
from ..seed import noise
from ..solvers.engine import sample
from ..train.config import TrainConfig
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


def thicken(x: Tensor) -> Tensor:
    """The sub-style of the LoRA study: strokes dilated by one pixel (a 3x3 max filter on images in [-1, 1])."""
    return F.max_pool2d(x, 3, stride=1, padding=1)


def ink(x: Tensor) -> float:
    """Stroke mass: the mean of (x + 1) / 2 (what thickening raises)."""
    return float(((x.clamp(-1, 1) + 1) / 2).mean())


def style_study(teacher: Any, adapter: str | Path, dataset: str, rank: int, steps: int, cache: Path, n: int,
                seed: int, w: float, lcm_steps: int = 4, device: str = "cpu") -> dict[str, Any]:
    """LCM-LoRA as an acceleration vector: a style LoRA fine-tuned on thickened digits (cached at `cache`) merged
    into the teacher gives a second teacher; the LCM-LoRA distilled on the first is applied to it without
    distilling again. FD against thickened held-out digits, and how much of the thickening survives (ink)."""
    from ..data import get as get_data

    train, test = get_data(dataset, "train"), get_data(dataset, "test")
    if not cache.is_file():
        tc = TrainConfig(steps=steps, batch=64, lr=1e-3, warmup=50, ema_decay=0.99, label_dropout=0.2,
                         ckpt_every=100, progress=False)
        t0 = time.perf_counter()
        lcm_lora.finetune_style(teacher, ImageData(train.name, thicken(train.x), train.y, train.num_classes), rank,
                                "attn+conv", tc, "unused", cache, device=device)
        fit_s = time.perf_counter() - t0
    else:
        fit_s = None
    style = _style_model(cache, teacher)
    tuned = lcm_lora.with_adapter_merged(teacher, style)
    ref = stats_of(features(thicken(test.x), dataset))
    y = balanced_labels(n, classes(teacher))
    out: dict[str, Any] = {"rank": rank, "steps": steps, "fit_s": fit_s, "guidance": w, "lcm_steps": lcm_steps}
    runs = {"teacher": (teacher, None), "tuned teacher": (tuned, None),
            "LCM-LoRA on teacher": (lcm_lora.apply(teacher, adapter), lcm_steps),
            "LCM-LoRA on tuned teacher": (lcm_lora.apply(tuned, adapter), lcm_steps)}
    for name, (model, k) in runs.items():
        if k is None:
            x = draw(model, n, nfe=TEACHER_NFE, plan=TEACHER_PLAN, seed=seed, labels=y, guidance=w).x
        else:
            x = draw(model, n, nfe=k, seed=seed, labels=y, guidance=w).x
        out[name] = {"fd_thick": fd_between(stats_of(features(x, dataset)), ref), "ink": ink(x),
                     "accuracy": score(x, y, dataset)["accuracy"]}
    out["ink_real"], out["ink_real_thick"] = ink(test.x), ink(thicken(test.x))
    d_teacher = out["tuned teacher"]["ink"] - out["teacher"]["ink"]
    d_lcm = out["LCM-LoRA on tuned teacher"]["ink"] - out["LCM-LoRA on teacher"]["ink"]
    out["style_kept"] = d_lcm / d_teacher if d_teacher else float("nan")
    out["transfer_ratio"] = out["LCM-LoRA on tuned teacher"]["fd_thick"] / out["tuned teacher"]["fd_thick"]
    return out


def _style_model(path: Path, teacher: Any) -> Any:
    """The style LoRA checkpoint as a latent denoiser (its config names no autoencoder file: borrow the
    teacher's)."""
    return LatentDenoiser(load_model(path), teacher.autoencoder)


@torch.no_grad()
def hybrid_row(student: Any, teacher: Any, dataset: str, sigma_mid: float, teacher_nfe: int, w: float, n: int,
               seed: int, batch: int = 250) -> dict[str, Any]:
    """A hybrid sampler: one LCM step from sigma_max, re-noised to sigma_mid, then the teacher's DPM-Solver++(2M)
    with CFG over teacher_nfe steps to 0. Network evaluations: 1 + 2 teacher_nfe (CFG's two branches)."""
    y = balanced_labels(n, classes(student))
    shape = tuple(student.shape)
    x_T = noise(n, seed, shape, float(student.sigma_max))
    z = noise(n, seed + 7_919, shape, 1.0)
    plan = plans_get(TEACHER_PLAN, nfe=teacher_nfe, sigma_max=sigma_mid, sigma_min=float(teacher.sigma_min))
    guided = CFG(teacher, w)
    t0 = time.perf_counter()
    outs = []
    for i in range(0, n, batch):
        sl = slice(i, i + batch)
        x0 = student(x_T[sl], float(student.sigma_max), {"y": y[sl], "w": torch.full((len(y[sl]),), w)})
        outs.append(teacher.decode(sample(guided, x0 + sigma_mid * z[sl], plan, cond=y[sl])).clamp(-1, 1))
    x = torch.cat(outs)
    return {"model": "hybrid", "sampler": f"1 LCM step -> sigma {sigma_mid:g} -> {TEACHER_PLAN} {teacher_nfe}",
            "steps": 1 + 2 * teacher_nfe, "guidance": w, "seconds": time.perf_counter() - t0,
            **score(x, y, dataset)}

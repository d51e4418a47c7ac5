"""`fewstep bench boundary`: BoundaryDiffusion on digits-edm (held-out digits): SVM accuracy in x_t and in h at the
mixing step, edit success, class kept and closeness to the original, the automatic mixing step against the oracle,
fit and edit times, and the learned-direction baseline (Asyrp-style) at comparable success."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import data as fsdata
from ..edit import boundary as B
from ..edit.boundary.attributes import measure
from ..metrics import class_probs, fd, features

DATASET = "digits"
ATTRIBUTES = ("thickness", "slant", "3-8")


@dataclass
class Task:
    """One attribute: labelled fitting images (<= 200, train split), held-out validation and test images, the
    measurer and its median on the fitting images (the success threshold), the class pair if any."""

    name: str
    fit_x: Tensor
    fit_y: Tensor
    val_x: Tensor
    val_cls: Tensor
    test_x: Tensor
    test_cls: Tensor
    median: float
    pair: tuple[int, int] | None = None


def task(name: str, n_fit: int = 200, seed: int = 0) -> Task:
    """Fitting images from the train split (<= n_fit, labelled by the attribute's median or the class); the test
    split halved into validation (the oracle step's choice) and test (the reported numbers)."""
    tr, te = fsdata.get(DATASET, split="train"), fsdata.get(DATASET, split="test")
    g = torch.Generator().manual_seed(seed)
    f = measure(name)
    pair = None
    if "-" in name:
        pair = tuple(int(c) for c in name.split("-"))
        keep_tr, keep_te = torch.isin(tr.y, torch.tensor(pair)), torch.isin(te.y, torch.tensor(pair))
        tr, te = tr.subset(torch.nonzero(keep_tr)[:, 0]), te.subset(torch.nonzero(keep_te)[:, 0])
    idx = torch.randperm(len(tr), generator=g)[:n_fit]
    fx, fcls = tr.x[idx], tr.y[idx]
    if pair is not None:
        fy, med = (fcls == pair[1]).long(), 0.0
    else:
        a = f(fx)
        med = float(a.median())
        fy = (a > med).long()
    half = len(te) // 2
    return Task(name, fx, fy, te.x[:half], te.y[:half], te.x[half:], te.y[half:], med, pair)


def sides(t: Task, x: Tensor, cls: Tensor) -> Tensor:
    """True where an image is on the attribute's positive side (above the median, or of the pair's second class)."""
    if t.pair is not None:
        return cls == t.pair[1]
    return measure(t.name)(x) > t.median


@torch.no_grad()
def score(t: Task, x: Tensor, cls: Tensor, out: Tensor, pool: dict[int, Tensor], seed: int = 0) -> dict[str, float]:
    """Edit success (the attribute crosses to the other side), class kept (non-class attributes), and closeness:
    the edit is nearer (classifier features) to its original than to a random image of the original's class (for a
    class edit: it keeps more of its own digit than of any other digit of its class)."""
    side = sides(t, x, cls)
    if t.pair is not None:
        pred = class_probs(out, DATASET).argmax(1)
        target = torch.where(side, t.pair[0], t.pair[1])
        success = (pred == target).double()
        kept = None
    else:
        success = ((measure(t.name)(out) > t.median) != side).double()
        kept = (class_probs(out, DATASET).argmax(1) == cls).double()
    g = torch.Generator().manual_seed(seed)  # the random image shares the original's class (also for class edits)
    rand = torch.stack([pool[int(c)][torch.randint(len(pool[int(c)]), (1,), generator=g)[0]] for c in cls])
    fo, fx, fr = features(out, DATASET), features(x, DATASET), features(rand, DATASET)
    closer = ((fo - fx).norm(dim=1) < (fo - fr).norm(dim=1)).double()
    res = {"success": success.mean().item(), "closer": closer.mean().item()}
    res["class_kept"] = None if kept is None else kept.mean().item()
    good = success * closer * (kept if kept is not None else 1.0)
    res["preserved"] = (closer * (kept if kept is not None else 1.0)).mean().item()
    res["success_x_preserved"] = res["success"] * res["preserved"]
    res["all_three"] = good.mean().item()
    return res


def class_pool(split: str = "train") -> dict[int, Tensor]:
    """Images of each class (the random same-class comparison of `score`)."""
    d = fsdata.get(DATASET, split=split)
    return {c: d.x[d.y == c] for c in range(10)}


def edit_task(den: Any, t: Task, b: B.Boundary, x: Tensor, cls: Tensor, distance: float, space: str | None = None,
              **kw: Any) -> Tensor:
    """Move every image across: to -distance if it is on the positive side, +distance otherwise."""
    d = torch.where(sides(t, x, cls), -distance, distance).to(torch.float64)
    return B.apply(den, x, b, d, space=space, **kw)


LADDER = B.CANDIDATES[:10]  # 0.25 ... 5.66: the mixing-step grid of the oracle search (sqrt(2) apart)
DISTANCES = (2.5, 3.5, 5.0)  # target signed distances, in spreads of the fitting points' distances


def _pick(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return max(rows, key=lambda r: (r["success_x_preserved"], -r["sigma"]))


def sweep(den: Any, t: Task, pool: dict[int, Tensor], ladder: tuple[float, ...] = LADDER,
          distances: tuple[float, ...] = DISTANCES, plan: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every (mixing sigma, distance) on the validation images, x-space edit: SVM accuracies in both spaces
    (validation), success, class kept, closeness, success x preserved."""
    rows = []
    vy = sides(t, t.val_x, t.val_cls).long()
    for s in ladder:
        b = B.fit(den, t.fit_x, t.fit_y, sigma=s, plan=plan, heldout=(t.val_x, vy), attribute=t.name)
        for d in distances:
            out = edit_task(den, t, b, t.val_x, t.val_cls, d, space="x")
            rows.append({"sigma": s, "distance": d, "svm_x": b.x.heldout_accuracy,
                         "svm_h": b.h.heldout_accuracy if b.h else None, **score(t, t.val_x, t.val_cls, out, pool)})
    return rows


def grid_steps(a: float, b: float, ladder: tuple[float, ...] = LADDER) -> int:
    """How many ladder steps apart two mixing sigmas are."""
    return abs(min(range(len(ladder)), key=lambda i: abs(ladder[i] - a)) -
               min(range(len(ladder)), key=lambda i: abs(ladder[i] - b)))


def differentiable(t: Task) -> Any:
    """The attribute as a differentiable function of images (the baseline's training signal): the measurer itself
    for thickness and slant, log p(b) - log p(a) of the classifier's logits for a class pair (a, b)."""
    if t.pair is None:
        return measure(t.name)
    from ..metrics import load_classifier

    net = load_classifier(DATASET)
    a, b = t.pair

    def f(x: Tensor) -> Tensor:
        lp = net(x.float().clamp(-1, 1)).log_softmax(1)
        return (lp[:, b] - lp[:, a]).double()
    return f


def generation_mode(den: Any, t: Task, b: B.Boundary, distance: float, n: int, pool: dict[int, Tensor],
                    seed: int = 0, nfe: int = 5) -> dict[str, float]:
    """Sample to the mixing step (per-sample seeds), then edit each latent across and continue; scored as `score`
    with the unedited continuation as the original and its predicted class as the class."""
    from ..seed import randn
    from ..solvers.engine import sample

    x_T = randn(list(range(seed, seed + n)), den.shape) * float(den.sigma_max)
    x_t = sample(den, x_T, B.sampling_plan(den, b.sigma, nfe, b.plan["name"]))
    plain = B.regenerate(den, x_t, B.edit_plan(den, b.sigma, b.plan["nfe"], b.plan["name"], b.plan["sigma_min"]))
    cls = class_probs(plain, DATASET).argmax(1)
    if t.pair is not None:  # only samples the classifier reads as one of the pair
        keep = torch.isin(cls, torch.tensor(t.pair))
        x_t, plain, cls = x_t[keep], plain[keep], cls[keep]
    d = torch.where(sides(t, plain, cls), -distance, distance).to(torch.float64)
    out = B.edit_latent(den, x_t, b, d, space="x")
    return {"n": len(out), **score(t, plain, cls, out, pool, seed)}


def picture(t: Task, x: Tensor, cls: Tensor, out: Tensor, k: int = 8) -> Tensor:
    """Rows: k originals below the median (or of the pair's first class), their edits; k above, their edits."""
    side = sides(t, x, cls)
    lo, hi = torch.nonzero(~side)[:k, 0], torch.nonzero(side)[:k, 0]
    return torch.cat([x[lo], out[lo], x[hi], out[hi]])


def run_attribute(den: Any, cm: Any, name: str, pool: dict[int, Tensor], ladder: tuple[float, ...] = LADDER,
                  distances: tuple[float, ...] = DISTANCES, baseline_steps: int = 150, seed: int = 0,
                  log: Any = print) -> tuple[dict[str, Any], Tensor]:
    """One attribute end to end: the automatic and the oracle mixing step (validation), then on the test images:
    SVM accuracies, edits in x / h / both, stochastic regeneration, the consistency student, generation mode,
    timings, and the learned-direction baseline. Returns (result, before/after picture)."""
    import time

    from ..edit.boundary import baseline

    t = task(name, seed=seed)
    res: dict[str, Any] = {"attribute": name, "median": t.median, "n_fit": len(t.fit_x), "n_val": len(t.val_x),
                           "n_test": len(t.test_x)}
    s_auto, ratios = B.mixing_sigma(den, t.fit_x, ladder)
    res["radius_ratio"] = {f"{k:.3g}": v for k, v in ratios.items()}
    rows = sweep(den, t, pool, ladder, distances)
    res["sweep"] = rows
    best = _pick(rows)
    at_auto = _pick([r for r in rows if r["sigma"] == s_auto])
    res["oracle_sigma"], res["auto_sigma"] = best["sigma"], s_auto
    res["oracle_distance"], res["auto_distance"] = best["distance"], at_auto["distance"]
    res["auto_vs_oracle_steps"] = grid_steps(s_auto, best["sigma"], ladder)
    log(f"{name}: auto sigma {s_auto:.3g}, oracle {best['sigma']:.3g} (distance {best['distance']})")
    ty = sides(t, t.test_x, t.test_cls).long()
    test: dict[str, Any] = {}
    for which, s, d in (("oracle", best["sigma"], best["distance"]), ("auto", s_auto, at_auto["distance"])):
        b = B.fit(den, t.fit_x, t.fit_y, sigma=s, heldout=(t.test_x, ty), attribute=name)
        test[which] = {"sigma": s, "distance": d, "svm_x": b.x.heldout_accuracy, "svm_h": b.h.heldout_accuracy,
                       "seconds_fit": b.info["seconds_fit"]}
        test[which]["x"] = score(t, t.test_x, t.test_cls, edit_task(den, t, b, t.test_x, t.test_cls, d, space="x"),
                                 pool)
        if which == "oracle":
            bo, do = b, d
    b, d = bo, do
    o = test["oracle"]
    o["h"] = score(t, t.test_x, t.test_cls, edit_task(den, t, b, t.test_x, t.test_cls, d, space="h"), pool)
    o["both"] = score(t, t.test_x, t.test_cls, edit_task(den, t, b, t.test_x, t.test_cls, d, space="both"), pool)
    o["h_all_steps"] = score(t, t.test_x, t.test_cls, edit_task(den, t, b, t.test_x, t.test_cls, d, space="h",
                                                                h_steps=b.plan["nfe"]), pool)
    o["x_eta1"] = score(t, t.test_x, t.test_cls, edit_task(den, t, b, t.test_x, t.test_cls, d, space="x", eta=1.0,
                                                           generator=torch.Generator().manual_seed(seed)), pool)
    out = edit_task(den, t, b, t.test_x, t.test_cls, d, space="x")
    pic = picture(t, t.test_x, t.test_cls, out)
    if cm is not None:
        for k, extra in ((1, []), (2, [min(0.5 * b.sigma, 0.2)])):
            o[f"student_{k}step"] = score(t, t.test_x, t.test_cls, edit_task(
                den, t, b, t.test_x, t.test_cls, d, space="x", student=cm, student_sigmas=extra,
                generator=torch.Generator().manual_seed(seed)), pool)
    o["generation"] = generation_mode(den, t, b, d, len(t.test_x), pool, seed=10_000 + seed)
    # timings (one run, on a machine shared with other jobs): fit of <= 200 images; an edit of a batch of 256
    t0, c0 = time.perf_counter(), time.process_time()
    bt = B.fit(den, t.fit_x, t.fit_y, sigma=b.sigma, attribute=name)
    o["seconds_fit_200"], o["cpu_seconds_fit_200"] = time.perf_counter() - t0, time.process_time() - c0
    o["seconds_svm_200"] = bt.info["seconds_svm"]
    x256 = t.test_x.repeat(256 // len(t.test_x) + 1, 1, 1, 1)[:256]
    t0, c0 = time.perf_counter(), time.process_time()
    B.apply(den, x256, b, distance=d)
    o["seconds_edit_256"], o["cpu_seconds_edit_256"] = time.perf_counter() - t0, time.process_time() - c0
    o["nfe_edit"] = 2 * b.plan["nfe"] - 1
    # the learned-direction baseline (Asyrp-style), same mixing step and plan, trained on the fitting images
    if baseline_steps:
        f, info = baseline.train(den, t.fit_x, differentiable(t), t.median, b.sigma, b.plan, steps=baseline_steps,
                                 lr=3e-2, seed=seed)
        direction = torch.where(sides(t, t.test_x, t.test_cls), -1.0, 1.0)
        o["baseline"] = {**info, **score(t, t.test_x, t.test_cls,
                                         baseline.apply(den, f, t.test_x, direction, b.sigma, b.plan), pool)}
        o["speedup_vs_baseline"] = info["seconds"] / max(o["seconds_fit_200"], 1e-9)
    res["test"] = test
    log(f"{name}: test x-edit success {o['x']['success']:.3f} kept {o['x']['class_kept']} closer "
        f"{o['x']['closer']:.3f}" + (f"; baseline {o['baseline']['success']:.3f} in {o['baseline']['seconds']:.1f}s"
                                     if baseline_steps else ""))
    return res, pic


DEMO_SIGMA, DEMO_DISTANCE = 0.25, 2.5  # the demo's mixing step and distance (see bench-results/boundary.json)
DEMO_N = 160  # held-out digits edited per attribute (the demo's time budget)


def demo_section(cfg: Any) -> Any:
    """BoundaryDiffusion in the demo: a thickness and a 3 <-> 8 boundary fitted on 200 labelled train digits with
    the shipped digits-edm (no training), held-out digits edited across at 9 NFE; before/after grids, FD of the
    edits and the scores of `score`."""
    import time
    from pathlib import Path

    from ..io import save_grid
    from ..metrics import noise_floor
    from ..report.page import Table
    from ..report.rows import DemoSection, Row
    from ..zoo import load

    den = load("digits-edm", cfg.device).eval()
    pool = class_pool()
    rows, images, table = [], [], []
    floor_n = 0
    for name in ("thickness", "3-8"):
        t = task(name, n_fit=200, seed=cfg.seed % 1000)
        t0 = time.perf_counter()
        b = B.fit(den, t.fit_x, t.fit_y, sigma=DEMO_SIGMA, attribute=name)
        fit_s = time.perf_counter() - t0
        x, cls = torch.cat([t.val_x, t.test_x])[:DEMO_N], torch.cat([t.val_cls, t.test_cls])[:DEMO_N]
        t0 = time.perf_counter()
        out = edit_task(den, t, b, x, cls, DEMO_DISTANCE, space="x").clamp(-1, 1)
        secs = time.perf_counter() - t0
        s = score(t, x, cls, out, pool)
        grid = f"grids/boundary-{name}.png"
        save_grid(picture(t, x, cls, out), Path(cfg.out) / grid, nrow=8, scale=4)
        lo, hi = (f"class {t.pair[0]}", f"class {t.pair[1]}") if t.pair else ("below the median", "above it")
        images.append((grid, f"{name}: row 1 held-out digits {lo}, row 2 their edits; row 3 digits {hi}, row 4 "
                             f"their edits (sigma {DEMO_SIGMA}, distance {DEMO_DISTANCE})"))
        if t.pair is None:  # FD against all real digits means something for an edit that keeps the class mix
            floor_n = len(x)
            d = fd(out, DATASET)
            fl = noise_floor(DATASET, floor_n)
            rows.append(Row(f"boundary {name}", "edit", 2 * b.plan["nfe"] - 1, d, d / fl,
                            class_probs(out, DATASET).max(1).values.mean().item(), len(x) / max(secs, 1e-9), grid))
        table.append([name, DEMO_SIGMA, DEMO_DISTANCE, len(x), s["success"], s["class_kept"], s["closer"], fit_s])
    fl = noise_floor(DATASET, floor_n or DEMO_N)
    text = ("BoundaryDiffusion (Zhu et al. 2023): invert held-out digits to the mixing step sigma = "
            f"{DEMO_SIGMA} with a 4-NFE DPM-Solver++(2M) inversion, move x_t across a linear SVM boundary "
            "(fitted on 200 labelled train digits in a second) in one step, regenerate with 5 NFE. "
            "No training; the scores are the project's own measurers.")
    return DemoSection("BoundaryDiffusion: learning-free edits of real digits", text, rows, "digits-edits", fl,
                       images, [Table(["attribute", "sigma", "distance", "n", "success", "class kept", "closer",
                                       "fit seconds"], table, "Edits of held-out digits")])

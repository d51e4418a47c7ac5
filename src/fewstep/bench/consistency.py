"""Consistency-model benchmark: FD-digits of the teacher (35-NFE Heun), digits-cd and digits-ict at 1 and 2 steps
(the 2-step intermediate sigma by ternary search on FD over separate seeds, CM Sec. 6), the FD-vs-training-time
curve, and zero-shot editing on held-out digits (inpainting label kept, super-resolution vs bicubic FD).

`train_with_curve` trains a zoo model in segments through the exact-resume loop and scores each segment, so the
curve and the shipped weights come from one run; its manifest records the equivalent one-shot command.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

DATASET = "digits"
SEEDS = tuple(range(100, 108))  # sampling seeds of the table (never used to pick a model); FDs are means
LARGE_N, LARGE_SEEDS = 2500, (200, 201)  # a check at larger n, where FD's small-sample bias is smaller
SEARCH_SEEDS = (12345, 12346, 12347, 12348)  # the 2-step tau search's own seeds (FD of one seed is too noisy)

# The recipes the shipped zoo models were trained with (`fewstep bench consistency --train cd|ict [--extend]`).
# The horizon K only drives the CT/iCT curricula; it is pinned so a run can be extended (CD ignores it).
RECIPES: dict[str, dict] = {
    "cd": {"steps": 3000, "horizon": 1000, "segments": 6, "teacher": "digits-edm", "batch": 64, "lr": 2e-4,
           "warmup": 50,
           "ema_decay": 0.995, "N": 18, "dist": "lpips", "solver": "heun", "label_dropout": 1.0,
           # stage 2: 4x the batch at half the lr and a longer EMA, plus the ODE-pair regression (--reg) on 20000
           # teacher trajectories (its curve moves little after 500 steps). Stage 3: DMD's distribution matching of
           # the one-step map (--mode dmd), with a light regression on the same trajectories. In all about 28 min
           # at 2 threads, the trajectories included
           "then": [{"steps": 500, "segments": 2, "batch": 256, "lr": 1e-4, "warmup": 20, "ema_decay": 0.999,
                     "reg": 1.0},
                    {"mode": "dmd", "steps": 1500, "segments": 3, "lr": 5e-5, "warmup": 20, "reg": 0.05,
                     "fake_lr": 1e-4}]},
    "color-cd": {"steps": 2000, "horizon": 1000, "segments": 4, "teacher": "digits-color-edm",
                 "data": "digits_color", "batch": 64, "lr": 2e-4, "warmup": 50, "ema_decay": 0.995, "N": 18,
                 "dist": "lpips", "solver": "heun",
                 "then": {"steps": 500, "segments": 2, "batch": 256, "lr": 1e-4, "warmup": 20, "ema_decay": 0.999}},
    # iCT: the doubling curriculum over the first half (horizon 12000: N reaches 1281 at step 10500), and the
    # artefact is the mean of the EMA snapshots every 500 steps from step 11500 on (--average-from), 26 in all
    "ict": {"steps": 24000, "horizon": 12000, "segments": 24, "teacher": None, "batch": 64,
            "lr": 1e-3, "warmup": 100, "ema_decay": 0.9995, "dropout": 0.1, "s0": 10, "s1": 1280, "label_dropout": 1.0,
            "average_from": 11500, "average_every": 500},
}


def cm_samples(cm: Any, n: int, seed: int, sigmas: list[float], batch: int = 500) -> Tensor:
    """CM Alg. 1 samples (clamped to [-1, 1]) with per-sample seeded noise for every step (batch-independent)."""
    from ..zoo.generate import draw

    return draw(cm, n, plan=sigmas, seed=seed, batch=batch).x


def cm_fd(cm: Any, sigmas: list[float], n: int, seed: int, dataset: str = DATASET) -> float:
    from ..metrics import fd

    return fd(cm_samples(cm, n, seed, sigmas), dataset)


def best_two_step(cm: Any, n: int, seeds: Sequence[int] = SEARCH_SEEDS, iters: int = 6) -> tuple[float, float]:
    """Ternary search of tau_1 over log sigma in [0.05, 5] (CM `ternary_search.py`) on the mean FD of `seeds`,
    which are disjoint from the table's."""
    from ..distill.sampling import ternary_search

    T = float(cm.sigma_max)
    return ternary_search(lambda s: sum(cm_fd(cm, [T, s], n, k) for k in seeds) / len(seeds), 0.05, 5.0, iters)


def teacher_samples(teacher: Any, n: int, seed: int, nfe: int = 35, name: str = "heun") -> Tensor:
    from ..solvers import get
    from ..zoo.generate import draw

    plan = get(name, nfe=nfe, sigma_min=teacher.sigma_min, sigma_max=teacher.sigma_max, grid="karras")
    return draw(teacher, n, plan=plan, seed=seed, batch=500, clamp=False).x


def teacher_fd(teacher: Any, n: int, seed: int, nfe: int = 35, name: str = "heun") -> float:
    from ..metrics import fd

    return fd(teacher_samples(teacher, n, seed, nfe, name), DATASET)


def both_fds(x: Tensor) -> tuple[float, float]:
    """(FD-digits, FD on raw pixels) of one sample: the second has no learned features in it."""
    from ..metrics import fd
    from ..metrics.frechet import fd_pixels

    return fd(x, DATASET), fd_pixels(x, DATASET)


def seed_fds(sample: Callable[[int], Tensor], seeds: Sequence[int] = SEEDS) -> dict[str, Any]:
    """FD-digits and FD-pixels of `sample(seed)` for each seed, with their means: at n=800 against the 898-image
    reference one seed's FD-digits varies by about +-25% (the teacher's spans 1.19-2.82 over eight seeds)."""
    pairs = [both_fds(sample(s)) for s in seeds]
    fds, pixels = [a for a, _ in pairs], [b for _, b in pairs]
    return {"fd": sum(fds) / len(fds), "fd_seeds": fds, "pixels": sum(pixels) / len(pixels), "pixels_seeds": pixels}


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it lies below it, so a recorded command runs from any clone."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def train_with_curve(mode: str, out: str | Path, steps: int, segments: int = 6, teacher: str | None = "digits-edm",
                     n_eval: int = 500, threads: int | None = None, ckpt: str | Path | None = None,
                     horizon: int | None = None, extend: bool = False, data: str = DATASET,
                     **opts: Any) -> dict[str, Any]:
    """Train `mode` (cd/ict) for `steps` steps in `segments` resumed pieces, scoring 1- and 2-step FD after each;
    writes out (.safetensors) and out with .json (manifest: command, seed, commit, metrics, wall time, curve).
    `horizon`: K of the N(k) curriculum (default steps). `extend`: continue a finished shorter run of the same
    recipe from its checkpoint, keeping its curve (the loop's resume is exact). A `cooldown` option is one last
    segment, branched from the stable run's checkpoint at steps - cooldown (the same as one uninterrupted run);
    that checkpoint is kept beside the other (.stable.pt), so `extend` continues the stable run, not the decay."""
    from .. import data as fsdata
    from ..distill.config import make_config
    from ..distill.run import distill
    from ..io import atomic_write, atomic_write_text, git_commit, load_model
    from ..train.loop import TrainConfig

    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    cc_keys = {"N", "mu", "s0", "s1", "dist", "weight", "solver", "skip", "reg", "reg_paths", "fake_lr"}
    horizon = horizon or steps
    cc = make_config(mode, horizon=horizon, **{k: v for k, v in opts.items() if k in cc_keys})
    tk = {k: v for k, v in opts.items()
          if k in {"batch", "lr", "warmup", "ema_decay", "seed", "ckpt_every", "label_dropout", "average_from",
                   "average_every"}}
    cool = int(opts.pop("cooldown", 0) or 0)
    dropout, init = opts.get("dropout"), opts.get("init")
    ds = fsdata.get(data, split="train")
    args = {"teacher": teacher, "mode": mode, "data": data, **{k: v for k, v in opts.items() if v is not None},
            "horizon": horizon, "out": _shown(out)}

    def command(k: int) -> str:  # the one-shot command equal to the first k steps (exact resume)
        return shlex.join(["fewstep", "distill", "consistency"] + [
            a for key, v in {**args, "steps": k, "cooldown": cool if k == steps and cool else None}.items()
            if v is not None
            for a in ("--" + key.replace("_", "-"), str(v))])

    ckpt = Path(ckpt) if ckpt is not None else out.with_suffix(".ckpt.pt")
    stable = ckpt.with_suffix(".stable.pt")
    curve: list[dict[str, Any]] = []
    manifest: dict[str, Any] = {}
    if extend:  # an extension to the steps already trained writes nothing and returns the run's manifest
        manifest = json.loads(out.with_suffix(".json").read_text())
        curve = manifest["curve"]
        if curve and curve[-1].get("cooldown"):  # branch again from the end of the stable phase
            if not stable.is_file():
                raise FileNotFoundError(f"{out} ends in a cool-down and its stable checkpoint {stable} is gone; "
                                        "retrain without --extend")
            curve.pop()
            atomic_write(ckpt, lambda tmp: shutil.copyfile(stable, tmp))
    ends = sorted({max(1, round(steps * (i + 1) / segments)) for i in range(segments)} | {steps - cool} - {0})
    ends = [k for k in ends if k <= steps - cool or k == steps]
    for k in ends:
        if curve and k <= curve[-1]["step"]:
            continue
        tc = TrainConfig(steps=k, cooldown=cool if k == steps else 0, progress=False, **tk)
        res = distill(cc, tc, ds, teacher=teacher, out=out, ckpt=ckpt, resume=bool(curve), command=command(k),
                      dropout=dropout, init=init)
        cm = load_model(out)
        T = float(cm.sigma_max)
        curve.append({"step": k, "wall_s": round(res.wall_s, 1), "fd_1step": cm_fd(cm, [T], n_eval, 1, ds.name),
                      "fd_2step": cm_fd(cm, [T, 0.5], n_eval, 1, ds.name), "loss": res.losses[-1]})
        if cool and k == steps:
            curve[-1]["cooldown"] = cool
        elif cool and k == steps - cool:
            atomic_write(stable, lambda tmp: shutil.copyfile(ckpt, tmp))
        print(json.dumps(curve[-1]), flush=True)
        manifest = {"name": out.stem, "command": command(k), "seed": tk.get("seed", 0), "commit": git_commit(),
                    "wall_s": curve[-1]["wall_s"], "threads": torch.get_num_threads(),
                    "metrics": {"fd_1step_n500": curve[-1]["fd_1step"],
                                "fd_2step_sigma0.5_n500": curve[-1]["fd_2step"]},
                    "curve": curve, "note": "trained in resumed segments (exact resume) to record the curve; the "
                                            "manifest is rewritten after every segment"}
        atomic_write_text(out.with_suffix(".json"), json.dumps(manifest, indent=1))
    return manifest


def train_recipe(name: str, recipe: dict[str, Any], out_dir: str | Path, threads: int | None = None,
                 extend: bool = False, scratch: str | Path = "/tmp") -> dict[str, Any]:
    """Train the zoo model `name` by its RECIPES entry. A recipe with `then` (one stage or a list) trains stage 1
    into `scratch` and each later stage from the previous one's weights (`init`), with the stage-1 options it does
    not override (its `mode` included); the last stage writes `out_dir`. The manifest joins the curves (each stage
    on the clock of those before it) and lists every stage's command under `stages`."""
    from ..io import atomic_write_text

    recipe = dict(recipe)
    then, mode = recipe.pop("then", None), name.removeprefix("digits-").removeprefix("color-")
    out = Path(out_dir) / f"{name}.safetensors"
    ckpt = Path(scratch) / f"fewstep-{name}.ckpt.pt"
    if then is None:
        return train_with_curve(mode, out, ckpt=ckpt, threads=threads, extend=extend, **recipe)
    later = [then] if isinstance(then, dict) else list(then)
    outs = [Path(scratch) / f"fewstep-{name}-stage{i + 1}.safetensors" for i in range(len(later))] + [out]
    ckpts = [o.with_suffix(".ckpt.pt") for o in outs[:-1]] + [ckpt]
    staged = {k: v for k, v in recipe.items() if k not in {"steps", "segments", "horizon", "cooldown"}}
    runs = [train_with_curve(mode, outs[0], ckpt=ckpts[0], threads=threads, extend=extend, **recipe)]
    for i, stage in enumerate(later, 1):
        opts = {**staged, **stage, "init": str(outs[i - 1])}
        _share_bank(ckpts[i - 1], ckpts[i])
        runs.append(train_with_curve(opts.pop("mode", mode), outs[i], ckpt=ckpts[i], threads=threads, **opts))
    curve, k0, w0 = [], 0, 0.0
    for i, run in enumerate(runs, 1):
        curve += [{**p, "step": k0 + p["step"], "wall_s": round(w0 + p["wall_s"], 1), "stage": i} for p in run["curve"]]
        k0, w0 = curve[-1]["step"], curve[-1]["wall_s"]
    manifest = {**runs[-1], "wall_s": curve[-1]["wall_s"], "curve": curve,
                "stages": [r["command"] for r in runs], "stage_wall_s": [r["wall_s"] for r in runs],
                "stage_threads": [r["threads"] for r in runs],
                "note": f"{len(runs)} stages, each trained in resumed segments (exact resume) to record the curve; "
                        "each later stage starts from the previous stage's EMA weights (--init)"}
    atomic_write_text(out.with_suffix(".json"), json.dumps(manifest, indent=1))
    return manifest


def _share_bank(previous: Path, ckpt: Path) -> None:
    """Hand the previous stage's cached teacher trajectories (--reg) to the next stage's checkpoint, in place of
    any older cache there, so they are not generated twice; fewstep.distill.run.ode_bank checks the cache's key and
    rebuilds one that does not fit this stage."""
    from ..io import atomic_write

    src = previous.with_suffix(".paths.pt")
    if src.is_file():
        atomic_write(ckpt.with_suffix(".paths.pt"), lambda tmp: shutil.copyfile(src, tmp))


def edit_schedules(T: float) -> tuple[list[float], ...]:
    """1, 2 and 4 steps of Alg. 4, 8 steps on a roughly geometric ladder down to 0.1, and (last) 21 calls that
    resample 4 times at each of 5 levels from 2 down to 0.3."""
    return ([T], [T, 0.5], [T, 2.0, 0.5, 0.1], [T, 20.0, 5.0, 2.0, 1.0, 0.5, 0.2, 0.1], [T] + [float(v) for v in
            torch.logspace(math.log10(2.0), math.log10(0.3), 5) for _ in range(4)])


def _gen(*key: int) -> torch.Generator:
    """A generator of its own for each (task, schedule, repeat), so adding a schedule changes no other number."""
    return torch.Generator().manual_seed(int("".join(f"{k:03d}" for k in key)))


def editing(cm: Any, n: int | None = None, repeats: int = 3) -> dict[str, Any]:
    """Inpainting (lower / right half masked) label kept under the classifier, the mean over `repeats` noise draws;
    4x4 -> 8x8 super-resolution FD vs bicubic; on the first n (default all) held-out (test split) digits, with each
    of `edit_schedules`, and for inpainting the best of 4 21-call chains by self-consistency
    (fewstep.edit.select_consistent, 100 calls)."""
    from .. import data as fsdata
    from ..edit import inpaint, superres
    from ..metrics import confidence, fd

    test = fsdata.get(DATASET, split="test")
    x, y = test.x[:n], test.y[:n]
    schedules = edit_schedules(float(cm.sigma_max))
    out: dict[str, Any] = {"n": len(x), "repeats": repeats,
                           "real_accuracy": confidence(x, DATASET, labels=y)["accuracy"]}

    def kept(mask: Tensor, steps: list[float], key: tuple[int, ...], **kw: Any) -> float:
        return sum(confidence(inpaint(cm, x, mask, steps, generator=_gen(*key, r), **kw), DATASET, labels=y)[
            "accuracy"] for r in range(repeats)) / repeats

    for m, (name, sl) in enumerate((("lower", (slice(None), slice(None), slice(4, 8), slice(None))),
                                    ("right", (slice(None), slice(None), slice(None), slice(4, 8))))):
        mask = torch.zeros(1, *x.shape[1:])
        mask[sl] = 1
        for i, steps in enumerate(schedules):
            out[f"inpaint_{name}_{len(steps)}step_label_kept"] = kept(mask, steps, (1, m, i))
        # best of 4 chains of the 21-call schedule by self-consistency (4 x 21 + 4 x 4 = 100 calls)
        out[f"inpaint_{name}_21step_x4_label_kept"] = kept(mask, schedules[-1], (2, m, 0), candidates=4)
    low = F.avg_pool2d(x, 2)
    bicubic = F.interpolate(low, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)
    out["superres_fd_bicubic"] = fd(bicubic, DATASET)
    out["superres_fd_nearest"] = fd(F.interpolate(low, scale_factor=2, mode="nearest"), DATASET)
    for i, steps in enumerate(schedules):
        out[f"superres_fd_cm_{len(steps)}step"] = fd(superres(cm, low, 2, steps, generator=_gen(3, 0, i)), DATASET)
    out["superres_fd_real"] = fd(x, DATASET)
    return out


def colorization(cm: Any, n: int | None = None) -> dict[str, Any]:
    """Colorize the luma of held-out coloured digits with a colour CM: FD on the digits_color classifier against
    the real colour reference (gray copied to 3 channels as the baseline), the label kept, and the largest change
    of the luma, which Alg. 4 must keep exactly; the schedules of `edit_schedules`."""
    from .. import data as fsdata
    from ..edit import colorize
    from ..edit.transforms import to_gray
    from ..metrics import confidence, fd

    name = "digits_color"
    test = fsdata.get(name, split="test")
    x, y = test.x[:n], test.y[:n]
    gray = to_gray(x)
    T = float(cm.sigma_max)
    gray3 = gray.expand(-1, 3, -1, -1)
    out: dict[str, Any] = {"n": len(x), "fd_real": fd(x, name), "fd_gray": fd(gray3, name),
                           "label_kept_real": confidence(x, name, labels=y)["accuracy"],
                           "label_kept_gray": confidence(gray3, name, labels=y)["accuracy"]}
    for i, steps in enumerate(edit_schedules(T)):
        r = colorize(cm, gray, steps, generator=_gen(4, 0, i))
        k = f"{len(steps)}step"
        out[f"fd_cm_{k}"] = fd(r, name)
        out[f"label_kept_cm_{k}"] = confidence(r, name, labels=y)["accuracy"]
        out[f"luma_max_change_cm_{k}"] = (to_gray(r) - gray).abs().max().item()
    return out


def run(cd: str = "digits-cd", ict: str = "digits-ict", teacher: str = "digits-edm", n: int = 800,
        search_n: int = 400, plots: str | None = "bench-results", color: str | None = "digits-color-cd"
        ) -> dict[str, Any]:
    """The whole benchmark; returns the write_result payload."""
    from ..io import save_grid
    from ..metrics import noise_floor
    from ..zoo import load, manifest

    t0 = time.perf_counter()
    teach = load(teacher)
    t = seed_fds(lambda s: teacher_samples(teach, n, seed=s))
    fd_t, px_t = t["fd"], t["pixels"]

    def row(name: str, nfe: int, r: dict[str, Any], target: str = "-") -> list[Any]:
        return [name, nfe, r["fd"], f"{min(r['fd_seeds']):.3g}-{max(r['fd_seeds']):.3g}", r["fd"] / fd_t, target,
                r["pixels"], r["pixels"] / px_t]

    t_large = seed_fds(lambda s: teacher_samples(teach, LARGE_N, seed=s), LARGE_SEEDS)
    large = [["teacher Heun (EDM grid)", 35, t_large["fd"], 1.0]]
    rows, summary = [row("teacher Heun (EDM grid)", 35, t)], []
    extra: dict[str, Any] = {"seeds": list(SEEDS), "teacher_fd_35": fd_t, "teacher_fd_35_seeds": t["fd_seeds"],
                             "teacher_fd_pixels_35": px_t}
    for nfe in (2, 4):
        rows.append(row("teacher DPM-Solver++(2M)", nfe,
                        seed_fds(lambda s, k=nfe: teacher_samples(teach, n, s, k, "dpm_solver_pp_2m"))))
    curves, averaging = {}, {}
    for label, spec, targets in (("digits-cd", cd, (1.3, 1.1)), ("digits-ict", ict, (2.5, 1.8))):
        try:
            cm = load(spec)
        except (KeyError, FileNotFoundError) as e:
            summary.append(f"{label}: not available ({e})")
            continue
        T = float(cm.sigma_max)
        tr = getattr(cm, "config", {}).get("train", {})
        if tr.get("average_from") is not None:
            averaging[label] = (f"; from step {tr['average_from']} on, the model is the mean of the EMA snapshots "
                                f"every {tr['average_every']} steps")
        one = seed_fds(lambda s, m=cm, T=T: cm_samples(m, n, s, [T]))
        tau, _ = best_two_step(cm, search_n)
        two = seed_fds(lambda s, m=cm, T=T, tau=tau: cm_samples(m, n, s, [T, tau]))
        rows += [row(f"{label} 1-step", 1, one, f"<= {targets[0]}"),
                 row(f"{label} 2-step (tau={tau:.3g})", 2, two, f"<= {targets[1]}")]
        for k, sig in ((1, [T]), (2, [T, tau])):
            r = seed_fds(lambda s, m=cm, sig=sig: cm_samples(m, LARGE_N, s, sig), LARGE_SEEDS)["fd"]
            large.append([f"{label} {k}-step", k, r, r / t_large["fd"]])
        extra[label] = {"fd_1step": one["fd"], "fd_2step": two["fd"], "tau": tau, "ratio_1": one["fd"] / fd_t,
                        "ratio_2": two["fd"] / fd_t, "fd_1step_seeds": one["fd_seeds"],
                        "fd_2step_seeds": two["fd_seeds"], "fd_pixels_1step": one["pixels"],
                        "fd_pixels_2step": two["pixels"]}
        try:
            man = manifest(spec)
            extra[label]["wall_s"] = man.get("wall_s")
            curves[label] = man.get("curve", [])
        except (KeyError, FileNotFoundError):
            pass
        if plots:
            save_grid(cm_samples(cm, 64, 0, [T]), Path(plots) / f"consistency-{label}-1step.png", nrow=8)
            save_grid(cm_samples(cm, 64, 0, [T, tau]), Path(plots) / f"consistency-{label}-2step.png", nrow=8)
        if label == "digits-cd":
            extra["editing"] = editing(cm)
    if color:
        try:
            ccm = load(color)
        except (KeyError, FileNotFoundError) as e:
            summary.append(f"colorization: no colour model ({e})")
        else:
            extra["colorization"] = colorization(ccm)
            if plots:
                save_grid(_colour_strip(ccm), Path(plots) / "consistency-colorize.png", nrow=8)
    floor = noise_floor(DATASET, min(n, 898))
    summary.insert(0, f"FD-digits on n={n} samples against the real reference half, the mean over seeds "
                      f"{SEEDS[0]}-{SEEDS[-1]} (held out from every choice of recipe); real-data noise floor at "
                      f"this n: {floor:.3g}. Teacher digits-edm at 35-NFE Heun: {fd_t:.3g}.")
    tables = [{"title": f"FD-digits, one run, mean over the same {len(SEEDS)} seeds for every sampler (ratio = FD / "
                        "teacher's 35-NFE Heun FD); FD-pixels: the same samples on raw pixels, no network in the "
                        "metric",
               "columns": ["sampler", "NFE", "FD", "FD per seed (min-max)", "ratio", "target", "FD-pixels",
                           "pixels ratio"], "rows": rows}]
    tables.append({"title": f"The same samplers at n={LARGE_N} (mean of seeds {LARGE_SEEDS[0]}-{LARGE_SEEDS[-1]}): "
                            "FD's small-sample bias, which every sampler shares and which pulls ratios toward 1, "
                            "is smaller here",
                   "columns": ["sampler", "NFE", "FD", "ratio"], "rows": large})
    extra["large_n"] = {"n": LARGE_N, "seeds": list(LARGE_SEEDS), "rows": large}
    for label, c in curves.items():
        staged = any("stage" in p for p in c)  # a recipe with stages: say which stage each point belongs to
        tables.append({"title": f"{label}: FD (n=500, 2-step at tau=0.5) against training time"
                                f"{averaging.get(label, '')}",
                       "columns": ["step", "wall s", "FD 1-step", "FD 2-step"] + ["stage"] * staged,
                       "rows": [[p["step"], p["wall_s"], p["fd_1step"], p["fd_2step"]] + [p.get("stage")] * staged
                                for p in c]})
    if "editing" in extra:
        e = extra["editing"]
        tables.append({"title": f"Zero-shot editing with digits-cd on all {e['n']} held-out digits (label kept: the "
                                f"mean over {e['repeats']} noise draws; the binomial standard error of a rate near 80% "
                                f"at this n is {100 * math.sqrt(0.16 / e['n']):.1f} points)",
                       "columns": ["task", "metric", "value"],
                       "rows": [[k.split("_")[0], k, v] for k, v in e.items() if k not in {"n", "repeats"}]})
    if "colorization" in extra:
        c = extra["colorization"]
        tables.append({"title": f"Zero-shot colorization with {color} on {c['n']} held-out coloured digits (FD on the "
                                "digits_color classifier; luma change: what Alg. 4 must keep, float round-off only)",
                       "columns": ["metric", "value"], "rows": [[k, v] for k, v in c.items() if k != "n"]})
    plot_paths = []
    if plots and curves:
        fd_t500 = teacher_fd(teach, 500, seed=1)  # the curves' own n and seeds
        extra["teacher_fd_35_n500_seed1"] = fd_t500
        plot_paths.append(_plot_curves(curves, Path(plots) / "consistency-curve.png", fd_t500))
    if plots:
        plot_paths += [str(p) for p in sorted(Path(plots).glob("consistency-digits-*.png"))]
        if "colorization" in extra:
            plot_paths.append(str(Path(plots) / "consistency-colorize.png"))
    return {"title": "Consistency models (CD, iCT) and zero-shot editing", "summary": summary, "tables": tables,
            "plots": plot_paths, "raw": extra, "bench_wall_s": time.perf_counter() - t0}


def _colour_strip(cm: Any, k: int = 8) -> Tensor:
    """Rows for the picture: real colour digits, their luma, 1-step and 2-step colorizations."""
    from .. import data as fsdata
    from ..edit import colorize
    from ..edit.transforms import to_gray

    x = fsdata.get("digits_color", split="test").x[:k]
    gray = to_gray(x)
    g = torch.Generator().manual_seed(0)
    T = float(cm.sigma_max)
    return torch.cat([x, gray.expand(-1, 3, -1, -1), colorize(cm, gray, [T], generator=g),
                      colorize(cm, gray, [T, 0.5], generator=g)])


def _plot_curves(curves: dict[str, list[dict[str, Any]]], path: Path, fd_teacher: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, c in curves.items():
        w = [p["wall_s"] / 60 for p in c]
        ax.plot(w, [p["fd_1step"] for p in c], "o-", label=f"{label} 1-step")
        ax.plot(w, [p["fd_2step"] for p in c], "s--", label=f"{label} 2-step")
    ax.axhline(fd_teacher, color="k", lw=0.8, label="teacher 35-NFE Heun (same n, seeds)")
    ax.set_xlabel("training wall time (min)")
    ax.set_ylabel("FD-digits (n=500)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)

"""`fewstep bench lcm`: the latent consistency students (mnist-lcm, mnist-lcm-lora) against their CFG teacher
mnist-ldm at 25 NFE, on the same held-out noise and balanced labels: FD and accuracy at 1-8 steps, over guidance
scales, the LoRA's parameter share, and FD against training time from the student's manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..seed import HELD_OUT_SEED
from .options import device_option, json_option


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


@click.command(context_settings={"show_default": True})
@click.option("--student", default="mnist-lcm", help="the guided LCM (zoo name or checkpoint)")
@click.option("--lora", default="mnist-lcm-lora", help="the LCM-LoRA (zoo name or folder; skipped when absent)")
@click.option("--teacher", default="mnist-ldm", help="the latent teacher")
@click.option("--n", default=1000, type=click.IntRange(min=16), help="samples per FD")
@click.option("--scales", default="1,1.5,2,3,4", help="guidance scales of the sweep")
@click.option("--w", "main_w", default=2.0, type=float, help="the guidance of the steps curve")
@click.option("--steps", "steps_text", default="1,2,3,4,5,6,7,8", help="student steps of the curve at --w")
@click.option("--sweep-steps", default="2,4", help="student steps measured at every scale of the sweep")
@click.option("--style-steps", default=600, type=click.IntRange(min=0),
              help="steps of the style LoRA (thickened digits) the LCM-LoRA is transferred to; 0 skips the study")
@click.option("--style-rank", default=8, type=click.IntRange(min=1), help="rank of the style LoRA")
@click.option("--threads", default=1, type=int, help="torch CPU threads")
@click.option("--name", default="lcm", help="result name: bench-results/<name>.json")
@click.option("--seed", default=HELD_OUT_SEED, type=click.IntRange(min=0), help="base seed of the held-out noise")
@device_option
@json_option
def lcm(student: str, lora: str, teacher: str, n: int, scales: str, main_w: float, steps_text: str,
        sweep_steps: str, style_steps: int, style_rank: int, threads: int, name: str, seed: int, device: str,
        as_json: bool) -> None:
    """Latent consistency models: students vs the CFG teacher at 25 NFE, steps and guidance sweeps, LoRA."""
    import torch

    from ..bench import lcm as B
    from ..bench.common import write_result
    from ..bench.strict_json import dumps
    from ..solvers.renoise import geometric_sigmas
    from ..zoo import lookup

    torch.set_num_threads(threads)
    t = lookup.load(teacher, device)
    st = lookup.load(student, device)
    dataset = lookup.dataset_of(st) or "mnist5k"
    ws = sorted(set(_floats(scales)) | {main_w})
    curve_steps, sweep = _ints(steps_text), _ints(sweep_steps)
    rows = [B.teacher_row(t, dataset, w, n, seed) for w in ws]
    anchor = {r["guidance"]: r["fd"] for r in rows}
    acc_anchor = {r["guidance"]: r["accuracy"] for r in rows}
    done = set()
    for k in curve_steps:
        rows.append(B.student_row(st, student, dataset, k, main_w, n, seed))
        done.add((k, main_w))
    for w in ws:
        for k in sweep:
            if (k, w) not in done:
                rows.append(B.student_row(st, student, dataset, k, w, n, seed))
    manifest = lookup.manifest(student) if student in lookup.names() else {}
    for k in sorted(int(v) for v in ((manifest.get("sampler") or {}).get("sigmas") or {})):
        geo = geometric_sigmas(k, float(st.sigma_min), float(st.sigma_max))  # the searched times against these
        rows.append({**B.student_row(st, f"{student} geometric", dataset, k, main_w, n, seed, sigmas=geo),
                     "sampler": "lcm (geometric times)"})
    for mid, k in ((1.0, 2), (2.5, 2), (1.0, 3)):  # hybrid: one LCM step, then the teacher's solver
        rows.append(B.hybrid_row(st, t, dataset, mid, k, main_w, n, seed))
    lora_info = _lora(lora, t, dataset, n, seed, rows, anchor, device)
    style = None
    if lora_info and style_steps:
        from ..cache import cache_dir

        path = cache_dir() / f"style-lora-{teacher}-r{style_rank}-{style_steps}.safetensors"
        style = B.style_study(t, lookup.path(lora) if lora in lookup.names() else lora, dataset, style_rank,
                              style_steps, path, n, seed, lora_info["guidance"], device=device)
    for r in rows:
        r["fd_over_teacher"] = r["fd"] / anchor[r["guidance"]]
        r["accuracy_minus_teacher"] = r["accuracy"] - acc_anchor[r["guidance"]]
    plots = _plots(rows, manifest, name, main_w, st, t, seed)
    summary = _summary(rows, anchor, main_w, curve_steps, ws, sweep, student, teacher, manifest, lora_info)
    if style:
        tuned, moved = style["tuned teacher"], style["LCM-LoRA on tuned teacher"]
        summary.append(
            f"LCM-LoRA transferred, without distilling again, to the teacher fine-tuned on thickened digits (a rank-"
            f"{style['rank']} style LoRA, {style['steps']} steps, merged): {style['lcm_steps']}-step FD against "
            f"thickened held-out digits {moved['fd_thick']:.3g} = {style['transfer_ratio']:.2f}x that teacher's own "
            f"{tuned['fd_thick']:.3g} at 25 NFE (target <= 2x, {'met' if style['transfer_ratio'] <= 2 else 'missed'})"
            f"; style kept: {100 * style['style_kept']:.0f}% of the teacher's thickening (ink {moved['ink']:.3f} vs "
            f"{style['LCM-LoRA on teacher']['ink']:.3f} without the style; teachers {tuned['ink']:.3f} vs "
            f"{style['teacher']['ink']:.3f}).")
    columns = ["model", "sampler", "steps", "guidance", "FD", "FD / teacher", "FD / floor", "accuracy",
               "acc. - teacher", "seconds"]
    table = [[r["model"], r["sampler"], r["steps"], r["guidance"], r["fd"], r["fd_over_teacher"], r["fd_over_floor"],
              r["accuracy"], r["accuracy_minus_teacher"], r["seconds"]] for r in rows]
    payload: dict[str, Any] = {
        "title": f"Latent consistency models: {student} (and {lora}) vs the CFG teacher {teacher} ({dataset})",
        "summary": summary, "plots": plots,
        "raw": {"rows": rows, "n": n, "seed": seed, "lora": lora_info, "style": style, "curve": manifest.get("curve"),
                "train_wall_s": manifest.get("wall_s")},
        "tables": [{"title": f"Teacher ({B.TEACHER_PLAN}, {B.TEACHER_NFE} NFE with CFG) and students, same noise, "
                             f"balanced labels, n={n}", "columns": columns, "rows": table}]}
    path = write_result(name, payload)
    click.echo(dumps(payload["raw"], indent=1) if as_json else "\n".join(summary) + f"\nwrote {path}")


def _lora(spec: str, teacher: Any, dataset: str, n: int, seed: int, rows: list[dict[str, Any]],
          anchor: dict[float, float], device: str) -> dict[str, Any] | None:
    """The LCM-LoRA's rows at its guidance (2 and 4 steps) and its parameter share; None when it is absent."""
    from ..bench import lcm as B
    from ..zoo import lookup

    if spec not in lookup.names() and not Path(spec).exists():
        return None
    lo = lookup.load(spec, device)
    w = float(lo.config["guidance"])
    if w not in anchor:
        rows.append(B.teacher_row(teacher, dataset, w, n, seed))
        anchor[w] = rows[-1]["fd"]
    for k in (1, 2, 4):
        rows.append(B.student_row(lo, spec, dataset, k, w, n, seed))
    params = dict(lo.den.net.inner.unet.named_parameters())
    adapters = sum(p.numel() for k, p in params.items() if "lora_" in k)
    base = sum(p.numel() for k, p in params.items() if "lora_" not in k)
    return {"name": spec, "guidance": w, "adapter_params": adapters, "base_params": base, "share": adapters / base,
            "rank": lo.den.net.lora.r, "targets": sorted(lo.den.net.lora.target_modules)}


def _summary(rows: list[dict[str, Any]], anchor: dict[float, float], w: float, curve_steps: list[int],
             ws: list[float], sweep: list[int], student: str, teacher: str, manifest: dict[str, Any],
             lora: dict[str, Any] | None) -> list[str]:
    def at(model: str, k: int, g: float) -> dict[str, Any] | None:
        return next((r for r in rows if r["model"] == model and r["steps"] == k and r["guidance"] == g), None)

    out = [f"Teacher {teacher} at {w:g}: FD {anchor[w]:.3g} (25 NFE with CFG)."]
    for k, target in ((4, 1.2), (2, 1.5), (1, None)):
        r = at(student, k, w)
        if r:
            ok = target is not None and r["fd_over_teacher"] <= target
            verdict = "" if target is None else f" (target <= {target:.1f}x, {'met' if ok else 'missed'})"
            out.append(f"{student} {k} step(s) at guidance {w:g}: FD {r['fd']:.3g} = {r['fd_over_teacher']:.2f}x the "
                       f"teacher{verdict}; accuracy {r['accuracy']:.3f} vs the teacher's "
                       f"{r['accuracy'] - r['accuracy_minus_teacher']:.3f} (target within 1 point).")
    for k in sweep:
        parts = [f"{g:g}: {at(student, k, g)['fd_over_teacher']:.2f}x" for g in ws if at(student, k, g)]
        within = all(abs(at(student, k, g)["fd_over_teacher"] - 1) <= 0.2 for g in ws if at(student, k, g))
        out.append(f"One model over guidance, {k} steps, FD / teacher at each w: {', '.join(parts)} (target within "
                   f"20% at each: {'met' if within else 'missed'}).")
    curve = [(k, at(student, k, w)["fd"]) for k in curve_steps if k >= 2 and at(student, k, w)]
    if curve:
        falls = all(b <= a * 1.1 for (_, a), (_, b) in zip(curve, curve[1:], strict=False))
        fds = ", ".join(f"{k}: {v:.3g}" for k, v in curve)
        out.append(f"Steps 2-8 at guidance {w:g}: FD {fds} (target: quality does not fall as steps grow: "
                   f"{'met' if falls else 'missed'}).")
    for h in (r for r in rows if r["model"] == "hybrid"):
        plain = at(student, h["steps"], w)
        if plain:
            out.append(f"Hybrid {h['sampler']} ({h['steps']} network evaluations): FD {h['fd']:.3g} vs the plain LCM "
                       f"sampler's {plain['fd']:.3g} at {h['steps']} steps.")
    for g in (r for r in rows if r["model"] == f"{student} geometric"):
        searched = at(student, g["steps"], w)
        if searched:
            out.append(f"{g['steps']} steps: searched times FD {searched['fd']:.3g} vs geometric times "
                       f"{g['fd']:.3g}.")
    if manifest.get("wall_s"):
        out.append(f"{student} was distilled by `{manifest.get('command')}` in {manifest['wall_s'] / 60:.1f} min "
                   "(1 thread, on a machine shared with other jobs; target 30 min).")
    if lora:
        g = lora["guidance"]
        r4 = at(lora["name"], 4, g)
        if r4:
            out.append(f"LCM-LoRA (rank {lora['rank']}, {lora['adapter_params']} adapter parameters = "
                       f"{100 * lora['share']:.1f}% of the UNet) 4 steps at guidance {g:g}: FD {r4['fd']:.3g} = "
                       f"{r4['fd_over_teacher']:.2f}x the teacher (target <= 1.5x, "
                       f"{'met' if r4['fd_over_teacher'] <= 1.5 else 'missed'}).")
    return out


def _plots(rows: list[dict[str, Any]], manifest: dict[str, Any], name: str, w: float, st: Any, t: Any,
           seed: int) -> list[str]:
    """FD against steps (student at w; the teacher as a line), FD against guidance (teacher vs student), FD
    against training time (the manifest's curve), and sample grids of the student at 1, 2, 4 steps and the
    teacher."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from ..bench import lcm as B
    from ..bench.common import RESULTS_DIR
    from ..io import save_grid
    from ..zoo.generate import draw

    out = []
    student = next(r["model"] for r in rows if r["model"] != "teacher")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    pts = sorted((r["steps"], r["fd"]) for r in rows if r["model"] == student and r["guidance"] == w)
    axes[0].plot(*zip(*pts, strict=True), "o-", label=student)
    axes[0].axhline(next(r["fd"] for r in rows if r["model"] == "teacher" and r["guidance"] == w), color="k",
                    ls=":", label="teacher, 25 NFE")
    axes[0].set(xlabel="student steps", ylabel="FD", title=f"guidance {w:g}")
    for model, style in (("teacher", "k:o"), (student, "-s")):
        for k in sorted({r["steps"] for r in rows if r["model"] == model}) if model != "teacher" else [None]:
            sel = sorted((r["guidance"], r["fd"]) for r in rows if r["model"] == model and (k is None or
                                                                                             r["steps"] == k))
            if len({g for g, _ in sel}) > 1:
                axes[1].plot(*zip(*sel, strict=True), style, label=model if k is None else f"{model} {k} steps")
    axes[1].set(xlabel="guidance scale", ylabel="FD", title="one student, every guidance")
    curve = manifest.get("curve") or []
    if curve:
        for key in [k for k in curve[0] if k.startswith("fd_")]:
            axes[2].plot([c["wall_s"] / 60 for c in curve], [c[key] for c in curve], "o-", label=key[3:])
        axes[2].set(xlabel="training minutes", ylabel="FD", title="FD against training time")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    png = Path(RESULTS_DIR) / f"{name}-curves.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    out.append(str(png))
    y = torch.arange(80) % 10
    for k in (1, 2, 4):
        path = Path(RESULTS_DIR) / f"{name}-{k}step.png"
        save_grid(draw(st, 80, nfe=k, seed=seed, labels=y, guidance=w).x, path, nrow=10)
        out.append(str(path))
    path = Path(RESULTS_DIR) / f"{name}-teacher.png"
    save_grid(draw(t, 80, nfe=B.TEACHER_NFE, plan=B.TEACHER_PLAN, seed=seed, labels=y, guidance=w).x, path, nrow=10)
    out.append(str(path))
    return out

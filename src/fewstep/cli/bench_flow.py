"""`fewstep bench flow`: latent flow matching (mnist-lfm) at its dopri5 reference, fewstep's plans and diffusers'
flow schedulers at equal NFE, beside the latent EDM teacher (mnist-ldm) under the same guidance, and independent
against minibatch-OT coupling with paired bootstrap intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .options import common, json_option


def _target(ok: bool) -> str:
    return "met" if ok else "missed"


@click.command(context_settings={"show_default": True})
@click.option("--model", default="mnist-lfm", help="the flow model (zoo name or diffusers folder)")
@click.option("--ot-model", default="mnist-lfm-ot", help="the same model trained with minibatch-OT coupling ('' to "
                                                         "skip the coupling comparison)")
@click.option("--teacher", default="mnist-ldm", help="the latent EDM teacher on the same autoencoder")
@click.option("--n", default=500, type=click.IntRange(min=16), help="samples per FD")
@click.option("--nfe", default=5, type=click.IntRange(min=2), help="the few-step budget compared")
@click.option("--guidance", default=2.0, type=float, help="CFG scale of every sampler (the teacher's best)")
@click.option("--threads", default=1, type=int, help="torch CPU threads")
@click.option("--name", default="flow", help="result name: bench-results/<name>.json")
@common
@json_option
def flow(model: str, ot_model: str, teacher: str, n: int, nfe: int, guidance: float, seed: int, device: str,
         threads: int, name: str, as_json: bool) -> None:
    """Latent flow matching: dopri5, fewstep plans vs diffusers flow schedulers, EDM teacher, OT vs independent."""
    import torch

    from ..bench import flow as B
    from ..bench.common import RESULTS_DIR, write_result
    from ..bench.strict_json import dumps
    from ..io import save_grid
    from ..zoo import lookup

    torch.set_num_threads(threads)
    den, ldm = lookup.load(model, device), lookup.load(teacher, device)
    dataset = lookup.dataset_of(den) or "mnist5k"
    g = guidance
    t35 = B.teacher_rows(ldm, dataset, g, n, seed)
    t5 = B.plan_rows(ldm, teacher, dataset, nfe, g, n, seed)
    ref = B.dopri5_row(den, model, dataset, g, n, seed)
    ours = B.plan_rows(den, model, dataset, nfe, g, n, seed)
    theirs = B.diffusers_rows(den, model, dataset, nfe, g, n, seed)
    best, best_t5, best_d = (min(rs, key=lambda r: r["fd"]) for rs in (ours, t5, theirs))
    rows = [t35, *t5, ref, *ours, *theirs]
    summary = [
        f"dopri5 reference of {model}: FD {ref['fd']:.3g} ({ref['nfe']} NFE) vs the latent EDM teacher {teacher} at "
        f"35-NFE Heun FD {t35['fd']:.3g}: {ref['fd'] / t35['fd']:.2f}x (target <= 1.1x: "
        f"{_target(ref['fd'] <= 1.1 * t35['fd'])}); accuracy {ref['accuracy']:.3f} vs {t35['accuracy']:.3f}.",
        f"NFE {nfe}: best fewstep plan {best['sampler']} FD {best['fd']:.3g} = {best['fd'] / ref['fd']:.2f}x its own "
        f"dopri5 (target <= 1.3x: {_target(best['fd'] <= 1.3 * ref['fd'])}); the teacher's best NFE-{nfe} plan "
        f"{best_t5['sampler']} FD {best_t5['fd']:.3g} (target: flow <= teacher, "
        f"{_target(best['fd'] <= best_t5['fd'])}); best diffusers flow scheduler {best_d['sampler']} FD "
        f"{best_d['fd']:.3g}: {best['fd'] / best_d['fd']:.2f}x (target <= 0.8x: "
        f"{_target(best['fd'] <= 0.8 * best_d['fd'])}). The searched (S^3) plan was not measured.",
    ]
    coupling: dict[str, Any] = {}
    if ot_model:
        ot = lookup.load(ot_model, device)
        plan_name, grid = best["sampler"].removeprefix("fewstep ").rstrip(")").split(" (")
        ref_ot = B.dopri5_row(ot, ot_model, dataset, g, n, seed)
        few_ot = B.plan_rows(ot, ot_model, dataset, nfe, g, n, seed, plans=(plan_name,), grids=(grid,))[0]
        rows += [ref_ot, few_ot]
        coupling = {"nfe": B.paired_ratio(few_ot, best, dataset, seed),
                    "dopri5": B.paired_ratio(ref_ot, ref, dataset, seed),
                    "dopri5_nfe": {"independent": ref["nfe"], "ot": ref_ot["nfe"]}}
        summary.append(
            f"Minibatch OT vs independent coupling (same steps, noise and labels; FD(OT) / FD(independent), 90% "
            f"paired bootstrap): NFE {nfe} ({best['sampler']}) {coupling['nfe']['ratio']:.2f} "
            f"[{coupling['nfe']['lo']:.2f}, {coupling['nfe']['hi']:.2f}]; dopri5 {coupling['dopri5']['ratio']:.2f} "
            f"[{coupling['dopri5']['lo']:.2f}, {coupling['dopri5']['hi']:.2f}], {ref_ot['nfe']} vs {ref['nfe']} NFE.")
    for who, m in ((model, den), (ot_model, ot if ot_model else None), (teacher, ldm)):
        t = ((getattr(m, "config", None) or {}).get("train") or {}) if m is not None else {}
        if t.get("command"):
            shared = " (1 thread; the two flow trainings ran side by side on the 2 cores)" if m is not ldm else ""
            summary.append(f"{who} was trained by `{t['command']}` in {t.get('wall_s', 0) / 60:.1f} min{shared}"
                           + (f" (target <= 25 min: {_target(t.get('wall_s', 1e9) <= 1500)})." if who == model
                              else "."))
    grids = []
    for r in (ref, best, best_d, t35):
        p = RESULTS_DIR / f"{name}-{Path(r['model']).name}-{r['sampler'].split(' (')[0].replace(' ', '_')}.png"
        save_grid(r["x"][:80], p, nrow=10, scale=2)
        grids.append(str(p))
    plain = [{k: v for k, v in r.items() if k != "x"} for r in rows]
    payload: dict[str, Any] = {
        "title": f"Latent flow matching: {model} ({dataset}, 4x8x8 latents of mnist-ae) vs {teacher}",
        "summary": summary, "plots": grids,
        "raw": {"rows": plain, "coupling": coupling, "guidance": g, "n": n, "nfe": nfe, "seed": seed},
        "tables": [{"title": f"Samplers under guidance {g}, same latent noise and labels, n={n}, decoded",
                    "columns": ["model", "sampler", "NFE", "FD", "FD / floor", "accuracy", "seconds"],
                    "rows": [[r["model"], r["sampler"], r["nfe"], r["fd"], r["fd_over_floor"], r["accuracy"],
                              r["seconds"]] for r in plain]}]}
    path = write_result(name, payload)
    click.echo(dumps(payload["raw"], indent=1) if as_json else "\n".join(summary) + f"\nwrote {path}")

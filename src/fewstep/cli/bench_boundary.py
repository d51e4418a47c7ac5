"""`fewstep bench boundary`: BoundaryDiffusion on digits-edm: mixing step (automatic vs oracle), SVM accuracy in
x_t and h, edit success / class kept / closeness on held-out digits, timings, the learned-direction baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .options import common, json_option


def _fmt(v: Any) -> Any:
    return None if v is None else round(float(v), 3)


@click.command(context_settings={"show_default": True})
@click.option("--model", default="digits-edm", help="frozen diffusion model (zoo name or path)")
@click.option("--student", default="digits-cd", help="consistency student for the 1-2 step regeneration ('' skips)")
@click.option("--attributes", default="thickness,slant,3-8", help="comma-separated: thickness, slant, class pairs")
@click.option("--quick", is_flag=True, help="a 3-sigma ladder, one distance, 20 baseline steps (a smoke run)")
@click.option("--baseline-steps", default=150, type=click.IntRange(1), help="training steps of the learned baseline")
@click.option("--baseline-attributes", default="thickness", help="attributes the learned baseline is trained for")
@click.option("--threads", default=1, type=int, help="torch CPU threads")
@click.option("--name", default="boundary", help="result name: bench-results/<name>.json")
@common
@json_option
def boundary(model: str, student: str, attributes: str, quick: bool, baseline_steps: int, baseline_attributes: str,
             threads: int, name: str, seed: int, device: str, as_json: bool) -> None:
    """BoundaryDiffusion: automatic vs oracle mixing step, SVMs in x_t and h, one-step edits, learned baseline."""
    import torch

    from ..bench import boundary as BB
    from ..bench.common import RESULTS_DIR, write_result
    from ..bench.strict_json import dumps
    from ..io import save_grid
    from ..zoo import load

    torch.set_num_threads(threads)
    den = load(model, device).eval()
    cm = load(student, device).eval() if student else None
    pool = BB.class_pool()
    ladder = BB.LADDER[1:8:3] if quick else BB.LADDER
    distances = (2.5,) if quick else BB.DISTANCES
    steps = 20 if quick else baseline_steps
    results, plots = [], []
    for attr in [a.strip() for a in attributes.split(",") if a.strip()]:
        trained = steps if attr in baseline_attributes.split(",") else 0
        res, pic = BB.run_attribute(den, cm, attr, pool, ladder, distances, trained, seed,
                                    log=lambda m: click.echo(m, err=True))
        png = Path(RESULTS_DIR) / f"{name}-{attr}.png"
        save_grid(pic, png, nrow=8)
        res["grid"] = str(png)
        plots.append(str(png))
        results.append(res)
    payload = _payload(results, model, student, ladder)
    payload["plots"] = plots
    path = write_result(name, payload)
    click.echo(dumps(payload["raw"], indent=1) if as_json else "\n".join(payload["summary"]) + f"\nwrote {path}")


def _payload(results: list[dict[str, Any]], model: str, student: str, ladder: tuple[float, ...]) -> dict[str, Any]:
    summary, main, spaces, timing = [], [], [], []
    for r in results:
        o, a = r["test"]["oracle"], r["test"]["auto"]
        x = o["x"]
        kept = "n/a (class edit)" if x["class_kept"] is None else f"{x['class_kept']:.3f} (target >= 0.95)"
        summary.append(
            f"{r['attribute']}: mixing sigma auto {r['auto_sigma']:.3g} vs oracle {r['oracle_sigma']:.3g} "
            f"({r['auto_vs_oracle_steps']} ladder steps apart; target <= 1); test SVM accuracy at the oracle step "
            f"x_t {o['svm_x']:.3f}, h {o['svm_h']:.3f} (target >= 0.90 in the better); x_t edit at distance "
            f"{o['distance']}: success {x['success']:.3f} (target >= 0.90), class kept {kept}, closer to its "
            f"original than to a random same-class image {x['closer']:.3f} (target >= 0.90); at the automatic "
            f"step: success {a['x']['success']:.3f}, preserved {a['x']['preserved']:.3f}.")
        bl = o.get("baseline")
        base = (f"learned baseline ({bl['steps']} steps) {bl['seconds']:.1f} s, success {bl['success']:.3f}, "
                f"preserved {bl['preserved']:.3f}: boundary {o['speedup_vs_baseline']:.1f}x faster (target >= 10x "
                "at comparable success)." if bl else "no learned baseline for this attribute.")
        summary.append(
            f"{r['attribute']}: fit of {r['n_fit']} images {o['seconds_fit_200']:.2f} s wall, "
            f"{o['cpu_seconds_fit_200']:.2f} s CPU (SVMs {o['seconds_svm_200']:.2f} s; target <= 2 s), edit of 256 "
            f"at {o['nfe_edit']} NFE {o['seconds_edit_256']:.2f} s wall, {o['cpu_seconds_edit_256']:.2f} s CPU; "
            + base)
        for which in ("oracle", "auto"):
            s = r["test"][which]
            main.append([r["attribute"], which, s["sigma"], s["distance"], _fmt(s["svm_x"]), _fmt(s["svm_h"]),
                         _fmt(s["x"]["success"]), _fmt(s["x"]["class_kept"]), _fmt(s["x"]["closer"]),
                         _fmt(s["x"]["success_x_preserved"])])
        for k in ("x", "h", "both", "h_all_steps", "x_eta1", "student_1step", "student_2step", "generation",
                  "baseline"):
            if k in o:
                v = o[k]
                spaces.append([r["attribute"], k, _fmt(v["success"]), _fmt(v["class_kept"]), _fmt(v["closer"]),
                               _fmt(v["success_x_preserved"])])
        timing.append([r["attribute"], o["seconds_fit_200"], o["cpu_seconds_fit_200"], o["seconds_svm_200"],
                       o["nfe_edit"], o["seconds_edit_256"], o["cpu_seconds_edit_256"], bl["seconds"] if bl else None,
                       o.get("speedup_vs_baseline")])
    cols = ["attribute", "edit", "success", "class kept", "closer", "success x preserved"]
    return {
        "title": f"BoundaryDiffusion on {model} (held-out digits; x_t and h at the mixing step)",
        "summary": summary,
        "raw": {"results": results, "model": model, "student": student, "ladder": list(ladder)},
        "tables": [
            {"title": "Test images (the held-out half the oracle did not see): mixing step, SVM accuracy, x_t edit",
             "columns": ["attribute", "step", "sigma", "distance", "SVM x_t", "SVM h", "success", "class kept",
                         "closer", "success x preserved"], "rows": main},
            {"title": "At the oracle step: edit spaces, eta = 1 regeneration, the consistency student, generation "
                      "mode, the learned baseline", "columns": cols, "rows": spaces},
            {"title": "Timings (seconds, one run on 2 shared CPU cores: compare as ratios)",
             "columns": ["attribute", "fit 200 (wall)", "fit 200 (CPU)", "SVMs", "edit NFE", "edit 256 (wall)",
                         "edit 256 (CPU)", "baseline training (wall)", "speed-up (wall)"], "rows": timing},
        ]}

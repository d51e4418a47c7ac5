"""`fewstep bench latent`: the latent stack (mnist-ae, mnist-ldm): reconstruction FD and accuracy, the teacher's
FD and accuracy against guidance, and few-step plans against diffusers' EDM schedulers (same UNet, same noise)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .options import common, json_option

SCALES = (1.0, 1.5, 2.0, 3.0, 4.0)


@click.command(context_settings={"show_default": True})
@click.option("--ae", default="mnist-ae", help="autoencoder (zoo name or folder)")
@click.option("--model", default="mnist-ldm", help="latent teacher (zoo name or diffusers folder)")
@click.option("--data", "dataset", default=None, help="data set to score against [the model's]")
@click.option("--n", default=1000, type=click.IntRange(min=16), help="samples per FD")
@click.option("--nfe", "nfes", default="4,5,6", help="NFEs of the few-step comparison, comma-separated")
@click.option("--guidance", default=None, type=float,
              help="guidance of the few-step comparison [the teacher's best scale on the curve]")
@click.option("--threads", default=1, type=int, help="torch CPU threads")
@click.option("--name", default="latent", help="result name: bench-results/<name>.json")
@common
@json_option
def latent(ae: str, model: str, dataset: str | None, n: int, nfes: str, guidance: float | None, seed: int,
           device: str, threads: int, name: str, as_json: bool) -> None:
    """Latent stack: autoencoder reconstructions, teacher FD vs guidance, few-step plans vs diffusers EDM."""
    import torch

    from ..bench import latent as L
    from ..bench.common import write_result
    from ..bench.strict_json import dumps
    from ..io import save_grid
    from ..zoo import lookup

    torch.set_num_threads(threads)
    a, den = lookup.load(ae, device), lookup.load(model, device)
    dataset = dataset or lookup.dataset_of(den) or "mnist5k"
    steps = [int(s) for s in nfes.split(",") if s.strip()]
    rec = L.autoencoder_quality(a, dataset, n)
    curve = L.guidance_curve(den, dataset, SCALES, n, seed)
    conditional = [r for r in curve if r["guidance"] != "uncond"]
    best = min(conditional, key=lambda r: r["fd"])
    g = float(best["guidance"]) if guidance is None else guidance
    searched = {k: lookup.resolve_plan("searched", den, k, model=lookup.zoo_name(den))
                for k in steps if lookup.zoo_name(den) and lookup.searched_plan_path(lookup.zoo_name(den), k).is_file()}
    few = L.plans_vs_diffusers(den, dataset, tuple(steps), g, n, seed, searched=searched)
    plots = _plots(curve, few, name, den, g, seed, save_grid)
    one = conditional[0]
    summary = [
        f"Autoencoder {ae}: reconstruction FD {rec['fd_recon']:.3g} = {rec['fd_recon_over_floor']:.2f}x the noise "
        f"floor ({rec['noise_floor']:.3g} at n={rec['n']}; target <= 1.5x), originals {rec['fd_original']:.3g}; "
        f"accuracy {rec['accuracy_recon']:.3f} on reconstructions vs {rec['accuracy_original']:.3f} on originals "
        "(target >= 0.98 and within 1 point).",
        f"Teacher {model} at 35-NFE Heun, decoded: FD {one['fd']:.3g} = {one['fd_over_floor']:.2f}x the floor without "
        f"guidance (target <= 2x), accuracy {one['accuracy']:.3f}; best guidance {best['guidance']}: FD "
        f"{best['fd']:.3g} = {best['fd_over_floor']:.2f}x (target <= 1.5x), accuracy {best['accuracy']:.3f} "
        "(target >= 0.97).",
    ]
    for k in steps:
        rows = [r for r in few if r["nfe"] == k]
        ours = min((r for r in rows if r["sampler"].startswith("fewstep")), key=lambda r: r["fd"])
        theirs = min((r for r in rows if r["sampler"].startswith("diffusers")), key=lambda r: r["fd"])
        summary.append(f"NFE {k}, guidance {g}: best fewstep plan {ours['sampler']} FD {ours['fd']:.3g} "
                       f"({ours['fd_over_floor']:.2f}x floor) vs best diffusers EDM scheduler {theirs['sampler']} FD "
                       f"{theirs['fd']:.3g} ({theirs['fd_over_floor']:.2f}x).")
    summary += trained_by(a, den)
    payload: dict[str, Any] = {
        "title": f"Latent stack: {ae} + {model} ({dataset}, 28x28, 4x8x8 latents)", "summary": summary,
        "raw": {"autoencoder": rec, "guidance_curve": curve, "few_step": few, "guidance": g, "n": n, "seed": seed},
        "plots": plots,
        "tables": [
            {"title": f"Autoencoder reconstructions ({rec['n']} held-out images)",
             "columns": ["FD recon", "FD originals", "noise floor", "recon / floor", "acc. recon", "acc. originals",
                         "MSE"],
             "rows": [[rec["fd_recon"], rec["fd_original"], rec["noise_floor"], rec["fd_recon_over_floor"],
                       rec["accuracy_recon"], rec["accuracy_original"], rec["mse"]]]},
            {"title": f"Teacher at 35-NFE Heun (Karras grid), decoded, n={n}: guidance curve",
             "columns": ["guidance", "FD", "FD / floor", "accuracy", "seconds"],
             "rows": [[r["guidance"], r["fd"], r["fd_over_floor"], r.get("accuracy"), r["seconds"]] for r in curve]},
            {"title": f"Few-step samplers under guidance {g}, same latent noise and labels, n={n}",
             "columns": ["NFE", "sampler", "FD", "FD / floor", "accuracy", "seconds"],
             "rows": [[r["nfe"], r["sampler"], r["fd"], r["fd_over_floor"], r["accuracy"], r["seconds"]]
                      for r in few]},
        ]}
    path = write_result(name, payload)
    click.echo(dumps(payload["raw"], indent=1) if as_json else "\n".join(summary) + f"\nwrote {path}")


def trained_by(ae: Any, den: Any) -> list[str]:
    """The recorded training commands and times of the autoencoder and the teacher (their fewstep.json)."""
    out = []
    for what, cfg in (("autoencoder", ae.config), ("teacher", den.config)):
        t = cfg.get("train") or {}
        if t.get("command"):
            out.append(f"The {what} was trained by `{t['command']}` in {t.get('wall_s', 0) / 60:.1f} min "
                       f"({t.get('steps')} steps, 1 thread, on a machine shared with other jobs).")
    return out


def _plots(curve: list[dict[str, Any]], few: list[dict[str, Any]], name: str, den: Any, g: float, seed: int,
           save_grid: Any) -> list[str]:
    """The guidance curve (FD / floor and accuracy against the scale) and a grid of the teacher's samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from ..bench.common import RESULTS_DIR
    from ..zoo.generate import generate

    cond = [r for r in curve if r["guidance"] != "uncond"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["guidance"] for r in cond], [r["fd_over_floor"] for r in cond], "o-", label="FD / noise floor")
    ax.set_xlabel("guidance scale")
    ax.set_ylabel("FD / noise floor")
    ax2 = ax.twinx()
    ax2.plot([r["guidance"] for r in cond], [r["accuracy"] for r in cond], "s--", color="C1", label="accuracy")
    ax2.set_ylabel("class accuracy")
    fig.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    curve_png = Path(RESULTS_DIR) / f"{name}-guidance.png"
    fig.savefig(curve_png, dpi=110)
    plt.close(fig)
    grid_png = Path(RESULTS_DIR) / f"{name}-samples.png"
    x = generate(den, 80, plan="heun", nfe=35, seed=seed, labels=torch.arange(80) % 10, guidance=g)
    save_grid(x, grid_png, nrow=10)
    return [str(curve_png), str(grid_png)]

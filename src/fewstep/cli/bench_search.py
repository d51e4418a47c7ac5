"""`fewstep bench search`: S^3 vs hand-made plans on held-out noise (mixtures, digits teacher, cost, predictor)."""

from __future__ import annotations

import math

import click

COLS = ["ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_bh2", "heun", "ipndm"]


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v.strip()]


def _table(title: str, rows: list[dict], metric: str) -> dict:
    cols = ["NFE", f"searched {metric}", "best hand-made", f"its {metric}", "ratio", *COLS, "search s", "evals"]
    has_d = any("diffusers_score" in r for r in rows)
    if has_d:
        cols[5:5] = ["best diffusers", "diffusers " + metric, "ratio vs diffusers"]
    out = []
    for r in rows:
        row = [r["nfe"], r["searched"], r["best_baseline"], r["best_baseline_score"], r["ratio"]]
        if has_d:
            row += [r.get("diffusers_best") or "n/a", r.get("diffusers_score", math.nan),
                    r.get("ratio_diffusers", math.nan)]
        out.append(row + [r[c] for c in COLS] + [round(r["search_s"], 1), r["evaluations"]])
    return {"title": title, "columns": cols, "rows": out}


@click.command()
@click.option("--nfe", "nfes", default="3,4,5,6,7,8,9,10", show_default=True, help="comma-separated NFEs")
@click.option("--budget", default=300, show_default=True, help="plan evaluations per search (mixture)")
@click.option("--n-search", default=512, show_default=True, help="noises each mixture search scores on")
@click.option("--digits-budget", default=120, show_default=True, help="plan evaluations per digits search")
@click.option("--digits-n-search", default=32, show_default=True, help="noises each digits search scores on")
@click.option("--n-held", default=512, show_default=True, help="held-out noises (mixtures; digits FD uses 1000)")
@click.option("--curve", "curve", default="60,120,240", show_default=True, help="budgets of the cost curve")
@click.option("--seeds", default=2, show_default=True, help="seeds per point of the budget curve")
@click.option("--digits/--no-digits", default=True, help="include the digits teacher (needs zoo digits-edm)")
@click.option("--digits-metric", type=click.Choice(["rms", "fd"]), default="rms", show_default=True)
@click.option("--threads", default=1, show_default=True, help="torch threads (1 on the shared machine)")
def search(nfes: str, budget: int, n_search: int, digits_budget: int, digits_n_search: int, n_held: int, curve: str,
           seeds: int, digits: bool, digits_metric: str, threads: int) -> None:
    """Searched plans vs every hand-made plan on noise the search never saw; writes bench-results/search.json."""
    import torch

    from ..bench import search as B
    from ..bench.common import write_result

    torch.set_num_threads(threads)
    nfe_list = _ints(nfes)
    den = B.mixture()
    mix = B.table_run(den, den.shape, nfe_list, budget, n_search, n_held, "rms", with_diffusers=True)
    tables = [_table("Analytic mixture (16-d, 8 components): RMS error vs the exact ODE solution, held-out noise",
                     mix, "rms")]
    summary = []
    by = {r["nfe"]: r for r in mix}
    for n, target in ((5, 0.5), (10, 0.7)):
        if n in by:
            r = by[n]
            d = r.get("ratio_diffusers", math.nan)
            summary.append(f"mixture NFE {n}: searched/best hand-made = {r['ratio']:.3f}; searched/best diffusers = "
                           + (f"{d:.3f} (target <= {target})" if d == d else
                              "n/a (the solver benchmark's diffusers driver is not available in this build)"))
    curve_rows = B.budget_curve(den, den.shape, 5, _ints(curve), list(range(seeds)), n_search // 2, n_held)
    tables.append({"title": "Cost curve (mixture, NFE 5): held-out RMS vs search budget, predictor vs plain evolution "
                            f"(mean of {seeds} seeds, {n_search // 2} search noises)",
                   "columns": ["budget", "predictor", "held-out rms", "search-set rms"],
                   "rows": [[r["budget"], r["predictor"], r["held_out"], r["search_set"]] for r in curve_rows]})
    q = B.predictor_quality(den, den.shape, 5, max(_ints(curve)), n_search // 2)
    summary.append(f"predictor Kendall tau on held-out plans (mixture, NFE 5): later half {q['tau_later_half']:.2f}, "
                   f"random split {q['tau_random_split']:.2f}, on its random exploration picks "
                   f"{q['tau_explore_mean']:.2f}")
    tables.append({"title": "Generalisation (mixture): searched / best hand-made on the search noise vs held-out noise",
                   "columns": ["NFE", "search noise", "held-out noise"], "rows": B.generalisation(mix)})
    payload = {"title": "S^3 plan search", "mixture": mix, "curve": curve_rows, "predictor": q}
    if digits:
        try:
            drows, extra = B.digits_rows(nfe_list, digits_budget, digits_n_search, 1000, digits_metric)
        except KeyError as e:
            summary.append(f"digits teacher skipped: {e}")
        else:
            tables.append(_table(f"digits-edm teacher: FD-digits (1000 samples, held-out noise; search metric "
                                 f"{digits_metric}); noise floor {extra['noise_floor']:.3g}, teacher ODE "
                                 f"{extra['teacher_reference_fd']:.3g}", drows, "fd"))
            tables.append({"title": "Generalisation (digits)", "columns": ["NFE", "search noise", "held-out noise"],
                           "rows": B.generalisation(drows)})
            payload["digits"], payload["digits_extra"] = drows, extra
            for n in (4, 5):
                r = next((r for r in drows if r["nfe"] == n), None)
                if r:
                    summary.append(f"digits NFE {n}: FD searched/best hand-made = {r['ratio']:.3f} (target <= 0.7)")
    payload.update(tables=tables, summary=summary)
    click.echo(f"wrote {write_result('search', payload)}")

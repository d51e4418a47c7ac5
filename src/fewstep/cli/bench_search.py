"""`fewstep bench search`: S^3 vs hand-made plans on held-out noise (mixtures, digits teacher, cost, predictor)."""

from __future__ import annotations

import math

import click
import torch

from ..bench import search as B
from ..bench.common import write_result
from ..bench.strict_json import dumps
from .options import common, cpu_only, json_option

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
@click.option("--n-held", default=512, show_default=True, help="held-out noises of the mixture")
@click.option("--curve", "curve", default="60,120,240", show_default=True, help="budgets of the mixture cost curve")
@click.option("--seeds", default=2, show_default=True, help="seeds per point of the mixture budget curve")
@click.option("--mixture/--no-mixture", default=True, help="include the analytic mixture part")
@click.option("--digits/--no-digits", default=True, help="include the digits teacher (needs zoo digits-edm)")
@click.option("--research", is_flag=True,
              help="digits: search again here (--seed, --digits-budget/--digits-n-search/--digits-metric) instead "
                   "of scoring the shipped plans zoo/files/plans/digits-edm-nfe<N>.json")
@click.option("--digits-budget", default=120, show_default=True, help="plan evaluations per digits --research search")
@click.option("--digits-n-search", default=32, show_default=True, help="noises of each digits --research search")
@click.option("--digits-metric", type=click.Choice(["rms", "fd"]), default="rms", show_default=True,
              help="metric of the digits --research searches and of the digits budget curve")
@click.option("--digits-n-held", default=2000, show_default=True,
              help="held-out samples of digits FD (at 500, FD of one noise set swings by 2x between seeds)")
@click.option("--screen", default=100, show_default=True,
              help="digits: score every hand-made plan on the first SCREEN held-out noises first (0: all on n-held)")
@click.option("--keep", default=8, show_default=True, help="digits: hand-made plans per NFE kept for the full FD")
@click.option("--digits-curve", default="48,72,96,120,160,200", show_default=True,
              help="digits budget curve: evaluation counts (anytime best of one search of the largest)")
@click.option("--digits-curve-nfe", default=5, show_default=True, help="NFE of the digits budget curve")
@click.option("--digits-curve-n", default=32, show_default=True, help="search noises of the digits budget curve")
@click.option("--threads", default=1, show_default=True, help="torch threads (1 on the shared machine)")
@common
@json_option
def search(nfes: str, budget: int, n_search: int, n_held: int, curve: str, seeds: int, mixture: bool, digits: bool,
           research: bool, digits_budget: int, digits_n_search: int, digits_metric: str, digits_n_held: int,
           screen: int, keep: int, digits_curve: str, digits_curve_nfe: int, digits_curve_n: int,
           threads: int, device: str, seed: int, as_json: bool) -> None:
    """Searched plans vs every hand-made plan on noise the search never saw; writes bench-results/search.json.

    --seed: the searches' seed (the mixture cost curve uses SEED..SEED+seeds-1); the held-out noise keeps its own
    fixed seed, which no search uses."""
    cpu_only(device, "bench search")
    torch.set_num_threads(threads)
    nfe_list = _ints(nfes)
    tables, summary, payload = [], [], {"title": "S^3 plan search"}
    if mixture:
        _mixture(nfe_list, budget, n_search, n_held, curve, seeds, tables, summary, payload, seed)
    if digits:
        try:
            _digits(nfe_list, research, digits_budget, digits_n_search, digits_metric, digits_n_held, screen, keep,
                    _ints(digits_curve), digits_curve_nfe, digits_curve_n, tables, summary, payload, seed)
        except (KeyError, FileNotFoundError) as e:
            summary.append(f"digits teacher skipped: {e}")
    payload.update(tables=tables, summary=summary)
    path = write_result("search", payload)
    click.echo(dumps(payload, indent=1) if as_json else f"wrote {path}")


def _mixture(nfe_list: list[int], budget: int, n_search: int, n_held: int, curve: str, seeds: int, tables: list,
             summary: list, payload: dict, seed: int = 0) -> None:
    den = B.mixture()
    mix = B.table_run(den, den.shape, nfe_list, budget, n_search, n_held, "rms", with_diffusers=True, seed=seed)
    tables.append(_table("Analytic mixture (16-d, 8 components): RMS error vs the exact ODE solution, held-out noise",
                         mix, "rms"))
    by = {r["nfe"]: r for r in mix}
    for n, target in ((5, 0.5), (10, 0.7)):
        if n in by:
            r = by[n]
            d = r.get("ratio_diffusers", math.nan)
            summary.append(f"mixture NFE {n}: searched/best hand-made = {r['ratio']:.3f}; searched/best diffusers "
                           f"({r.get('diffusers_best')}) = "
                           + (f"{d:.3f} (target <= {target})" if d == d else
                              "n/a (the solver benchmark's diffusers driver is not available in this build)"))
    curve_rows = B.budget_curve(den, den.shape, 5, _ints(curve), list(range(seed, seed + seeds)), n_search // 2,
                                n_held)
    tables.append({"title": "Cost curve (mixture, NFE 5): held-out RMS vs search budget, predictor vs plain evolution "
                            f"(mean of {seeds} seeds, {n_search // 2} search noises)",
                   "columns": ["budget", "predictor", "held-out rms", "search-set rms"],
                   "rows": [[r["budget"], r["predictor"], r["held_out"], r["search_set"]] for r in curve_rows]})
    q = B.predictor_quality(den, den.shape, 5, max(_ints(curve)), n_search // 2, seed)
    summary.append(f"predictor Kendall tau on held-out plans (mixture, NFE 5): later half {q['tau_later_half']:.2f}, "
                   f"random split {q['tau_random_split']:.2f}, on its random exploration picks "
                   f"{q['tau_explore_mean']:.2f}")
    tables.append({"title": "Generalisation (mixture): searched / best hand-made on the search noise vs held-out noise",
                   "columns": ["NFE", "search noise", "held-out noise"], "rows": B.generalisation(mix)})
    payload.update(mixture=mix, curve=curve_rows, predictor=q)


def _digits(nfe_list: list[int], research: bool, budget: int, n_search: int, metric: str, n_held: int, screen: int,
            keep: int, checkpoints: list[int], curve_nfe: int, curve_n: int, tables: list, summary: list,
            payload: dict, seed: int = 0) -> None:
    rows, extra = B.digits_rows(nfe_list, n_held, screen, keep, research, budget, n_search, metric, grids=(3, 4, 5),
                                seed=seed)
    how = (f"every hand-made plan screened on the first {screen} held-out noises, the best {keep} on all {n_held}"
           if 0 < screen < n_held else f"every hand-made plan on all {n_held}")
    cols = ["NFE", "searched FD", "best hand-made", "its FD", "ratio", "ratio 90% CI", *B.FAMILIES, "searched rms",
            "best-rms hand-made", "its rms", "search metric/n", "search s", "evals"]
    tables.append({"title": f"digits-edm teacher, unconditional: FD-digits on {n_held} held-out samples ({how}); "
                            f"noise floor {extra['noise_floor']:.3g} (n={extra['noise_floor_n']}, all the held-out "
                            f"real digits there are), teacher 200-step ODE "
                            f"{extra['teacher_reference_fd']:.3g}; rms vs that ODE solution",
                   "columns": cols,
                   "rows": [[r["nfe"], r["searched"], r["best_baseline"], r["best_baseline_score"], r["ratio"],
                             "{:.2f}-{:.2f}".format(*r["ratio_90"]), *[r[c] for c in B.FAMILIES], r["searched_rms"],
                             r["best_rms_baseline"],
                             r["best_rms_baseline_score"], f"{r['search_metric']}/{r['search_n_samples']}",
                             round(r["search_s"], 1), r["evaluations"]] for r in rows]})
    tables.append({"title": "Generalisation (digits): searched / best hand-made FD on the search noise "
                            f"(search n, seed {seed}) vs the held-out noise",
                   "columns": ["NFE", "search noise", "held-out noise"], "rows": B.generalisation(rows)})
    for n in (4, 5):
        r = next((r for r in rows if r["nfe"] == n), None)
        if r:
            summary.append(f"digits NFE {n}: FD searched {r['searched']:.3g} vs best hand-made {r['best_baseline']} "
                           f"{r['best_baseline_score']:.3g}: ratio {r['ratio']:.3f}, 90% paired-bootstrap interval "
                           f"{r['ratio_90'][0]:.2f}-{r['ratio_90'][1]:.2f} (target <= 0.7); search "
                           f"{r['search_s']:.0f} s, {r['evaluations']} evaluations")
    payload.update(digits=rows, digits_extra=extra)
    payload.setdefault("plots", []).extend(extra["plots"])
    if checkpoints:
        c = B.digits_curve(curve_nfe, checkpoints, curve_n, n_held, metric, seed)
        tables.append({"title": f"Cost curve (digits, NFE {curve_nfe}, {metric} on {curve_n} search noises, seed "
                                f"{seed}): held-out FD ({n_held}) of the best plan after k evaluations, predictor "
                                "vs plain",
                       "columns": ["evaluations", "predictor", "held-out FD", "search-set " + metric],
                       "rows": [[r["budget"], r["predictor"], r["held_out"], r["search_set"]] for r in c["rows"]]})
        need = c["plain_evals_to_match"]
        summary.append(f"digits predictor (NFE {curve_nfe}): Kendall tau later half {c['tau']['tau_later_half']:.2f}, "
                       f"random split {c['tau']['tau_random_split']:.2f}, exploration picks "
                       f"{c['tau']['tau_explore_mean']:.2f}; plain evolution reaches the guided search's best "
                       f"search score after " + (f"{need} evaluations" if need else
                                                 f"more than {max(checkpoints)} evaluations (not within budget)"))
        payload["digits_curve"] = c

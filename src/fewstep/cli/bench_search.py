"""`fewstep bench search`: S^3 vs hand-made plans on held-out noise (mixtures, digits teacher, cost, predictor)."""

from __future__ import annotations

import math

import click
import torch

from ..bench import search as B
from ..bench import search_mixtures as M
from ..bench.common import write_result
from ..bench.strict_json import dumps
from .options import common, cpu_only, json_option

COLS = ["ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_bh2", "heun", "ipndm"]


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v.strip()]


def _pair(st: dict) -> str:
    """mean / p99 of a plan's per-sample errors, as one cell."""
    return f"{st['mean']:.3g} / {st['p99']:.3g}" if math.isfinite(st["mean"]) else "diverged"


def _mixtures_table(rows: list[dict]) -> dict:
    cols = ["mixture", "NFE", "searched mean", "searched p99", "chosen", "best diffusers (by mean)", "its mean",
            "its p99", "mean ratio", "p99 ratio", "lowest diffusers p99", "best hand-made", "its mean / p99",
            *[f"{c} mean / p99" for c in COLS], "meets target", "search s", "evals"]
    out = [[r["mixture"], r["nfe"], r["searched"]["mean"], r["searched"]["p99"], r["chosen"], r["diffusers_best"],
            r["diffusers"]["mean"], r["diffusers"]["p99"], r["ratio_mean"], r["ratio_p99"], r["diffusers_p99_min"],
            r["best_baseline"], _pair(r["best_baseline_stats"]), *[_pair(r[c]) for c in COLS],
            "yes" if r["meets"] else "no", round(r["search_s"], 1), r["evaluations"]] for r in rows]
    return {"title": "Analytic mixtures: per-sample RMS error vs the exact ODE solution on held-out noise, mean and "
                     "99th percentile (targets: mean ratio <= 0.5 at NFE 5, <= 0.7 at NFE 10; p99 ratio <= 1)",
            "columns": cols, "rows": out}


@click.command()
@click.option("--nfe", "nfes", default="3,4,5,6,7,8,9,10", show_default=True, help="comma-separated NFEs (digits)")
@click.option("--mixture-nfe", "mixture_nfes", default="5,10", show_default=True,
              help="comma-separated NFEs of the three analytic mixtures")
@click.option("--mixtures", "mixture_names", default="16d-4,64d-10,256d-16", show_default=True,
              help="which analytic mixtures (fewstep.bench.search_mixtures.mixtures)")
@click.option("--budget", default=300, show_default=True, help="plan evaluations per search (mixture)")
@click.option("--n-search", default=512, show_default=True, help="noises each mixture search scores on")
@click.option("--n-held", default=1024, show_default=True, help="held-out noises of the mixtures")
@click.option("--diffusers-screen", default=128, show_default=True,
              help="mixtures: every diffusers setting on the first N held-out noises first (0: all on n-held)")
@click.option("--diffusers-keep", default=6, show_default=True,
              help="mixtures: diffusers settings kept for all held-out noises (the best by mean and by rmse)")
@click.option("--objectives", default="mean,rmse,cvar", show_default=True,
              help="objective study (64d-10, NFE 5, default budget): objectives compared ('' to skip)")
@click.option("--objective-seeds", default=3, show_default=True, help="searches per objective in the study")
@click.option("--curve", "curve", default="60,120,240", show_default=True,
              help="budgets of the mixture cost curve ('' to skip)")
@click.option("--seeds", default=2, show_default=True, help="seeds per point of the mixture budget curve")
@click.option("--mixture/--no-mixture", default=True, help="include the analytic mixture part")
@click.option("--digits/--no-digits", default=True, help="include the digits teacher (needs zoo digits-edm)")
@click.option("--research", is_flag=True,
              help="digits: search again here (seed 0, --digits-budget/--digits-n-search/--digits-metric) instead "
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
def search(nfes: str, mixture_nfes: str, mixture_names: str, budget: int, n_search: int, n_held: int,
           diffusers_screen: int, diffusers_keep: int, objectives: str, objective_seeds: int, curve: str, seeds: int,
           mixture: bool, digits: bool, research: bool, digits_budget: int, digits_n_search: int, digits_metric: str,
           digits_n_held: int, screen: int, keep: int, digits_curve: str, digits_curve_nfe: int, digits_curve_n: int,
           threads: int, device: str, seed: int, as_json: bool) -> None:
    """Searched plans vs every hand-made plan on noise the search never saw; writes bench-results/search.json.
    The searches and held-out noise use the benchmark's recorded seeds (--seed other than 0 is refused)."""
    cpu_only(device, "bench search")
    if seed != 0:
        raise click.BadParameter("bench search runs with its recorded search and held-out seeds; use --seed 0",
                                 param_hint="--seed")
    torch.set_num_threads(threads)
    nfe_list = _ints(nfes)
    tables, summary, payload = [], [], {"title": "S^3 plan search"}
    if mixture:
        _mixture(_ints(mixture_nfes), [m for m in mixture_names.split(",") if m], budget, n_search, n_held,
                 diffusers_screen, diffusers_keep, tables, summary, payload)
        if objectives and objective_seeds > 0:
            _objectives(objectives.split(","), objective_seeds, tables, summary, payload)
        if curve:
            _curve(curve, seeds, n_search, n_held, tables, summary, payload)
    if digits:
        try:
            _digits(nfe_list, research, digits_budget, digits_n_search, digits_metric, digits_n_held, screen, keep,
                    _ints(digits_curve), digits_curve_nfe, digits_curve_n, tables, summary, payload)
        except (KeyError, FileNotFoundError) as e:
            summary.append(f"digits teacher skipped: {e}")
    payload.update(tables=tables, summary=summary)
    path = write_result("search", payload)
    click.echo(dumps(payload, indent=1) if as_json else f"wrote {path}")


def _mixture(nfe_list: list[int], names: list[str], budget: int, n_search: int, n_held: int, screen: int, keep: int,
             tables: list, summary: list, payload: dict) -> None:
    rows = M.mixture_rows(nfe_list, budget, n_search, n_held, screen, keep, names)
    tables.append(_mixtures_table(rows))
    for r in rows:
        t = M.TARGETS.get(r["nfe"])
        summary.append(f"{r['mixture']} NFE {r['nfe']} ({r['chosen']} plan): mean {r['searched']['mean']:.3g} vs "
                       f"best diffusers {r['diffusers_best']} {r['diffusers']['mean']:.3g} = {r['ratio_mean']:.2f}x"
                       + (f" (target <= {t})" if t else "") + f"; p99 {r['searched']['p99']:.3g} vs "
                       f"{r['diffusers']['p99']:.3g} = {r['ratio_p99']:.2f}x (target <= 1): "
                       + ("met" if r["meets"] else "NOT met"))
    tables.append({"title": "Generalisation (mixtures): searched / best hand-made plan in the search's objective, on "
                            "the search noise vs the held-out noise",
                   "columns": ["mixture", "NFE", "objective", "search noise", "held-out noise"],
                   "rows": [[r["mixture"], r["nfe"], r["objective"], r["search_score"] / r["search_best_baseline"],
                             r["ratio_objective_baseline"]] for r in rows]})
    payload.update(mixtures=rows)


def _objectives(objectives: list[str], n_seeds: int, tables: list, summary: list, payload: dict) -> None:
    rows = M.objective_study(objectives, list(range(n_seeds)))
    tables.append({"title": f"Search objective (64d-10 mixture, sigma_max {M.SIGMA_DDPM:.1f}, NFE 5, default budget, "
                            f"128 search noises, mean of {n_seeds} seeds): held-out per-sample RMS error",
                   "columns": ["objective", "mean", "median", "p99", "rmse", "searched plans returned", "p99 per seed"],
                   "rows": [[r["objective"], r["mean"], r["median"], r["p99"], r["rmse"],
                             f"{r['searched']}/{n_seeds}", " ".join(f"{p['p99']:.3g}" for p in r["per_seed"])]
                            for r in rows]})
    payload["objective_study"] = rows


def _curve(curve: str, seeds: int, n_search: int, n_held: int, tables: list, summary: list, payload: dict) -> None:
    den = B.mixture()
    curve_rows = B.budget_curve(den, den.shape, 5, _ints(curve), list(range(seeds)), n_search // 2, n_held)
    tables.append({"title": "Cost curve (16-d, 8-component mixture, NFE 5): held-out RMS vs search budget, predictor "
                            f"vs plain evolution (mean of {seeds} seeds, {n_search // 2} search noises)",
                   "columns": ["budget", "predictor", "held-out rms", "search-set rms"],
                   "rows": [[r["budget"], r["predictor"], r["held_out"], r["search_set"]] for r in curve_rows]})
    q = B.predictor_quality(den, den.shape, 5, max(_ints(curve)), n_search // 2)
    summary.append(f"predictor Kendall tau on held-out plans (mixture, NFE 5): later half {q['tau_later_half']:.2f}, "
                   f"random split {q['tau_random_split']:.2f}, on its random exploration picks "
                   f"{q['tau_explore_mean']:.2f}")
    payload.update(curve=curve_rows, predictor=q)


def _digits(nfe_list: list[int], research: bool, budget: int, n_search: int, metric: str, n_held: int, screen: int,
            keep: int, checkpoints: list[int], curve_nfe: int, curve_n: int, tables: list, summary: list,
            payload: dict) -> None:
    rows, extra = B.digits_rows(nfe_list, n_held, screen, keep, research, budget, n_search, metric, grids=(3, 4, 5))
    how = (f"every hand-made plan screened on the first {screen} held-out noises, the best {keep} on all {n_held}"
           if 0 < screen < n_held else f"every hand-made plan on all {n_held}")
    cols = ["NFE", "searched FD", "best hand-made", "its FD", "ratio", "ratio 90% CI", *B.FAMILIES, "searched rms",
            "searched rms p99", "worst sample rms", "best-rms hand-made", "its rms", "its rms p99", "search metric/n",
            "search s", "evals"]
    tables.append({"title": f"digits-edm teacher, unconditional: FD-digits on {n_held} held-out samples ({how}); "
                            f"noise floor {extra['noise_floor']:.3g} (n={extra['noise_floor_n']}, all the held-out "
                            f"real digits there are), teacher 200-step ODE "
                            f"{extra['teacher_reference_fd']:.3g}; rms vs that ODE solution",
                   "columns": cols,
                   "rows": [[r["nfe"], r["searched"], r["best_baseline"], r["best_baseline_score"], r["ratio"],
                             "{:.2f}-{:.2f}".format(*r["ratio_90"]), *[r[c] for c in B.FAMILIES], r["searched_rms"],
                             r["searched_rms_p99"], r["searched_rms_max"], r["best_rms_baseline"],
                             r["best_rms_baseline_score"], r["best_rms_baseline_p99"],
                             f"{r['search_metric']}/{r['search_n_samples']}",
                             round(r["search_s"], 1), r["evaluations"]] for r in rows]})
    tables.append({"title": "Generalisation (digits): searched / best hand-made FD on the search noise "
                            "(search n, seed 0) vs the held-out noise",
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
        c = B.digits_curve(curve_nfe, checkpoints, curve_n, n_held, metric)
        tables.append({"title": f"Cost curve (digits, NFE {curve_nfe}, {metric} on {curve_n} search noises, seed 0): "
                                f"held-out FD ({n_held}) of the best plan after k evaluations, predictor vs plain",
                       "columns": ["evaluations", "predictor", "held-out FD", "search-set " + metric],
                       "rows": [[r["budget"], r["predictor"], r["held_out"], r["search_set"]] for r in c["rows"]]})
        need = c["plain_evals_to_match"]
        summary.append(f"digits predictor (NFE {curve_nfe}): Kendall tau later half {c['tau']['tau_later_half']:.2f}, "
                       f"random split {c['tau']['tau_random_split']:.2f}, exploration picks "
                       f"{c['tau']['tau_explore_mean']:.2f}; plain evolution reaches the guided search's best "
                       f"search score after " + (f"{need} evaluations" if need else
                                                 f"more than {max(checkpoints)} evaluations (not within budget)"))
        payload["digits_curve"] = c

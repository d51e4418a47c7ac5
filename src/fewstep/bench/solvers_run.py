"""The whole `fewstep bench solvers`: the mixtures (bench.solvers), the digits teacher (bench.solvers_digits),
the inversion round trip (bench.solvers_inversion), the per-step overhead, the plot; writes
bench-results/solvers.json and BENCHMARKS.md."""

from __future__ import annotations

from typing import Any

from .common import RESULTS_DIR, write_result
from .solvers import NFES, accuracy, best, mixtures, overhead, versus_table
from .solvers import __doc__ as SETUP
from .solvers_digits import digits_section
from .solvers_inversion import inversion_section


def main(n_2d: int = 256, n_64d: int = 64, seed_: int = 0, plot: bool = True, digits: bool = True,
         quick: bool = False, inversion: bool = True) -> dict[str, Any]:
    """Run the whole benchmark, write bench-results/solvers.json (+ .png), return the payload."""
    if quick:
        n_2d, n_64d = min(n_2d, 64), min(n_64d, 32)
    acc = {name: accuracy(den, n_2d if name.startswith("2d") else n_64d, seed_) for name, den in mixtures().items()}
    ovh = overhead(repeats=3 if quick else 7)
    tables, summary = [], []
    for name, res in acc.items():
        t = versus_table(f"{name} mixture: RMS error vs the exact ODE solution, same x_T (sigma 80) for all",
                         res, NFES, "RMS")
        tables.append(t)
        wins = sum(r[2] <= r[4] for r in t["rows"])
        summary.append(f"{name}: the best fewstep hand-made plan is at least as accurate as the best diffusers "
                       f"scheduler at {wins}/{len(t['rows'])} NFEs (fewstep/diffusers "
                       f"{min(r[5] for r in t['rows']):.2f}-{max(r[5] for r in t['rows']):.2f})")
    tables.append({"title": "solver overhead per step, batch 4096 x 64 float32, no model (median)",
                   "columns": ["solver", "fewstep ms", "diffusers step() ms", "ratio"],
                   "rows": [[k, v["fewstep_step_ms"], v["diffusers_step_ms"], v["ratio"]] for k, v in ovh.items()]})
    summary.append("solver overhead per step, fewstep / diffusers: "
                   + ", ".join(f"{k} {v['ratio']:.2f}" for k, v in ovh.items()))
    payload: dict[str, Any] = {"title": "Solvers (USF plans vs diffusers schedulers)", "summary": summary,
                               "tables": tables, "nfes": NFES, "accuracy": acc, "overhead": ovh,
                               "setup": SETUP, "quick": quick}
    if digits:
        payload.update(digits_section(quick, seed_))
        tables += payload["digits_tables"]
        summary += payload["digits_summary"]
    if inversion:
        payload.update(inversion_section(quick, seed_, digits=digits))
        tables += payload["inversion_tables"]
        summary += payload["inversion_summary"]
    if plot:
        png = RESULTS_DIR / "solvers.png"
        _plot({**acc, **({"digits FD": payload["digits"]} if "digits" in payload else {})}, png)
        payload["plots"] = [str(png)]
    write_result("solvers", payload)
    return payload


def _plot(acc: dict[str, dict[str, dict[int, float]]], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(acc), figsize=(5.5 * len(acc), 4.5), squeeze=False)
    for ax, (name, res) in zip(axes[0], acc.items(), strict=True):
        ks = sorted({k for v in res.values() for k in v})
        for diff, style in ((False, "-o"), (True, "--s")):
            ax.plot(ks, [best(res, k, diff)[0] for k in ks], style,
                    label="best diffusers setting" if diff else "best fewstep plan")
        for fam in ("dpm_solver_pp_3m/logsnr/0.002", "unipc_bh2/logsnr/0.002", "diffusers:DPM++2M+karras/0.002"):
            if fam in res:
                ax.plot(ks, [res[fam][k] for k in ks], ":", alpha=0.6, label=fam)
        ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel="FD-digits" if "FD" in name else "RMS vs exact",
               title=name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

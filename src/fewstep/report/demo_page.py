"""The demo report's page: the NFE-vs-FD plot, a full table, a best-per-NFE summary, grids and editing examples."""

from __future__ import annotations

from typing import Any

from .page import Page, Section, Table


def _best_by_nfe(rows: list[Any]) -> Table:
    """Per NFE: the best hand-made solver, then every other method (searched plans, students, methods' rows on the
    same data) in the order they were run."""
    nfes = sorted({r.nfe for r in rows if r.family != "reference"})
    methods = list(dict.fromkeys(r.method for r in rows if r.family not in ("solver", "reference")))
    out = []
    for nfe in nfes:
        at = [r for r in rows if r.nfe == nfe]
        solvers = [r for r in at if r.family == "solver"]
        best = min(solvers, key=lambda r: r.fd) if solvers else None
        picks = [next((f"{r.fd:.3g}" for r in at if r.method == m), "—") for m in methods]
        out.append([nfe, f"{best.method} {best.fd:.3g}" if best else "—", *picks])
    return Table(["NFE", "best hand-made solver (FD)", *methods], out, "Best FD-digits per NFE (lower is better)")


LATENT_DATA = "mnist5k"  # the data set of the demo's latent teacher (mnist-ldm)


def _latent_table(rows: list[Any], floor: float) -> Table:
    return Table(["sampler", "NFE", "FD", "FD / floor", "accuracy", "images/s"],
                 [[r.method, r.nfe, r.fd, r.fd_over_floor, r.accuracy, r.images_per_s] for r in rows],
                 f"Latent models, 28x28 MNIST decoded: the teacher mnist-ldm and its students (FD on the MNIST "
                 "classifier; "
                 f"noise floor {floor:.3g})")


def _section_table(m: Any) -> Table:
    return Table(["model", "family", "NFE", "FD", "FD / floor", "accuracy", "images/s"],
                 [[r.method, r.family, r.nfe, r.fd, r.fd_over_floor, r.accuracy, r.images_per_s] for r in m.rows],
                 f"{m.title} ({m.dataset}; noise floor {m.floor:.3g})")


def build(rows: list[Any], edits: list[dict[str, Any]], floor: float, cfg: Any, plot: str, papers: dict[str, str],
          seconds: float, latent: list[Any] | None = None, latent_floor: float = float("nan"),
          methods: list[Any] | None = None) -> Page:
    teacher = next((r for r in rows if r.family == "reference"), None)
    intro = (
        f"Every method below sampled the same {cfg.n} per-sample seeds (base seed {cfg.seed}: noise the shipped "
        f"searched plans were not fit on) from the shipped models (no training in the demo), on {cfg.device}, "
        f"in {seconds:.0f} s in all. Quality is the Fréchet distance on the features of the project's digits "
        f"classifier (FD-digits); two disjoint halves of real digits at the same n are "
        f"{floor:.3g} apart (the noise floor), so FD near {floor:.3g} is as good as this measurement can tell."
        + (f" The teacher at 35 NFE scores {teacher.fd:.3g}." if teacher else "")
        + "\n\nThe hand-made solvers run on the logSNR grid (DPM-Solver's default) over the teacher's sigma range, "
          "as a user would call them. Their best grid per NFE is often better on this teacher (uniform in time, "
          "especially at 3-5 NFE): BENCHMARKS.md compares the searched plans against every solver on every grid, "
          "where the margin is much smaller. FD at this n also moves by a few units between noise sets, so compare "
          "rows of one run, not numbers across runs."
        + "\n\nImages/s is wall time on this machine, with other work possibly running: read it as a ratio "
          "between rows of this run, not as an absolute speed.")
    # methods on the latent teacher's data join its table on the front page (same noise floor)
    latent_methods = [r for m in methods or [] if m.dataset == LATENT_DATA for r in m.rows] if latent else []
    table = Table(["method", "family", "NFE", "FD", "FD / floor", "confidence", "images/s"],
                  [[r.method, r.family, r.nfe, r.fd, r.fd_over_floor, r.confidence, r.images_per_s] for r in rows],
                  "Every run")
    sections = [
        Section("Quality against cost", "Each curve is one method at growing NFE. Solid lines are fewstep's own "
                "methods (searched plans, consistency students); dashed lines the hand-made solvers.",
                images=[(plot, "FD-digits against network evaluations")],
                tables=[_best_by_nfe(rows)] + ([_latent_table(latent + latent_methods, latent_floor)] if latent else [])
                + [table]),
    ]
    solver_imgs = [(r.grid, f"{r.method}, {r.nfe} NFE, FD {r.fd:.3g}") for r in rows
                   if r.grid and r.family != "consistency"]
    text = "\n\n".join(papers[m] for m in dict.fromkeys(r.method for r in rows if r.family != "consistency")
                       if m in papers)
    sections.append(Section("Solvers and searched plans on the teacher", text, images=solver_imgs))
    cm_rows = [r for r in rows if r.family == "consistency"]
    if cm_rows:
        text = "\n\n".join(papers[m] for m in dict.fromkeys(r.method for r in cm_rows) if m in papers)
        sections.append(Section("Consistency models", text,
                                images=[(r.grid, f"{r.method}, {r.nfe} step(s), FD {r.fd:.3g}") for r in cm_rows]))
    if latent:
        name = latent[0].method.split()[0]
        sections.append(Section(
            f"Latent diffusion: {name}", papers.get(name, "") + " Samples are decoded by the autoencoder; every row "
            "uses the same latent noise and labels (0-9 in turn) at the teacher's recorded guidance scale.",
            images=[(r.grid, f"{r.method}, {r.nfe} NFE, FD {r.fd:.3g}, accuracy {r.accuracy:.2f}") for r in latent]))
    for m in methods or []:  # each method's own section (fewstep.report.rows.DemoSection)
        tables = [] if m.dataset == "digits" or (latent and m.dataset == LATENT_DATA) else [_section_table(m)]
        sections.append(Section(m.title, m.text, images=m.images, tables=tables + list(m.tables)))
    if edits:
        sections.append(Section(
            "Zero-shot editing with the consistency student",
            "Algorithm 4 of the consistency-models paper: the known part of the input (in an orthogonal basis: "
            "pixels, patch means, luma) is kept exactly and the student fills in the rest, with no training for "
            "the task.", images=[(e["image"], f"{e['op']}: {e['caption']}") for e in edits]))
    footer = ("Made by `fewstep demo` (see `fewstep demo --help`). Benchmarks at larger n, with the commands that "
              "produced them, are in BENCHMARKS.md.")
    return Page("fewstep demo: few-step sampling on the shipped digits models", intro, sections, footer)

"""`fewstep bench solvers` plumbing: one problem for everyone, the shared diffusers driver, the exact memo."""

from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner

import fewstep as fs
from fewstep.bench import anchors
from fewstep.bench import solvers as S

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def problem():
    den = fs.analytic.toy_mixture(dim=2, k=4, std=0.3)
    x_T, ref = S.problem(den, 8)
    return den, x_T, ref


def test_problem_is_the_exact_solution_from_sigma_80(problem):
    den, x_T, ref = problem
    assert x_T.dtype == torch.float64 and x_T.std() > 20  # x_T = 80 n
    fine = fs.sample(den, x_T, fs.plans.get("dpm_solver_pp_3m", nfe=200, sigma_max=80.0))
    assert (fine - ref).abs().max() < 1e-4  # the reference is what a converged solver reaches


def test_diffusers_errors_every_setting_from_the_same_x_T(problem):
    den, x_T, ref = problem
    errs = S.diffusers_errors(den, x_T, ref, 4)
    assert len(errs) == len(anchors.variants()) * len(anchors.SIGMA_MINS)
    assert all(math.isfinite(v) and v > 0 for v in errs.values())
    # the search benchmark's per-sample errors of the same driver: their root mean square is the overall RMS
    from fewstep.bench import search_mixtures as M

    held = type("Held", (), {"x_T": x_T, "ref": ref})()
    per_sample = M.diffusers_errors(den, held, 4, screen=0, keep=0)
    assert len(per_sample) == len(errs)
    rms = sorted(float(e.square().mean().sqrt()) for e in per_sample.values())
    assert rms == pytest.approx(sorted(errs.values()), rel=1e-6)


def test_fewstep_superset_of_diffusers_grids(problem):
    """fewstep's best is at most diffusers' best: every diffusers grid/solver exists as a fewstep variant."""
    den, x_T, ref = problem
    ours = S.fewstep_errors(S.Memo(den), x_T, ref, 3)
    theirs = S.diffusers_errors(den, x_T, ref, 3)
    assert min(v for v in ours.values() if v == v) <= min(theirs.values()) * (1 + 1e-5)


def test_memo_is_exact_and_hits(problem):
    den, x_T, ref = problem
    memo = S.Memo(den)
    for name in ("dpm_solver_pp_2m", "unipc_bh2"):
        plan = fs.plans.get(name, nfe=4)
        assert torch.equal(fs.sample(memo, x_T, plan), fs.sample(den, x_T, plan))
    assert memo.hits >= 2  # at least the first evaluation at x_T was shared


def test_bench_denoiser_scores_fewstep_and_diffusers_on_the_same_noise(problem):
    den = problem[0]
    variants = {lab: S.fewstep_variants()[lab] for lab in ("dpm_solver_pp_3m/logsnr/0.002",)}
    res = S.bench_denoiser(den, lambda x: float(x.norm()), (2,), n=6, nfes=[4], variants=variants,
                           diffusers={"DPM++3M+lu": 0.002})
    # DPM++3M with Lu lambdas on the table spanning [0.002, 80] is fewstep's 3M on the logsnr grid
    assert res["diffusers:DPM++3M+lu"][4] == pytest.approx(res["dpm_solver_pp_3m/logsnr/0.002"][4], rel=1e-5)


def test_cli_has_digits_and_quick():
    from fewstep.cli.bench_solvers import solvers

    out = CliRunner().invoke(solvers, ["--help"]).output
    assert "--digits / --no-digits" in out and "--quick" in out


def test_inversion_round_trip_falls_to_the_floor(problem):
    from fewstep.bench import solvers_inversion as I

    den = problem[0]
    x0 = den.sample(8, torch.Generator().manual_seed(0)).double()
    (e5, _, _), (e40, m40, w40) = (I.round_trip(den, x0, "dpm_solver_pp_2m", k) for k in (5, 40))
    assert I.floor(den, x0) < e40 < e5 and m40 <= w40 and w40 >= e40  # worst sample's RMS >= the overall RMS
    from fewstep.cli.bench_solvers import solvers

    assert "--inversion / --no-inversion" in CliRunner().invoke(solvers, ["--help"]).output

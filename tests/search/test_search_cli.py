"""`fewstep search` on a saved checkpoint: writes a plan file, resumes from its state, clear errors."""

import json
import re

import pytest
import torch
from click.testing import CliRunner

from fewstep.cli.search import search
from fewstep.errors import CheckpointError
from fewstep.io import build_denoiser, save_model
from fewstep.search import read_plan_file


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    config = {"kind": "denoiser", "net": {"class": "mlp", "kwargs": {"dim": 2, "hidden": 16, "depth": 1}},
              "precond": {"name": "edm", "kwargs": {}}, "sigma_min": 0.002, "sigma_max": 80.0, "shape": [2]}
    torch.manual_seed(0)
    den = build_denoiser(config)
    path = tmp_path_factory.mktemp("m") / "tiny.safetensors"
    save_model(path, den, config)
    return str(path)


def test_cli_writes_plan_and_resumes(ckpt, tmp_path):
    out = tmp_path / "plan.json"
    args = ["--model", ckpt, "--nfe", "3", "--out", str(out), "--n-samples", "8", "--quiet", "--json"]
    r = CliRunner().invoke(search, [*args, "--budget", "60"])
    assert r.exit_code == 0, r.output
    plan, meta = read_plan_file(out)
    assert plan.nfe == 3 and meta["evaluations"] >= 60 and "fewstep search" in meta["command"]
    assert (tmp_path / "plan.json.state.pt").is_file()
    r = CliRunner().invoke(search, [*args, "--budget", "76", "--resume"])  # continue the same search
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["evaluations"] >= 76
    assert read_plan_file(out)[0].nfe == 3


def test_cli_bad_nfe(ckpt, tmp_path):
    r = CliRunner().invoke(search, ["--model", ckpt, "--nfe", "0", "--out", str(tmp_path / "p.json")])
    assert r.exit_code != 0 and "nfe" in r.output.lower()


def _strict(text):
    """json.loads that rejects NaN/Infinity like strict parsers (RFC 8259) do."""
    def bad(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=bad)


def test_plan_file_and_json_output_are_strict_json(ckpt, tmp_path):
    out = tmp_path / "plan.json"
    r = CliRunner().invoke(search, ["--model", ckpt, "--nfe", "3", "--out", str(out), "--n-samples", "4", "--quiet",
                                    "--json", "--budget", "20"])  # stage 0 only: no predictor tau (was NaN)
    assert r.exit_code == 0, r.output
    printed, written = _strict(r.output), _strict(out.read_text())
    assert printed["predictor_tau_last"] is None and written["search"]["predictor_tau_last"] is None
    plan, meta = read_plan_file(out)
    assert plan.nfe == 3 and meta["predictor_tau_last"] is None


def test_plan_to_json_writes_null_for_nan_metadata():
    import fewstep as fs

    plan = fs.plans.get("ddim", 3)
    plan = fs.Plan(plan.sigmas, plan.steps, metadata={"search": {"score": float("nan"), "x": [float("inf"), 1.0]}})
    d = _strict(plan.to_json())
    assert d["search"] == {"score": None, "x": [None, 1.0]}
    assert fs.Plan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize("case, match", [
    ("missing", r"no search state at .*p\.json\.state\.pt; run without --resume to start a fresh search"),
    ("truncated", r"p\.json\.state\.pt is not a readable search state, it is damaged.*run without --resume"),
])
def test_cli_resume_refuses_a_missing_or_damaged_state(ckpt, tmp_path, case, match):
    out = tmp_path / "p.json"
    args = ["--model", ckpt, "--nfe", "3", "--out", str(out), "--n-samples", "4", "--quiet", "--budget", "20"]
    if case == "truncated":
        assert CliRunner().invoke(search, args).exit_code == 0
        state = tmp_path / "p.json.state.pt"
        state.write_bytes(state.read_bytes()[:100])
    r = CliRunner().invoke(search, [*args, "--resume"])
    assert r.exit_code != 0
    assert isinstance(r.exception, FileNotFoundError if case == "missing" else CheckpointError), r.exception
    assert re.search(match, str(r.exception)), str(r.exception)


@pytest.fixture(scope="module")
def cond_ckpt(tmp_path_factory):
    config = {"kind": "denoiser", "net": {"class": "mlp", "kwargs": {"dim": 2, "hidden": 16, "depth": 1,
                                                                     "num_classes": 3}},
              "precond": {"name": "edm", "kwargs": {}}, "sigma_min": 0.002, "sigma_max": 80.0, "shape": [2]}
    torch.manual_seed(0)
    den = build_denoiser(config)
    path = tmp_path_factory.mktemp("m") / "cond.safetensors"
    save_model(path, den, config)
    return str(path)


def test_cli_searches_under_guidance_and_says_what_it_wrote(cond_ckpt, tmp_path):
    out = tmp_path / "plan.json"
    r = CliRunner().invoke(search, ["--model", cond_ckpt, "--nfe", "3", "--out", str(out), "--n-samples", "8",
                                    "--n-val", "32", "--quiet", "--budget", "50", "--class-label", "0,2",
                                    "--guidance", "2"])
    assert r.exit_code == 0, r.output
    plan, meta = read_plan_file(out)
    assert meta["guidance"] == 2.0 and meta["class_label"] == [0, 2] and meta["n_val"] == 32
    assert "--class-label 0,2 --guidance 2.0" in meta["command"]
    if meta["chosen"] == "hand-made":
        assert f"the best hand-made plan {plan.name}: no searched plan beat it" in r.output
    else:
        assert plan.name == "searched-nfe3" and "searched rms=" in r.output


@pytest.mark.parametrize("extra, match", [
    (["--class-label", "3"], "class labels must lie in"),
    (["--class-label", "a"], "class index"),
    (["--guidance", "2"], "give --class-label"),
    (["--n-val", "1"], "--n-val"),
])
def test_cli_bad_condition_options(cond_ckpt, tmp_path, extra, match):
    r = CliRunner().invoke(search, ["--model", cond_ckpt, "--nfe", "3", "--out", str(tmp_path / "p.json"),
                                    "--budget", "5", *extra])
    assert r.exit_code == 2 and match in r.output, r.output


def test_cli_refuses_labels_for_an_unconditional_model(ckpt, tmp_path):
    r = CliRunner().invoke(search, ["--model", ckpt, "--nfe", "3", "--out", str(tmp_path / "p.json"),
                                    "--budget", "5", "--class-label", "1"])
    assert r.exit_code == 2 and "unconditional" in r.output, r.output


def test_cli_objective_choices_match_the_library():
    from fewstep.cli import search as cli_search
    from fewstep.search import api, score

    assert cli_search.OBJECTIVES == score.OBJECTIVES and cli_search.DEFAULT_OBJECTIVE == api.DEFAULT_OBJECTIVE

"""`fewstep search` on a saved checkpoint: writes a plan file, resumes from its state, clear errors."""

import json

import pytest
import torch
from click.testing import CliRunner

from fewstep.cli.search import search
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

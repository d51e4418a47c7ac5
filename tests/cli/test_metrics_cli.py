"""`fewstep metrics ...` and `fewstep zoo evaluate` (the former argparse mains) and the commands the shipped
manifests record: each names a real CLI command."""

import json
import shlex
import shutil

import click
import pytest
from click.testing import CliRunner

from fewstep import zoo
from fewstep.cli import zoo as cli_zoo
from fewstep.cli.main import cli
from fewstep.metrics import classifier, frechet
from fewstep.zoo import evaluate


def _resolves(command):
    """The click command a recorded `fewstep ...` command line runs, with its arguments parsed (not run)."""
    argv = shlex.split(command)
    assert argv[0] == "fewstep"
    group, args = cli, argv[1:]
    while isinstance(group, click.Group):
        group = group.get_command(click.Context(group), args[0])
        assert group is not None, command
        args = args[1:]
    group.make_context(group.name, list(args))
    return group


def test_floor_prints_the_noise_floors_and_refuses_a_bad_size():
    res = CliRunner().invoke(cli, ["metrics", "floor", "digits", "--n", "64", "--n", "all"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == json.loads(json.dumps(frechet.floors("digits", ["64", "all"])))
    assert set(json.loads(res.output)["noise_floor"]) == {"64", str(frechet.max_floor_n("digits"))}
    res = CliRunner().invoke(cli, ["metrics", "floor", "digits", "--n", "lots"])
    assert res.exit_code != 0 and "integer or 'all'" in res.output


def test_train_classifier_retrains_each_name(monkeypatch, tmp_path):
    seen = []

    def fake(name, root, verbose):
        seen.append((name, root))
        return {"data": name, "test_accuracy": 0.5, "train_accuracy": 0.6, "train_seconds": 1.0, "other": 0}

    monkeypatch.setattr(classifier, "retrain", fake)
    res = CliRunner().invoke(cli, ["metrics", "train-classifier", "digits", "mnist5k", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert seen == [("digits", tmp_path), ("mnist5k", tmp_path)]
    assert [json.loads(line)["data"] for line in res.output.splitlines()] == ["digits", "mnist5k"]
    assert CliRunner().invoke(cli, ["metrics", "train-classifier", "nope"]).exit_code != 0


def test_zoo_evaluate_prints_the_measurement_and_records_its_own_command(tmp_path, monkeypatch):
    shutil.copy(zoo.FILES / "digits-edm.safetensors", tmp_path / "digits-edm.safetensors")
    monkeypatch.setattr(evaluate, "FILES", tmp_path)
    res = CliRunner().invoke(cli, ["zoo", "evaluate", "digits-edm", "--n", "16", "--nfe", "3", "--write-manifest"])
    assert res.exit_code == 0, res.output
    printed = json.loads(res.output[:res.output.rindex("wrote")])
    direct = evaluate.evaluate("digits-edm", 16, 3, 0)
    for key in ("uncond", "cond"):
        assert printed[key]["fd"] == pytest.approx(direct[key]["fd"], rel=1e-9)
    man = json.loads((tmp_path / "digits-edm.json").read_text())
    assert man["metrics_command"] == "fewstep zoo evaluate digits-edm --n 16 --nfe 3 --seed 0 --write-manifest"
    assert _resolves(man["metrics_command"]).name == "evaluate"


def test_every_recorded_metrics_command_names_a_cli_command():
    for name in zoo.names():
        cmd = zoo.manifest(name).get("metrics_command")
        if cmd:
            assert _resolves(cmd).name in ("evaluate", "latent", "flow")  # zoo evaluate, or the latent stack's benches
    for p in sorted(classifier.FILES.glob("*-classifier.json")):
        cmd = json.loads(p.read_text())["command"]
        assert cmd == classifier.command(json.loads(p.read_text())["data"])
        assert _resolves(cmd).name == "train-classifier"


def test_zoo_list_quality_is_readable():
    q = {n: cli_zoo._quality(m) for _, n, m in cli_zoo._manifests()}
    assert "x floor" in q["digits-edm"] and "{" not in q["digits-edm"] and "acc=" in q["digits-edm"]
    if "digits-color-edm" in q:
        assert q["digits-color-edm"].startswith("uncond fd=")
    plans = {n: m for k, n, m in cli_zoo._manifests() if k == "plan"}
    for n, m in plans.items():
        assert q[n].startswith(f"{m['metric']}=") and "best hand-made" in q[n]

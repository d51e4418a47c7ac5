"""The command-line conventions the README promises: every command has --help; every command that runs a model has
--device, --seed and --json; every other command that reports numbers has --json; progress displays and logs go to
stderr, so with --json stdout is exactly one JSON document."""

import json
import sys
import types

import click
import pytest
import torch
from click.testing import CliRunner

import fewstep as fs
from fewstep.cli import bench as cli_bench
from fewstep.cli.main import COMMANDS, cli

# every leaf command, by what it does; a new command must be put in one of these
RUNS_MODELS = {"train", "sample", "eval", "search", "distill consistency", "distill dmd", "edit", "demo",
               "bench foundation", "bench solvers", "bench search", "bench consistency", "bench compile", "bench all",
               "zoo evaluate", "bench latent", "latent train-ae", "latent train-ldm", "latent train-lfm", "bench flow",
               "distill lcm", "distill lcm-times", "bench lcm", "distill ufogen", "bench ufogen",
               "bench boundary", "quantize", "bench quant"}
# report numbers, run no model of the user's: zoo/plan listings, FD floors of real data, and the classifiers' own
# recorded recipes (their seed is part of the recipe)
REPORTS = {"zoo list", "plans list", "metrics floor", "metrics train-classifier"}
# neither: `bench report` renders BENCHMARKS.md from result files; `zoo rebuild` replays recorded commands, which
# carry their own options
OTHER = {"bench report", "zoo rebuild"}


def _leaves(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    out = {}
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"{prefix}{name} is not available"
        if isinstance(cmd, click.Group):
            out.update(_leaves(cmd, f"{prefix}{name} "))
        else:
            out[f"{prefix}{name}"] = cmd
    return out


def _opts(cmd: click.Command) -> set[str]:
    return {o for p in cmd.params for o in p.opts}


def test_every_command_that_runs_a_model_has_device_seed_and_json():
    leaves = _leaves(cli)
    assert set(COMMANDS) <= {name.split()[0] for name in leaves}
    assert set(leaves) == RUNS_MODELS | REPORTS | OTHER, set(leaves) ^ (RUNS_MODELS | REPORTS | OTHER)
    for name in RUNS_MODELS:
        missing = {"--device", "--seed", "--json"} - _opts(leaves[name])
        assert not missing, (name, missing)
    for name in REPORTS:
        assert "--json" in _opts(leaves[name]), name
    for name in leaves:
        r = CliRunner().invoke(cli, [*name.split(), "--help"])
        assert r.exit_code == 0 and "Usage:" in r.output, (name, r.output)


def test_a_bad_device_is_refused_by_every_command_that_takes_one():
    leaves = _leaves(cli)
    for name in sorted(RUNS_MODELS):
        param = next(p for p in leaves[name].params if "--device" in p.opts)
        with pytest.raises(click.BadParameter, match="available here: cpu"):
            param.process_value(click.Context(leaves[name]), "foo")


TINY_TRAIN = ["train", "--data", "moons", "--net", "mlp", "--no-cond", "--channels", "16", "--num-blocks", "1",
              "--batch", "16", "--steps", "3", "--ckpt-every", "2"]


@pytest.fixture
def terminal(monkeypatch):
    """Make every rich console believe it writes to a terminal, so progress bars are drawn (where they go is the
    question)."""
    monkeypatch.setenv("FORCE_COLOR", "1")


def _json_only(r):
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)  # the whole of stdout is one JSON document


def test_train_with_json_prints_only_the_result_on_stdout(tmp_path, terminal):
    out = tmp_path / "m.safetensors"
    r = CliRunner().invoke(cli, [*TINY_TRAIN, "--out", str(out), "--json"])
    res = _json_only(r)
    assert res["out"] == str(out) and res["steps"] == 3 and len(res["losses"]) == 1
    assert '"command"' in r.stderr and "fewstep train" in r.stderr  # the resolved run is a log line on stderr
    assert "train" in r.stderr and "3/3" in r.stderr  # the progress bar was drawn, on stderr
    r = CliRunner().invoke(cli, [*TINY_TRAIN, "--out", str(out)])
    assert isinstance(r.exception, ValueError) and "--overwrite" in str(r.exception) and r.stdout == ""


def test_sample_and_eval_with_json_print_only_the_result_on_stdout(tmp_path, terminal):
    save = tmp_path / "s.pt"
    r = CliRunner().invoke(cli, ["sample", "--model", "digits-edm", "--nfe", "2", "--n", "16", "--batch", "8",
                                 "--out", "", "--save", str(save), "--json"])
    res = _json_only(r)
    assert res["n"] == 16 and "fd" in res and "16/16" in r.stderr
    r = CliRunner().invoke(cli, ["eval", "--samples", str(save), "--json", "--seed", "3"])
    ev = _json_only(r)
    assert ev["fd"] == pytest.approx(res["fd"], rel=1e-9) and "eval" in r.stderr and "3/3" in r.stderr


def test_bench_all_with_json_keeps_each_benchmarks_report_off_stdout(tmp_path, monkeypatch):
    from fewstep.bench import common

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)

    @click.command("fake")
    @click.option("--device", default="cpu")
    @click.option("--seed", default=0, type=int)
    def fake(device, seed):
        common.write_result("fake", {"title": "t", "tables": [], "seed": seed, "device": device}, command="x")
        click.echo("a human-readable report")

    mod = types.ModuleType("fewstep_fake_bench2")
    mod.fake = fake
    monkeypatch.setitem(sys.modules, "fewstep_fake_bench2", mod)
    monkeypatch.setattr(cli_bench, "BENCHES", {"fake": "fewstep_fake_bench2:fake"})
    r = CliRunner().invoke(cli, ["bench", "all", "--json", "--seed", "5"])
    res = _json_only(r)
    assert res["fake"]["seed"] == 5 and res["fake"]["device"] == "cpu"
    assert "a human-readable report" in r.stderr and "== bench fake" in r.stderr


def test_a_generate_progress_bar_never_touches_stdout(capsys, terminal):
    torch.manual_seed(0)
    fs.zoo.draw("digits-cd", 8, batch=4, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "8/8" in err

"""One registry for the benchmarks: the CLI, BENCHMARKS.md's order and the demo read it; results are strict JSON."""

import json
import math
import subprocess
import sys
import types
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fewstep import demo
from fewstep.bench import common, registry
from fewstep.bench.strict_json import clean, dumps
from fewstep.cli import bench as cli_bench
from fewstep.cli.main import cli


def _strict(text):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_the_cli_the_report_order_and_the_demo_read_the_registry():
    assert cli_bench.BENCHES == registry.commands() and list(cli_bench.BENCHES)[0] == registry.order()[0]
    assert common.ORDER == registry.order()
    assert demo.BASELINES == registry.baselines() and "heun" in demo.BASELINES
    assert set(demo.PAPERS) >= set(demo.BASELINES) | {"searched", "digits-cd", "digits-ict", "teacher"}
    for name, target in registry.commands().items():  # every entry names a real click command
        cmd = cli_bench.bench.get_command(click.Context(cli_bench.bench), name)
        assert isinstance(cmd, click.Command), target


def test_bench_all_runs_every_benchmark_in_registry_order(monkeypatch):
    ran = []
    fake = types.ModuleType("fewstep_fake_bench")
    for name in ("b", "a", "c"):
        setattr(fake, name, click.Command(name, callback=lambda name=name: ran.append(name)))
    monkeypatch.setitem(sys.modules, "fewstep_fake_bench", fake)
    monkeypatch.setattr(cli_bench, "BENCHES", {n: f"fewstep_fake_bench:{n}" for n in ("b", "a", "c")})
    res = CliRunner().invoke(cli, ["bench", "all"])
    assert res.exit_code == 0, res.output
    assert ran == ["b", "a", "c"]


def test_bench_help_lists_the_registry_without_importing_torch():
    code = ("import sys; from click.testing import CliRunner; from fewstep.cli.main import cli; "
            "r = CliRunner().invoke(cli, ['bench', '--help']); print(r.output); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip().endswith("NO-TORCH")
    for name, help_ in registry.helps().items():
        assert name in out and help_ and help_[:20] in out


def test_a_result_with_nan_is_written_as_null_and_rendered_n_a(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "bench-results")
    payload = {"title": "t", "tables": [{"title": "x", "columns": ["a", "b"], "rows": [["r", math.nan]]}],
               "raw": {"inf": math.inf, "t": torch.tensor([1.0, math.nan]), "np": np.float64("nan"),
                       "i": np.int64(3), "tuple": (1.5, -math.inf)}}
    path = common.write_result("x", payload, command="fewstep bench x")
    data = _strict(path.read_text())
    assert data["tables"][0]["rows"] == [["r", None]]
    assert data["raw"] == {"inf": None, "t": [1.0, None], "np": None, "i": 3, "tuple": [1.5, None]}
    assert "| r | n/a |" in (tmp_path / "BENCHMARKS.md").read_text()


def test_strict_json_refuses_nothing_it_can_clean_and_the_shipped_results_are_strict():
    assert clean({"a": [float("nan"), 2.0, True, None, "s"]}) == {"a": [None, 2.0, True, None, "s"]}
    assert _strict(dumps({"k": float("-inf")})) == {"k": None}
    shipped = sorted((Path(__file__).resolve().parents[2] / "bench-results").glob("*.json"))
    assert shipped
    for p in shipped:
        _strict(p.read_text())
    with pytest.raises(ValueError):
        _strict('{"k": NaN}')

"""fs.generate(compile=True) / `fewstep sample --compile`: the network under torch.compile gives the eager samples
up to float round-off (Inductor fuses and reorders float32 arithmetic)."""

import importlib

import pytest
import torch
from click.testing import CliRunner

import fewstep as fs
from fewstep.cli.main import cli


def _tiny(tmp_path):
    cfg = {"kind": "denoiser", "net": {"class": "mlp", "kwargs": {"dim": 2, "hidden": 16, "depth": 1}},
           "precond": {"name": "edm", "kwargs": {"sigma_data": 0.5}}, "sigma_min": 0.002, "sigma_max": 80.0,
           "shape": [2]}
    torch.manual_seed(0)
    net = fs.io.build_denoiser(cfg)
    for p in net.parameters():  # not the zero-initialised output layer: a network whose output depends on x
        torch.nn.init.normal_(p, std=0.3)
    path = tmp_path / "tiny.safetensors"
    fs.io.save_model(path, net, cfg)
    return fs.zoo.load(path)


@pytest.mark.slow  # the first compiled call compiles: about 18 s with a cold Inductor cache on two cores
def test_compiled_and_eager_samples_agree_within_float_tolerance(tmp_path):
    m = _tiny(tmp_path)
    kw = {"nfe": 4, "plan": "dpm_solver_pp_2m", "seed": 3, "batch": 16}
    eager = fs.generate(m, 16, **kw)
    compiled = fs.generate(m, 16, compile=True, **kw)
    assert not torch.equal(eager, fs.generate(m, 16, **{**kw, "seed": 4}))  # the comparison can fail
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    assert all(not hasattr(mod, "_orig_mod") for mod in m.modules())  # the caller's model is left as it was


def test_compile_needs_a_module_and_the_cli_passes_it_on(tmp_path, monkeypatch):
    gm = fs.analytic.toy_mixture(2, 3)
    with pytest.raises(ValueError, match="compiles a torch module"):
        fs.generate(gm, 4, nfe=2, compile=True)
    generate = importlib.import_module("fewstep.zoo.generate")
    seen = {}
    real = generate.draw

    def spy(*a, **k):
        seen.update(k)
        return real(*a, **{**k, "compile": False})

    monkeypatch.setattr(generate, "draw", spy)
    r = CliRunner().invoke(cli, ["sample", "--model", "digits-cd",
                                 "--n", "4", "--out", "", "--no-metrics", "--compile", "--json"])
    assert r.exit_code == 0, r.output
    assert seen["compile"] is True

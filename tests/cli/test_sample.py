"""`fewstep sample` / `fewstep eval`: outputs with the documented keys, and one-line errors on bad input."""

import json
import sys

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import fewstep as fs
from fewstep import io
from fewstep.cli.main import cli, main
from fewstep.zoo import lookup

KEYS = {"model", "plan", "nfe", "n", "seed", "sample_seconds", "images_per_s", "wall_seconds", "fd", "noise_floor",
        "noise_floor_n", "fd_over_floor", "precision", "recall", "density", "coverage", "confidence",
        "confidence_real", "class_entropy", "out"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained class-conditional UNet checkpoint on digits (enough to exercise the command end to end)."""
    config = {"kind": "denoiser", "precond": {"name": "edm", "kwargs": {}}, "sigma_min": 0.002, "sigma_max": 80.0,
              "shape": [1, 8, 8], "data": {"name": "digits", "split": "train"},
              "net": {"class": "unet", "kwargs": {"in_channels": 1, "channels": 8, "channel_mult": [1],
                                                  "num_blocks": 1, "num_classes": 10}}}
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    io.save_model(path, io.build_denoiser(config), config)
    return str(path)


def run_ok(args):
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


def test_sample_writes_png_and_json(tiny_model, tmp_path):
    png, npz = tmp_path / "grid.png", tmp_path / "s.npz"
    r = run_ok(["sample", "--model", tiny_model, "--plan", "heun", "--nfe", "3", "--n", "24", "--batch", "10",
                "--out", str(png), "--save", str(npz), "--class-label", "all", "--json"])
    out = json.loads(r.output)
    assert KEYS <= set(out) and "accuracy" in out
    assert out["nfe"] == 3 and out["n"] == 24 and out["noise_floor_n"] == 24 and out["fd"] > 0
    assert Image.open(png).size == (8 * (5 * 9 + 1),) * 2  # 24 images -> 5 x 5 grid of 8 px + 1 px pads, x8
    x, y = io.load_samples(npz)
    assert x.shape == (24, 1, 8, 8) and y.tolist() == [i % 10 for i in range(24)]
    # samples do not depend on the batch size (per-sample seeds)
    x_one = fs.generate(tiny_model, 24, nfe=3, plan="heun", seed=0, labels=torch.arange(24) % 10, batch=24)
    torch.testing.assert_close(x, x_one, rtol=1e-4, atol=1e-5)
    # eval on the saved file reproduces the FD
    ev = json.loads(run_ok(["eval", "--samples", str(npz), "--data", "digits", "--json"]).output)
    assert ev["fd"] == pytest.approx(out["fd"], rel=1e-6) and ev["accuracy"] == pytest.approx(out["accuracy"])


def test_sample_human_output_and_cfg(tiny_model, tmp_path):
    r = run_ok(["sample", "--model", tiny_model, "--plan", "euler", "--nfe", "2", "--n", "8", "--class-label", "3",
                "--cfg", "2.0", "--out", str(tmp_path / "g.png")])
    assert "FD" in r.output and "noise floor" in r.output and "images/s" in r.output


def test_plan_file_round_trip(tiny_model, tmp_path):
    f = tmp_path / "plan.json"
    f.write_text(fs.plans.get("ddim", nfe=4).to_json())
    out = json.loads(run_ok(["sample", "--model", tiny_model, "--plan", str(f), "--n", "4", "--out", "",
                             "--no-metrics", "--json"]).output)
    assert out["nfe"] == 4 and "fd" not in out


def fail(argv, capsys, monkeypatch):
    """Run the real entry point; return its stderr, which must be one line, and check the exit code."""
    monkeypatch.setattr(sys, "argv", ["fewstep", *argv])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code != 0
    err = capsys.readouterr().err.strip()
    assert err and len(err.splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("extra,needle", [
    (["--plan", "nope"], "unknown plan"),
    (["--plan", "heun", "--nfe", "0"], "positive"),
    (["--plan", "heun", "--nfe", "-3"], "positive"),
    (["--plan", "searched", "--nfe", "7"], "fewstep search"),
    (["--plan", "missing.json"], "does not exist"),
    (["--class-label", "12"], "outside"),
    (["--cfg", "3"], "--class-label"),
    (["--n", "1"], "at least 2"),
    (["--save", "x.txt"], ".npz"),
    (["--grid", "nope"], "nope"),
])
def test_bad_sample_input_is_one_line(tiny_model, extra, needle, capsys, monkeypatch, tmp_path):
    err = fail(["sample", "--model", tiny_model, "--n", "4", "--out", str(tmp_path / "g.png"), *extra],
               capsys, monkeypatch)
    assert needle in err


def test_malformed_plan_json(tiny_model, capsys, monkeypatch, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "JSON" in fail(["sample", "--model", tiny_model, "--plan", str(bad), "--n", "4", "--out", ""],
                          capsys, monkeypatch)


def test_missing_model_and_samples(capsys, monkeypatch, tmp_path):
    assert "no-such" in fail(["sample", "--model", str(tmp_path / "no-such.safetensors")], capsys, monkeypatch)
    assert "no sample file" in fail(["eval", "--samples", str(tmp_path / "x.npz"), "--data", "digits"],
                                    capsys, monkeypatch)
    f = tmp_path / "s.npz"
    io.save_samples(torch.zeros(4, 1, 8, 8), f)
    assert "unknown data set" in fail(["eval", "--samples", str(f), "--data", "nope"], capsys, monkeypatch)
    assert "--data" in fail(["eval", "--samples", str(f)], capsys, monkeypatch)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    assert "corrupt" in fail(["eval", "--samples", str(bad), "--data", "digits"], capsys, monkeypatch)


def test_searched_plan_is_read_from_the_zoo_folder(tiny_model, tmp_path, monkeypatch):
    path = tmp_path / "tiny-nfe4.json"
    monkeypatch.setattr(lookup, "searched_plan_path", lambda model, nfe: tmp_path / f"{model}-nfe{nfe}.json")
    fs.search.write_plan_file(path, fs.plans.get("unipc_bh2", nfe=4), {"score": 0.1})  # plan + "search" block
    out = json.loads(run_ok(["sample", "--model", tiny_model, "--plan", "searched", "--nfe", "4", "--n", "4",
                             "--out", "", "--no-metrics", "--json"]).output)
    assert out["nfe"] == 4 and out["plan"] == "searched"


def test_diffusers_folder(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(tmp_path / "pipe")
    png = tmp_path / "g.png"
    out = json.loads(run_ok(["sample", "--model", str(tmp_path / "pipe"), "--plan", "ddim", "--nfe", "3", "--n", "4",
                             "--out", str(png), "--json"]).output)
    assert out["nfe"] == 3 and "fd" not in out  # no data set is known for a bare diffusers model
    assert Image.open(png).mode == "RGB"


def test_shipped_teacher_if_present(tmp_path):
    from fewstep import zoo

    if "digits-edm" not in zoo.names():
        pytest.skip("digits-edm is not shipped in this checkout")
    png = tmp_path / "g.png"
    out = json.loads(run_ok(["sample", "--model", "digits-edm", "--plan", "heun", "--nfe", "35",
                             "--n", "64", "--out", str(png), "--json"]).output)
    assert KEYS <= set(out) and out["nfe"] == 35 and png.is_file()
    # digits, not noise: clamped Gaussian noise scores ~25x the floor at n=64 and is put in one or two classes
    assert out["fd_over_floor"] < 5 and out["class_entropy"] > 1.5

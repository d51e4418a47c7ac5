"""`fewstep edit` runs every op on a tiny (untrained) consistency model and writes its grid."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import fewstep as fs
from fewstep.cli.edit import OPS, edit
from fewstep.distill.run import scratch_config


def _tiny(tmp_path, channels: int) -> str:
    net = {"class": "unet", "kwargs": {"channels": 8, "channel_mult": [1], "num_blocks": 1, "num_classes": 10}}
    cfg = scratch_config((channels, 8, 8), net)
    torch.manual_seed(0)
    path = tmp_path / f"cm{channels}.safetensors"
    fs.io.save_model(path, fs.io.build_denoiser(cfg), cfg)
    return str(path)


@pytest.mark.parametrize("op", OPS)
def test_every_op_writes_a_grid(tmp_path, op):
    model = _tiny(tmp_path, 3 if op == "colorize" else 1)
    out = tmp_path / f"{op}.png"
    r = CliRunner().invoke(edit, ["--op", op, "--model", model, "--n", "4", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert out.is_file()


def test_colorize_with_a_gray_model_is_refused(tmp_path):
    r = CliRunner().invoke(edit, ["--op", "colorize", "--model", _tiny(tmp_path, 1), "--n", "2"])
    assert r.exit_code != 0 and "colour model" in r.output


def test_default_models_follow_the_op(tmp_path):
    if not {"digits-cd", "digits-color-cd"} <= set(fs.zoo.names()):
        pytest.skip("shipped consistency models not present")
    for op, model in (("colorize", "digits-color-cd"), ("inpaint", "digits-cd")):
        r = CliRunner().invoke(edit, ["--op", op, "--n", "2", "--candidates", "2", "--out", str(tmp_path / "e.png"),
                                      "--json"])
        assert r.exit_code == 0, r.output
        assert f'"model": "{model}"' in r.output and '"candidates": 2' in r.output

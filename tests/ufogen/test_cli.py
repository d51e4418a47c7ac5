"""`fewstep distill ufogen`: trains a tiny teacher's generator, records the command, checkpoints the discriminator,
refuses to overwrite an existing run, resumes to the same weights as one uninterrupted run."""

from __future__ import annotations

import torch
from click.testing import CliRunner

import fewstep as fs
from fewstep.cli.distill import distill as group

CFG = {"kind": "denoiser", "net": {"class": "unet", "kwargs": {"in_channels": 1, "channels": 8, "channel_mult": [1],
                                                                "num_blocks": 1, "num_classes": 10}},
       "precond": {"name": "edm", "kwargs": {"sigma_data": 0.5}}, "sigma_min": 0.002, "sigma_max": 80.0,
       "shape": [1, 8, 8]}


def test_cli_trains_checkpoints_refuses_and_resumes(tmp_path):
    teacher = tmp_path / "t.safetensors"
    torch.manual_seed(0)
    fs.io.save_model(teacher, fs.io.build_denoiser(CFG), CFG)
    base = ["ufogen", "--teacher", str(teacher), "--batch", "8", "--quiet", "--gap", "750", "--ckpt-every", "2"]
    full, part = tmp_path / "full.safetensors", tmp_path / "part.safetensors"
    assert (r := CliRunner().invoke(group, base + ["--steps", "4", "--out", str(full)])).exit_code == 0, r.output
    G = fs.zoo.load(full)
    assert fs.kinds.model_kind(G).name == "ufogen" and G.config["distill"]["gap"] == 750
    assert "fewstep distill ufogen" in G.config["train"]["command"] and "--gap 750" in G.config["train"]["command"]
    assert set(torch.load(full.with_suffix(".ckpt.pt"), weights_only=True)["objective"]["disc"]) == {"net",
                                                                                                    "optimizer"}
    assert (r := CliRunner().invoke(group, base + ["--steps", "2", "--out", str(part)])).exit_code == 0, r.output
    r = CliRunner().invoke(group, base + ["--steps", "4", "--out", str(part)])
    assert r.exit_code != 0 and "resume" in (r.output + str(r.exception))  # an existing run is not overwritten
    r = CliRunner().invoke(group, base + ["--steps", "4", "--out", str(part), "--resume"])
    assert r.exit_code == 0, r.output
    a, b = fs.io.load_state(full), fs.io.load_state(part)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert fs.generate(part, 3, nfe=2).shape == (3, 1, 8, 8)

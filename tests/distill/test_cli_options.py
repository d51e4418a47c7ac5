"""The distillation and training CLIs build their options from the config fields: `fewstep distill dmd` runs, the
shipped digits-cd stages still parse into the same configs, --help needs no torch, and the torch-free copies of
the names (losses, weightings) equal the registries they mirror."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import fewstep as fs
from fewstep.distill.config import DMDConfig, make_config

MANIFEST = Path(fs.__file__).parent / "zoo" / "files" / "digits-cd.json"


def test_the_shipped_digits_cd_stages_parse_into_their_configs():
    import shlex

    from fewstep.cli.distill import CONSISTENCY_OPTIONS, consistency

    stages = json.loads(MANIFEST.read_text())["stages"]
    configs = []
    for cmd in stages:
        argv = shlex.split(cmd)
        assert argv[:3] == ["fewstep", "distill", "consistency"]
        o = consistency.make_context("consistency", argv[3:]).params
        configs.append(make_config(o["mode"], **{k: o[k] for k in (*CONSISTENCY_OPTIONS, "fake_lr")}))
    assert [c.mode for c in configs] == ["cd", "cd", "dmd"]
    assert isinstance(configs[-1], DMDConfig) and configs[-1].reg == 0.05 and configs[-1].dist == "lpips"
    assert configs[1].reg == 1.0 and configs[0].N == 18


def test_help_imports_no_torch():
    code = ("import sys; import fewstep.cli.distill, fewstep.cli.train; from fewstep.cli.main import cli; "
            "cli.main(['distill', 'dmd', '--help'], standalone_mode=False); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--fake-lr" in out and out.strip().endswith("False")


def test_torch_free_name_lists_equal_the_registries():
    from fewstep.distill import schedules
    from fewstep.distill.config import WEIGHTINGS
    from fewstep.train.config import LOSS_NAMES
    from fewstep.train.losses import LOSSES

    assert tuple(LOSS_NAMES) == tuple(LOSSES) and tuple(WEIGHTINGS) == tuple(schedules.WEIGHTINGS)


def test_distill_dmd_cli_trains_from_a_cd_student(tmp_path):
    from fewstep.cli.distill import distill as group

    cfg = {"kind": "denoiser", "net": {"class": "unet", "kwargs": {"in_channels": 1, "channels": 8,
                                                                   "channel_mult": [1], "num_blocks": 1}},
           "precond": {"name": "edm", "kwargs": {"sigma_data": 0.5}}, "sigma_min": 0.002, "sigma_max": 80.0,
           "shape": [1, 8, 8]}
    teacher, cd, out = tmp_path / "t.safetensors", tmp_path / "cd.safetensors", tmp_path / "dmd.safetensors"
    fs.io.save_model(teacher, fs.io.build_denoiser(cfg), cfg)
    base = ["--teacher", str(teacher), "--steps", "2", "--batch", "8", "--quiet", "--N", "6"]
    assert (r := CliRunner().invoke(group, ["consistency", *base, "--out", str(cd)])).exit_code == 0, r.output
    args = ["dmd", *base, "--init", str(cd), "--reg", "0.5", "--reg-paths", "8", "--fake-lr", "3e-4"]
    assert (r := CliRunner().invoke(group, [*args, "--out", str(out)])).exit_code == 0, r.output
    saved = fs.io.load_model(out).config
    assert saved["distill"]["mode"] == "dmd" and saved["distill"]["fake_lr"] == 3e-4 and "mu" not in saved["distill"]
    assert saved["train"]["command"].startswith("fewstep distill dmd --teacher ")
    r = CliRunner().invoke(group, [*args, "--out", str(out), "--steps", "3", "--resume"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(group, ["dmd", "--out", str(out)])
    assert r.exit_code != 0 and "--teacher" in r.output

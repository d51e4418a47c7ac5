"""`torchrun --nproc-per-node 2 fewstep search` (gloo on CPU): the candidate evaluations are spread over the two
ranks and the plan written is the one a single process writes on the same machine."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fewstep.io import build_denoiser, save_model


@pytest.mark.slow
def test_search_under_torchrun_equals_one_process(tmp_path):
    bindir = Path(sys.executable).parent
    torchrun, fewstep = bindir / "torchrun", shutil.which("fewstep", path=str(bindir))
    if not torchrun.is_file() or fewstep is None:
        pytest.skip("torchrun / fewstep entry points not installed in this environment")
    config = {"kind": "denoiser", "net": {"class": "mlp", "kwargs": {"dim": 2, "hidden": 16, "depth": 1}},
              "precond": {"name": "edm", "kwargs": {}}, "sigma_min": 0.002, "sigma_max": 80.0, "shape": [2]}
    torch.manual_seed(0)
    save_model(tmp_path / "m.safetensors", build_denoiser(config), config)
    args = ["search", "--model", "m.safetensors", "--nfe", "3", "--n-samples", "16", "--n-val", "64", "--budget",
            "70", "--threads", "1", "--quiet", "--json"]
    one = subprocess.run([fewstep, *args, "--out", "one.json"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([str(torchrun), "--nproc-per-node", "2", fewstep, *args, "--out", "two.json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    meta_a, meta_b = a.pop("search"), b.pop("search")
    assert a == b  # the plan itself
    assert meta_b["world_size"] == 2 and meta_a["world_size"] == 1
    for k in ("score", "val_score", "chosen", "best_baseline", "best_baseline_val", "evaluations"):
        assert meta_a[k] == meta_b[k], k
    printed = json.loads(two.stdout)  # rank 0 alone prints
    assert printed["out"] == "two.json"

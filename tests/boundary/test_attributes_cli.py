"""The digits attribute measurers against closed forms, and `fewstep edit --op boundary` end to end (tiny sizes)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from fewstep.cli.main import cli
from fewstep.edit.boundary import attributes as A


def test_thickness_is_the_ink_mass_per_area() -> None:
    x = -torch.ones(2, 1, 8, 8)
    x[0, 0, 2:6, 3] = 1.0  # 4 full pixels
    x[1, 0, 2:6, 3:5] = 0.0  # 8 half pixels
    assert torch.allclose(A.thickness(x), torch.tensor([4 / 64, 4 / 64], dtype=torch.float64))


@pytest.mark.parametrize("k", [-0.5, 0.0, 0.5])
def test_slant_of_a_sheared_stroke_is_its_shear(k: float) -> None:
    x = -torch.ones(1, 1, 8, 8)
    for r in range(8):  # column a = 3.5 + k (r - 3.5), split between the two nearest columns (linear in a)
        a = 3.5 + k * (r - 3.5)
        lo = int(a // 1)
        w = a - lo
        x[0, 0, r, lo] += 2 * (1 - w)
        if w > 0:
            x[0, 0, r, lo + 1] += 2 * w
    # the ink's centre of each row moves by k per row downward: -mu11 / mu02 = -k (> 0 leans right, top right)
    assert abs(A.slant(x).item() + k) < 1e-6


def test_class_pair_score_and_unknown_attribute() -> None:
    f = A.measure("3-8")
    assert f(torch.zeros(2, 1, 8, 8)).shape == (2,)
    with pytest.raises(ValueError, match="unknown attribute"):
        A.measure("boldness")


@pytest.mark.slow  # loads digits-edm and fits twice (~15 s on the shared 2 cores)
def test_edit_op_boundary_cli(tmp_path) -> None:
    out, bnd = tmp_path / "e.png", tmp_path / "thick"
    args = ["edit", "--op", "boundary", "--attribute", "thickness", "--n", "8", "--n-fit", "40", "--nfe", "3",
            "--out", str(out), "--save-boundary", str(bnd), "--json"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["n"] == 8 and res["nfe"] == 5 and 0 <= res["success"] <= 1 and out.is_file()
    assert (tmp_path / "thick.safetensors").is_file() and (tmp_path / "thick.json").is_file()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code != 0 and "--overwrite" in again.output
    r2 = CliRunner().invoke(cli, ["edit", "--op", "boundary", "--boundary", str(bnd), "--n", "4", "--out",
                                  str(tmp_path / "f.png"), "--json"])
    assert r2.exit_code == 0, r2.output
    assert json.loads(r2.output)["sigma"] == res["sigma"]

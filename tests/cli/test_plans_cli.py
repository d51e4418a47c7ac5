"""`fewstep plans list`: every constructor and grid (kept equal to the library's), and the shipped plans."""

import json

from click.testing import CliRunner

from fewstep import grids
from fewstep.cli import plans as P
from fewstep.cli.main import cli
from fewstep.solvers import constructors


def test_spelled_out_names_equal_the_library():
    assert sorted(P.PLANS) == constructors.names() and set(P.GRIDS) == set(grids.GRIDS)


def test_list_names_constructors_grids_and_searched_plans_with_their_metric():
    r = CliRunner().invoke(cli, ["plans", "list", "--json"], catch_exceptions=False)
    out = json.loads(r.output)
    assert out["constructors"] == list(P.PLANS) and out["grids"] == list(P.GRIDS)
    names = [row["name"] for row in out["searched"]]
    assert "digits-edm-nfe5" in names and names.index("digits-edm-nfe3") < names.index("digits-edm-nfe10")
    assert all(row["metric"] in ("fd", "rms") and row["score"] > 0 for row in out["searched"])
    text = CliRunner().invoke(cli, ["plans", "list"]).output
    assert "unipc_bh2" in text and "karras" in text and "digits-edm-nfe5: fd=" in text


def test_sample_help_shows_the_choices():
    text = CliRunner().invoke(cli, ["sample", "--help"]).output
    assert "dpm_solver_pp_3m" in text and "quadratic_t" in text

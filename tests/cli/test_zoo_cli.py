import json

from click.testing import CliRunner

from fewstep import zoo
from fewstep.cli.main import cli


def test_zoo_list_shows_manifests():
    res = CliRunner().invoke(cli, ["zoo", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    for name in zoo.names():
        assert name in rows and rows[name]["command"].startswith("fewstep ")
        assert "metrics" in rows[name] and rows[name]["seed"] is not None


def test_zoo_rebuild_dry_run_and_unknown():
    res = CliRunner().invoke(cli, ["zoo", "rebuild", "digits-edm", "--dry-run"])
    assert res.exit_code == 0 and "fewstep train" in res.output
    res = CliRunner().invoke(cli, ["zoo", "rebuild", "nope"])
    assert res.exit_code != 0

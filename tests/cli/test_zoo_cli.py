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


def test_zoo_rebuild_runs_every_stage_of_a_staged_manifest(tmp_path, monkeypatch):
    import json

    import fewstep.cli.zoo as z

    (tmp_path / "m.json").write_text(json.dumps({"command": "fewstep b --init s1", "stages": [
        "fewstep a --out s1", "fewstep b --init s1"]}))
    monkeypatch.setattr(z, "FILES", tmp_path)
    res = CliRunner().invoke(cli, ["zoo", "rebuild", "m", "--dry-run"])
    assert res.exit_code == 0 and res.output.splitlines() == ["$ fewstep a --out s1", "$ fewstep b --init s1"]

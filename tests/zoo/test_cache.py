"""Rebuilds and a user's searched plans go to the user cache (FEWSTEP_CACHE) or an explicit --out, never into the
installed package."""

import shlex

import pytest
from click.testing import CliRunner

import fewstep as fs
from fewstep.cache import cache_dir, plan_path, rebuild_dir
from fewstep.cli.main import cli
from fewstep.zoo.lookup import FILES, resolve_plan


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSTEP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_cache_folder_follows_the_environment(cache, monkeypatch, tmp_path):
    assert cache_dir() == cache and rebuild_dir() == cache / "zoo" and plan_path("m", 5) == cache / "plans/m-nfe5.json"
    monkeypatch.delenv("FEWSTEP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "fewstep"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "fewstep"


def _replayed(args):
    r = CliRunner().invoke(cli, ["zoo", "rebuild", *args, "--dry-run"])
    assert r.exit_code == 0, r.output
    return [shlex.split(line[2:]) for line in r.output.splitlines() if line.startswith("$ ")]


def _values(argv, option):
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == option]


@pytest.mark.parametrize("name", ["digits-edm", "digits-cd", "digits-edm-nfe5", "mnist-ldm"])
def test_a_rebuild_writes_into_the_cache_never_into_the_package(name, cache):
    cmds = _replayed([name])
    assert cmds and all(argv[0] == "fewstep" for argv in cmds)
    written = [v for argv in cmds for v in _values(argv, "--out")]
    assert written[-1].startswith(str(cache / "zoo")), written  # the model or plan itself
    for argv in cmds:
        for v in _values(argv, "--out") + _values(argv, "--init") + _values(argv, "--ae"):
            assert "zoo/files" not in v and not v.startswith(str(FILES)), argv


def test_a_rebuild_takes_an_explicit_folder_and_forwards_overwrite(tmp_path, cache):
    cmds = _replayed(["digits-edm", "--out", str(tmp_path / "mine"), "--overwrite"])
    assert _values(cmds[-1], "--out") == [str(tmp_path / "mine" / "digits-edm.safetensors")]
    assert cmds[-1][-1] == "--overwrite"
    plan = _replayed(["digits-edm-nfe5", "--overwrite"])[-1]
    assert "--overwrite" not in plan and _values(plan, "--out") == [str(cache / "zoo/plans/digits-edm-nfe5.json")]


def test_plan_searched_looks_in_the_cache_and_says_where_to_write(cache):
    den = fs.zoo.load("digits-edm")
    with pytest.raises(FileNotFoundError) as e:
        resolve_plan("searched", den, nfe=5, model="my-unet")
    msg = str(e.value)
    assert str(plan_path("my-unet", 5)) in msg and "FEWSTEP_CACHE" in msg and str(FILES) not in msg
    target = plan_path("my-unet", 5)
    target.parent.mkdir(parents=True)
    plan = fs.plans.get("ddim", nfe=5, sigma_min=den.sigma_min, sigma_max=den.sigma_max)
    target.write_text(plan.to_json())
    assert resolve_plan("searched", den, nfe=5, model="my-unet").to_json() == plan.to_json()
    # a shipped searched plan still comes first
    shipped = resolve_plan("searched", den, nfe=5, model="digits-edm")
    assert shipped.to_json() == fs.Plan.from_json((FILES / "plans/digits-edm-nfe5.json").read_text()).to_json()

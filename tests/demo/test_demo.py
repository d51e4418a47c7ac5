"""The demo in quick mode writes a report with a row, and a grid, for every method the zoo offers."""

from pathlib import Path

from fewstep import zoo
from fewstep.demo import DemoConfig, run
from fewstep.zoo.lookup import searched_plan_path


def test_quick_demo_writes_report(tmp_path):
    cfg = DemoConfig.quick(str(tmp_path / "report"))
    cfg.n = 32
    res = run(cfg, progress=False)
    html, md = Path(res["html"]), Path(res["markdown"])
    assert html.is_file() and md.is_file()
    methods = {r["method"] for r in res["rows"]}
    expected = set(cfg.baselines) | {"teacher"} | {m for m in ("digits-cd", "digits-ict") if m in zoo.names()}
    if any(searched_plan_path("digits-edm", k).is_file() for k in cfg.nfes):
        expected.add("searched")
    assert expected <= methods
    text = html.read_text()
    for m in expected:
        assert m in text and m in md.read_text()
    for r in res["rows"]:
        assert r["fd"] > 0 and r["images_per_s"] > 0
        if r["grid"]:
            assert (tmp_path / "report" / r["grid"]).stat().st_size > 100
    assert (tmp_path / "report" / "nfe_vs_fd.png").is_file()
    for e in res["edits"]:
        assert (tmp_path / "report" / e["image"]).is_file()
    # the few-step solver at 5 NFE beats 2 NFE: the numbers mean something
    fd = {(r["method"], r["nfe"]): r["fd"] for r in res["rows"]}
    assert fd[("dpm_solver_pp_3m", 5)] < fd[("dpm_solver_pp_3m", 2)]


def test_demo_cli_help_is_fast():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "fewstep", "demo", "--help"], capture_output=True, text=True,
                         check=True, timeout=60)
    assert "--quick" in out.stdout

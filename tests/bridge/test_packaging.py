"""Packaging: one version source, an MIT LICENSE matching the metadata, `fewstep --version`, a light import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import fewstep

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]


def test_version_has_one_source_and_license_matches():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fewstep.__version__"}
    assert project["project"]["license"] == "MIT" and project["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the fewstep authors" in text
    assert "accelerate" in " ".join(project["project"]["dependencies"])


def test_cli_version_and_light_import():
    out = subprocess.run([sys.executable, "-m", "fewstep", "--version"], capture_output=True, text=True, check=True)
    assert fewstep.__version__ in out.stdout
    code = "import sys, fewstep; heavy = {'torch', 'diffusers', 'scipy', 'matplotlib'} & set(sys.modules); " \
           "assert not heavy, heavy"
    subprocess.run([sys.executable, "-c", code], check=True)

"""mypy over wscap/ (pyproject.toml [tool.mypy]: disallow_untyped_defs): every module passes."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TYPED = ["wscap"]      # the whole package (issue 18: every module passes)


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy not installed (pip install mypy)")
def test_typed_packages_pass_mypy() -> None:
    r = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-incremental", *TYPED],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"mypy found errors:\n{r.stdout}{r.stderr}"


def test_config_is_strict() -> None:
    """The flags come from pyproject.toml (so `python -m mypy wscap/...` by hand checks the same),
    and a function without annotations in a typed package is an error, not skipped."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        cfg = tomllib.load(f)["tool"]["mypy"]
    assert cfg["disallow_untyped_defs"] is True and cfg["python_version"] == "3.10"
    assert "ignore_missing_imports" not in cfg        # only per module, for the untyped libraries


def test_an_untyped_function_fails(tmp_path: "os.PathLike[str]") -> None:
    """The check can fail: the same command on a module with one unannotated function."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy not installed (pip install mypy)")
    bad = os.path.join(str(tmp_path), "untyped_mod.py")
    with open(bad, "w") as f:
        f.write("def f(x):\n    return x\n")
    r = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-incremental",
                        "--config-file", os.path.join(ROOT, "pyproject.toml"), bad],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "no-untyped-def" in r.stdout, r.stdout + r.stderr

"""The wheel a user installs (pip install ./dist/*.whl, pipx install .) works on its own.

Built offline from a copy of the tree (`pip wheel --no-deps --no-build-isolation`, so the
checkout gets no build/ or egg-info), installed into a fresh venv that takes its dependencies
from this Python (`--system-site-packages`, as no index is needed), then run as a user would:
`wscap --version`, and the bundled sample analysed with its documented exit code (1: two of its
three chains are broken by construction, see scripts/make_sample.py).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _can_build() -> str | None:
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is not installed"
    try:
        import setuptools
        major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    except (ImportError, ValueError):
        major, minor = 0, 0
    if (major, minor) < (70, 1) and importlib.util.find_spec("wheel") is None:
        return "building a wheel offline needs the `wheel` package with this setuptools (pip install wheel)"
    if importlib.util.find_spec("venv") is None or importlib.util.find_spec("ensurepip") is None:
        return "python3-venv (venv + ensurepip) is not installed"
    return None


@pytest.mark.skipif(_can_build() is not None, reason=_can_build() or "")
def test_wheel_installs_and_runs(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__",
                                                             ".hypothesis", ".benchmarks", "out", "node_modules", "*.so"))
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    [whl] = list(dist.glob("wscap-*.whl"))
    names = zipfile.ZipFile(whl).namelist()
    # What `wscap live` compiles on first use and the typing marker travel with the wheel.
    assert "wscap/capture/csrc/wscap_capture.c" in names and "wscap/py.typed" in names
    # The compiled record loop is built into the wheel where a compiler and Python.h exist (optional
    # otherwise: the wheel still builds and wscap runs its pure-Python loop).
    import sysconfig
    can_compile = shutil.which("cc") or shutil.which("gcc")
    if can_compile and os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        assert [n for n in names if n.startswith("wscap/wire/_fastpath.") and n.endswith(".so")], names
    assert not [n for n in names if n.startswith("tests/")]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    py, exe = venv / "bin" / "python", venv / "bin" / "wscap"
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(whl)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COLUMNS")}
    work = tmp_path / "elsewhere"          # not the checkout: nothing imported from the tree
    work.mkdir()
    where = subprocess.run([str(py), "-c", "import wscap; print(wscap.__file__)"], capture_output=True,
                           text=True, cwd=work, env=env, timeout=60)
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
    if [n for n in names if n.startswith("wscap/wire/_fastpath.")]:
        fast = subprocess.run([str(py), "-c", "import wscap.wire.pcapio as p; print(p._fastpath.__file__)"],
                              capture_output=True, text=True, cwd=work, env=env, timeout=60)
        assert fast.stdout.strip().startswith(str(venv)), fast.stdout + fast.stderr
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, cwd=work, env=env, timeout=60)
    import re
    want = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert version.returncode == 0 and version.stdout.strip() == f"wscap, version {want}"
    sample = ROOT / "pcaps" / "sample-proxy.pcap"
    r = subprocess.run([str(exe), "analyze", str(sample)], capture_output=True, text=True, cwd=work, env=env,
                       timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "BROKEN origin-rejected at hop 1" in r.stdout and "BROKEN upstream-refused at hop 1" in r.stdout

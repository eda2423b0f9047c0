"""tshark is found the way pyshark finds it: PATH first on Linux, nothing when there is none."""
from __future__ import annotations

import os
import shutil
import stat

import pytest

from wscap.engine.decrypt import tshark_available
from wscap.engine.tshark_locate import tshark_path


def test_found_on_path(tmp_path, monkeypatch):
    fake = tmp_path / "tshark"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/nonexistent")
    assert tshark_path() == str(fake)
    assert tshark_available()


def test_none_without_tshark(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))   # an empty directory
    if os.path.exists("/Applications/Wireshark.app"):
        pytest.skip("macOS app bundle present")
    assert tshark_path() is None
    assert not tshark_available()


@pytest.mark.skipif(shutil.which("tshark") is None, reason="Debian's tshark is not installed")
def test_agrees_with_path_lookup():
    assert os.path.realpath(tshark_path() or "") == os.path.realpath(shutil.which("tshark") or "")

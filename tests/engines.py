"""Both engines on one capture: the tshark engine must tell the same story as the core (issue 14).

`engines_differ(path)` -> the differences test_engine_tshark.differences finds (empty when they agree),
or None when tshark/pyshark are not installed (the caller skips then).
"""
from __future__ import annotations

import importlib.util
import shutil


def available() -> bool:
    return shutil.which("tshark") is not None and importlib.util.find_spec("pyshark") is not None


def engines_differ(path: str, options=None) -> dict | None:
    if not available():
        return None
    from test_engine_tshark import differences
    from wscap.engine.analyze import analyze_paths as core
    from wscap.engine.tshark import analyze_paths as tsh
    return differences(core([path], options), tsh([path], options))

"""wscap: packet-level WebSocket handshake capture and hop-by-hop analyzer.

Public API: `analyze_paths()` for files, `Pipeline` for anything that yields
`RawFrame`s (live capture drives the same object).
"""
from __future__ import annotations

__version__ = "0.1.0"

from wscap.engine.analyze import analyze_paths  # noqa: E402
from wscap.model.raw import RawFrame  # noqa: E402
from wscap.engine.core import Decided, Options, Pipeline  # noqa: E402

__all__ = ["analyze_paths", "Pipeline", "Options", "Decided", "RawFrame", "__version__"]

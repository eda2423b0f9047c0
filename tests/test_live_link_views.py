"""Live chain ticks link on light views (Connection.link_document): for every leg of every bundled
capture, at every stage of its connection, that view must equal the one read from the full
handshake document — otherwise a live run could link (and judge) chains differently from the
offline analysis of the file it wrote."""
from __future__ import annotations

from pathlib import Path

import pytest

from wscap.document.codec import decode_link_view
from wscap.engine.core import Options, Pipeline
from wscap.wire.pcapio import CaptureReader

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = sorted(p for p in (ROOT / "pcaps").rglob("*") if p.suffix in (".pcap", ".pcapng"))


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(ROOT / "pcaps")))
def test_light_link_view_equals_the_documents(path: Path) -> None:
    reader = CaptureReader()
    frames = reader.feed(path.read_bytes())
    pipe = Pipeline(Options(stream=True))
    compared = 0
    for i, frame in enumerate(frames):
        pipe.feed(frame)
        if i % 3 == 0 or i == len(frames) - 1:
            for conn, ex in pipe._open:
                full = decode_link_view(conn.document(ex, pipe.now_ns))
                assert decode_link_view(conn.link_document(ex)) == full, (path.name, i, ex.id)
                compared += 1
            pipe.tick(frame.ts_ns)
    if any(b"Upgrade" in f.data or b"upgrade" in f.data for f in frames):
        assert compared, "a capture with an upgrade request had no open leg to compare"

"""Re-record the `healthy` lab scenario end to end in a temp dir.

Needs root (network namespaces, tcpdump), Debian's chromium and the lab's
node_modules (scripts/lab/install); skipped otherwise. About 6-10 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "scripts" / "lab"
sys.path.insert(0, str(LAB / "lib"))
import pcapcheck


def _why_not():
    if os.geteuid() != 0:
        return "needs root (network namespaces, tcpdump)"
    if not shutil.which("chromium"):
        return "needs Debian's chromium (scripts/lab/install)"
    if not (LAB / "node_modules" / "vite" / "bin" / "vite.js").exists():
        return "needs scripts/lab/node_modules (scripts/lab/install)"
    if not shutil.which("tcpdump") and not Path("/usr/bin/tcpdump").exists():
        return "needs tcpdump"
    return None


@pytest.mark.lab
@pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")
def test_rerecord_healthy(tmp_path):
    r = subprocess.run(
        [str(LAB / "run"), "--out", str(tmp_path), "healthy"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-4000:]
    pcap = tmp_path / "healthy.pcap"
    exp = json.loads((tmp_path / "healthy.expected.json").read_text())
    committed = json.loads((REPO / "pcaps" / "healthy.expected.json").read_text())

    # What the browser reported: the socket opened, the echo came back, clean close.
    b = exp["browser"]
    assert b["event"] == "open+message+close"
    assert b["close_code"] == 1000
    assert b["received"] == "echo: hello from wscap lab"
    assert exp["chains"] == committed["chains"]

    # The wire: a 101 on both legs (browser->vite, vite->backend), read without wscap...
    legs = pcapcheck.legs(pcap, "/ws")
    assert [(c.server[1], c.response_status()) for c in legs] == [
        (5173, 101),
        (5000, 101),
    ]
    # ...with tshark when it is there...
    if shutil.which("tshark"):
        t = subprocess.run(
            [
                "tshark",
                "-r",
                str(pcap),
                "-Y",
                "http.response.code == 101",
                "-T",
                "fields",
                "-e",
                "tcp.srcport",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            timeout=60,
            check=False,
        )
        assert sorted(set(t.stdout.split())) == ["5000", "5173"], t.stdout
    # ...and with wscap once its entry point exists.
    try:
        import wscap

        fn = getattr(wscap, "analyze_paths", None)
    except ImportError:
        fn = None
    if fn is not None:
        doc = fn([str(pcap)])
        ups = [h for h in doc["handshakes"] if h.get("status") == 101]
        assert len(ups) >= 2
        assert any(
            len(c["hops"]) == 2 and c["verdict"]["cause"] == "ok" for c in doc["chains"]
        )


@pytest.mark.lab
@pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")
@pytest.mark.skipif(not shutil.which("tshark"), reason="needs tshark (TLS recordings)")
def test_rerecord_tls_and_h2(tmp_path):
    """tls-healthy and h2-websocket end to end (about 15 s): Chromium writes its
    key log, the decrypted capture has a 101 on both legs, and Chromium still
    sends its WebSocket as an RFC 8441 extended CONNECT over h2."""
    r = subprocess.run(
        [str(LAB / "run"), "--out", str(tmp_path), "tls-healthy", "h2-websocket"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-4000:]
    for name, legs in (
        ("tls-healthy", [{"http": "1.1", "target": "/ws", "status": 101}] * 2),
        (
            "h2-websocket",
            [{"http": "2", "protocol": "websocket", "status": 200}],
        ),
    ):
        exp = json.loads((tmp_path / f"{name}.expected.json").read_text())
        assert exp["browser"]["received"] == "echo: hello from wscap lab"
        keys = tmp_path / exp["keylog"]
        assert keys.stat().st_size > 0
        dec = pcapcheck.decrypted_legs(
            tmp_path / f"{name}.pcap", "/ws", exp["transport"], keys
        )
        assert [{k: d[k] for k in want} for d, want in zip(dec, legs)] == legs
        assert len(dec) == len(legs)

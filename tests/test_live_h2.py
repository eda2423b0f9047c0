"""`wscap live` on a real RFC 8441 WebSocket: Node's http2 client and server (the lab's
h2c backend and client) on 127.0.0.1, captured live; the handshake and chain lines say HTTP/2.
Root, tcpdump, node and the lab's npm packages (scripts/lab/install) needed.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / "scripts" / "lab"
sys.path.insert(0, os.path.dirname(__file__))
from netns import wscap_argv  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root"),
    pytest.mark.skipif(not shutil.which("tcpdump") or not shutil.which("node"), reason="needs tcpdump and node"),
    pytest.mark.skipif(not (LAB / "node_modules" / "ws").exists(), reason="lab npm packages not installed "
                       "(scripts/lab/install)"),
    pytest.mark.live,
]
PORT = 18580


def test_live_sees_an_rfc8441_websocket(tmp_path):
    backend = subprocess.Popen(["node", str(LAB / "backends" / "h2-backend.mjs")], env={**os.environ, "PORT": str(PORT)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    live = subprocess.Popen(wscap_argv("live", "-i", "lo", "--port", str(PORT), "--format", "json", "--no-status",
                                       "--no-docker", "--timeout", "1", "--write", str(tmp_path / "h2.pcap")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = None
    try:
        time.sleep(2.0)
        client = subprocess.Popen(["node", str(LAB / "lib" / "h2client.mjs"), f"http://127.0.0.1:{PORT}/ws", "3"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline().strip() == "READY"
        client.stdin.write("go\n")
        client.stdin.flush()
        report = json.loads(client.stdout.read())
        client.wait(30)
        time.sleep(2.0)
    finally:
        live.send_signal(signal.SIGINT)
        out, err = live.communicate(timeout=60)
        os.killpg(backend.pid, signal.SIGTERM)
        backend.wait(10)
    assert report["page"]["received"], report                      # the client really got its echo
    lines = [json.loads(l) for l in out.splitlines() if l.strip()]
    [h] = [l["handshake"] for l in lines if l["type"] == "handshake"]
    assert h["http_version"] == "2" and h["h2"]["mode"] == "prior-knowledge" and h["outcome"] == "upgraded"
    assert h["h2"]["enable_connect_protocol"] is True and h["request"]["method"] == "CONNECT"
    [c] = [l["chain"] for l in lines if l["type"] == "chain"]
    assert c["verdict"]["cause"] == "ok", err
    # Live lines are sent when the handshake is decided, before its frames; the written capture has them.
    from wscap.engine.analyze import analyze_paths
    [again] = analyze_paths([str(tmp_path / "h2.pcap")])["handshakes"]
    assert report["page"]["received"] in [f["preview"] for f in again["frames"]]

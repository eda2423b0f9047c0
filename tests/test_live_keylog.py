"""`wscap live --write F --keylog K`: TLS captured live, decrypted when the capture ends.

A real TLS 1.3 upgrade (OpenSSL through Python's ssl, scripts/make_tls_sample.py) runs on
127.0.0.1 while `wscap live -i lo` captures it; client and server write the key log during the
exchange, as a browser does. Root, tcpdump and tshark needed.
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
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, os.path.dirname(__file__))
from netns import wscap_argv  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root"),
    pytest.mark.skipif(not shutil.which("tcpdump") or not shutil.which("tshark"), reason="needs tcpdump and tshark"),
    pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl for the throwaway certificate"),
    pytest.mark.live,
]

PORT = 18443


def _live(tmp_path, *extra: str) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / "live.pcap"
    proc = subprocess.Popen(wscap_argv("live", "-i", "lo", "--port", str(PORT), "--write", str(out),
                                       "--no-status", "--no-docker", *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)              # tcpdump is listening
    return proc, out


def test_live_capture_is_decrypted_when_it_ends(tmp_path):
    from make_tls_sample import tls_exchange
    keys = tmp_path / "keys.log"
    proc, out = _live(tmp_path, "--keylog", str(keys), "--format", "json")
    try:
        written = tls_exchange(str(tmp_path), PORT)
        assert Path(written) == keys
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    lines = [json.loads(l) for l in stdout.splitlines() if l.strip()]
    [tls_event] = [l["tls"] for l in lines if l["type"] == "tls"]          # said while capturing
    assert tls_event["sni"] == "localhost" and tls_event["server"].endswith(f":{PORT}")
    summary = next(l for l in lines if l["type"] == "summary")
    assert summary["summary"]["handshakes"] == 0                      # live saw only TLS ...
    assert [t["sni"] for t in summary["tls"]] == ["localhost"]         # ... and said so
    dec = next(l for l in lines if l["type"] == "decrypted")
    doc = dec["document"]
    [h] = doc["handshakes"]
    assert h["outcome"] == "upgraded" and h["request"]["target"] == "/ws" and h["tls"]["decrypted"]
    assert [f["preview"] for f in h["frames"] if f["opcode_name"] == "text"] == ["hello over tls",
                                                                                  "echo: hello over tls"]
    assert doc["source"][0]["path"] == str(out) and proc.returncode == 0, stderr


def test_keylog_without_write_is_a_usage_error(tmp_path):
    r = subprocess.run(wscap_argv("live", "-i", "lo", "--keylog", str(tmp_path / "k"), "--duration", "1"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--keylog needs --write" in r.stderr

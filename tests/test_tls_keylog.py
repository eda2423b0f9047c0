"""TLS where HTTP was expected, and --keylog decryption.

pcaps/tls-loopback.pcap is a real TLS 1.3 exchange (OpenSSL through Python's ssl, recorded by
scripts/make_tls_sample.py) with its key log. Frame numbers asserted here are found
independently: by reading the capture with scapy, or by asking tshark's own dissectors.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from scapy.all import TCP, rdpcap  # type: ignore[attr-defined]

from builders import Capture
from wscap.engine.analyze import analyze_paths
from wscap.engine.core import Options
from wscap.render.table import render_table
from wscap.wire.tls import parse_client_hello

REPO = Path(__file__).resolve().parent.parent
PCAP = REPO / "pcaps" / "tls-loopback.pcap"
KEYS = REPO / "pcaps" / "tls-loopback.keys"
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None,
                                  reason="tshark is not installed (scripts/test installs it)")


def client_hello_frame() -> tuple[int, bytes, list]:
    pkts = rdpcap(str(PCAP))
    for i, p in enumerate(pkts, 1):
        if TCP in p and bytes(p[TCP].payload)[:1] == b"\x16" and bytes(p[TCP].payload)[5:6] == b"\x01":
            return i, bytes(p[TCP].payload), pkts
    raise AssertionError("no ClientHello in the sample")


def test_tls_connection_is_named_not_silently_empty():
    frame, _, _ = client_hello_frame()
    doc = analyze_paths([str(PCAP)])
    assert doc["handshakes"] == [] and doc["chains"] == []
    [t] = doc["tls"]
    assert t["sni"] == "localhost" and t["alpn"] == ["http/1.1"] and "TLS 1.3" in t["versions"]
    assert t["hello_frame"] == frame and t["server"].endswith(":8443") and t["decrypted"] is False
    assert doc["summary"]["tls"] == {"connections": 1, "decrypted": 0}
    text = render_table(doc)
    assert "SNI localhost" in text and "--keylog" in text


@needs_tshark
def test_keylog_decrypts_and_the_core_reads_the_upgrade():
    out = subprocess.run(["tshark", "-r", str(PCAP), "-o", f"tls.keylog_file:{KEYS}", "-Y", "http.request",
                          "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, check=True)
    request_frame = int(out.stdout.split()[0])
    doc = analyze_paths([str(PCAP)], Options(keylog=str(KEYS)))
    [h] = doc["handshakes"]
    assert h["outcome"] == "upgraded" and h["request"]["frame"] == request_frame
    assert h["request"]["target"] == "/ws" and h["tls"]["decrypted"] and h["tls"]["sni"] == "localhost"
    assert [(f["dir"], f["opcode_name"], f["preview"], f["close_code"]) for f in h["frames"]] == [
        ("client", "text", "hello over tls", None), ("server", "text", "echo: hello over tls", None),
        ("client", "close", None, 1000), ("server", "close", None, 1000)]
    assert not [a for a in h["anomalies"] if a["severity"] == "error"]
    [t] = doc["tls"]
    assert t["decrypted"] and t["handshakes"] == [h["id"]]
    assert doc["source"][0]["keylog"] == {"path": str(KEYS), "decrypted": 1, "undecrypted": 0, "records_lost": 0,
                                          "withheld_frames": 0, "error": None}
    assert doc["chains"][0]["verdict"]["cause"] == "ok"


@needs_tshark
def test_key_log_without_this_connection_s_secrets(tmp_path):
    wrong = tmp_path / "other.keys"
    wrong.write_text("".join(line.split()[0] + " " + "00" * 32 + " " + line.split()[2] + "\n"
                             for line in KEYS.read_text().splitlines() if line and not line.startswith("#")))
    doc = analyze_paths([str(PCAP)], Options(keylog=str(wrong)))
    assert doc["handshakes"] == [] and doc["tls"][0]["decrypted"] is False
    assert doc["source"][0]["keylog"]["undecrypted"] == 1
    assert "key log had no secrets" in render_table(doc)


def test_cli_keylog_without_tshark_is_a_clear_usage_error(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "wscap", "analyze", str(PCAP), "--keylog", str(KEYS)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "--keylog needs tshark" in r.stderr


def _resegment(tmp_path, pieces: list[int] | None, cut: int | None = None) -> dict:
    _, hello, _ = client_hello_frame()
    cap = Capture()
    c = cap.conn(("10.0.0.1", 40000), ("10.0.0.2", 5173)).open()
    c.send(True, hello[:cut] if cut else hello, split=pieces)
    if cut is None:
        c.send(False, b"\x16\x03\x03\x00\x02\x02\x00")
        c.fin(True)
        c.fin(False)
    return analyze_paths([cap.write(tmp_path / "h.pcap")])


def test_client_hello_split_over_segments(tmp_path):
    doc = _resegment(tmp_path, [3, 7, 100, 300])
    [t] = doc["tls"]
    assert t["sni"] == "localhost" and t["complete"] and t["alpn"] == ["http/1.1"]
    assert doc["handshakes"] == [] and doc["chains"] == []     # a TLS connection is not a bare attempt


def test_client_hello_cut_by_the_end_of_the_capture(tmp_path):
    doc = _resegment(tmp_path, None, cut=60)
    [t] = doc["tls"]
    assert t["complete"] is False


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_client_hello_parser_never_raises(tail):
    h = parse_client_hello(b"\x16\x03\x01" + tail)
    assert h is None or isinstance(h.versions, list)


def _client_hello(sni: bytes, alpn: list[bytes]) -> bytes:
    """A minimal TLS 1.2-style ClientHello (RFC 8446 §4.1.2 layout) with SNI and ALPN."""
    name = b"\x00" + len(sni).to_bytes(2, "big") + sni
    ext_sni = (0).to_bytes(2, "big") + (len(name) + 2).to_bytes(2, "big") + len(name).to_bytes(2, "big") + name
    protos = b"".join(bytes([len(p)]) + p for p in alpn)
    ext_alpn = (16).to_bytes(2, "big") + (len(protos) + 2).to_bytes(2, "big") + len(protos).to_bytes(2, "big") + protos
    exts = ext_sni + ext_alpn
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + len(exts).to_bytes(2, "big") + exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


def test_hostile_sni_is_escaped_in_every_output(tmp_path):
    sni = b"evil|name</td><script>x</script>\x1b[31m`*_"
    cap = Capture()
    c = cap.conn(("10.0.0.1", 40000), ("10.0.0.2", 443)).open()
    c.send(True, _client_hello(sni, [b"h2", b"http/1.1"]))
    doc = analyze_paths([cap.write(tmp_path / "h.pcap")])
    [t] = doc["tls"]
    assert t["sni"] == sni.decode("latin-1") and t["alpn"] == ["h2", "http/1.1"]
    from wscap.render.html import render_html
    from wscap.render.markdown import render_markdown
    assert "\x1b" not in render_table(doc)
    md = render_markdown(doc)
    assert "\x1b" not in md and "evil" in md
    assert re.search(r"(?<!\\)<script", md) is None and re.search(r"(?<!\\)\|name", md) is None
    assert "<script>" not in render_html(doc) and "&lt;script&gt;" in render_html(doc)


@needs_tshark
def test_several_key_logs_are_merged(tmp_path):
    """The browser's and Vite's Node key logs, given as two --keylog files, open both legs."""
    pcap = REPO / "pcaps" / "tls-origin-rewrite.pcap"
    keys = (REPO / "pcaps" / "tls-origin-rewrite.keys").read_text().splitlines(keepends=True)
    lines = [l for l in keys if l.strip() and not l.startswith("#")]
    half = len(lines) // 2
    a, b = tmp_path / "browser.keys", tmp_path / "node.keys"
    a.write_text("".join(lines[:half]))
    b.write_text("".join(lines[half:]))
    argv = [sys.executable, "-m", "wscap", "analyze", str(pcap), "--format", "json"]
    one = json.loads(subprocess.run(argv + ["--keylog", str(a)], capture_output=True, text=True).stdout)
    both = json.loads(subprocess.run(argv + ["--keylog", str(a), "--keylog", str(b)], capture_output=True,
                                     text=True).stdout)
    assert both["summary"]["tls"] == {"connections": 2, "decrypted": 2}
    assert one["summary"]["tls"]["decrypted"] < 2
    assert both["source"][0]["keylog"]["path"] == f"{a}, {b}"
    assert [c["verdict"]["cause"] for c in both["chains"]] == ["origin-rejected"]


def test_chain_names_the_encrypted_leg_before_it(tmp_path):
    """Browser -TLS, no keys-> proxy -cleartext-> backend 403: the chain starts at the proxy and
    says that a TLS connection came into the proxy just before (the leg it cannot show)."""
    from builders import new_key, ws_request, ws_response
    _, hello, _ = client_hello_frame()
    cap = Capture()
    down = cap.conn(("10.88.0.1", 45000), ("10.88.0.10", 5173)).open()
    [hello_pkt] = down.send(True, hello)
    down.send(False, b"\x16\x03\x03\x00\x05\x02\x00\x00\x01\x00")
    other = cap.conn(("10.88.0.5", 45001), ("10.88.0.30", 443)).open()      # TLS to someone else
    other.send(True, hello)
    up = cap.conn(("10.88.0.10", 41000), ("10.88.0.20", 5000)).open()
    k = new_key(3)
    up.send(True, ws_request("/ws", host="meetsonar-backend:5000", key=k, lower=True))
    up.send(False, ws_response(k, status=403, reason="Forbidden"))
    doc = analyze_paths([cap.write(tmp_path / "front.pcap")])
    [c] = doc["chains"]
    assert c["encrypted_before"] == {"source": 0, "client": "10.88.0.1:45000", "server": "10.88.0.10:5173",
                                     "sni": "localhost", "hello_frame": cap.packets.index(hello_pkt) + 1}
    assert "Before hop 0: 10.88.0.1:45000" in render_table(doc)


@needs_tshark
def test_plaintext_over_the_memory_budget_becomes_gaps_not_silence(monkeypatch):
    import wscap.engine.decrypt as decrypt
    monkeypatch.setattr(decrypt, "MAX_PLAINTEXT", 300)     # the request head (~190 bytes) fits, the rest not
    doc = analyze_paths([str(PCAP)], Options(keylog=str(KEYS)))
    [h] = doc["handshakes"]
    kl = doc["source"][0]["keylog"]
    assert kl["withheld_frames"] > 0 and h["request"]["target"] == "/ws"
    assert h["tcp"]["gaps"] > 0 or any(a["code"] in ("tcp-gap", "truncated-packet") for a in h["anomalies"])


@needs_tshark
def test_a_record_that_does_not_open_is_a_gap(tmp_path):
    """Damage the ciphertext of the record carrying the 101: AEAD refuses it, the key log cannot
    open it, and wscap says so (records_lost, a tcp-gap) instead of splicing the stream."""
    from scapy.all import Raw, wrpcap  # type: ignore[attr-defined]
    out = subprocess.run(["tshark", "-r", str(PCAP), "-o", f"tls.keylog_file:{KEYS}", "-Y", "http.response",
                          "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, check=True)
    resp_frame = int(out.stdout.split()[0])
    pkts = rdpcap(str(PCAP))
    p = pkts[resp_frame - 1]
    data = bytearray(bytes(p[TCP].payload))
    data[-5] ^= 0xFF                                   # inside the AEAD tag
    p[TCP].remove_payload()
    p[TCP].add_payload(Raw(bytes(data)))
    del p[TCP].chksum
    bad = tmp_path / "damaged.pcap"
    wrpcap(str(bad), pkts)
    doc = analyze_paths([str(bad)], Options(keylog=str(KEYS)))
    assert doc["source"][0]["keylog"]["records_lost"] >= 1
    [h] = doc["handshakes"]
    assert h["response"] is None and h["outcome"] != "upgraded"
    assert any(a["code"] == "tcp-gap" for a in h["anomalies"])


@needs_tshark
def test_slice_of_a_decrypted_chain_keeps_the_encrypted_packets(tmp_path):
    pcap = REPO / "pcaps" / "tls-origin-rewrite.pcap"
    keys = REPO / "pcaps" / "tls-origin-rewrite.keys"
    out = tmp_path / "chain.pcap"
    r = subprocess.run([sys.executable, "-m", "wscap", "slice", str(pcap), "--chain", "1", "-o", str(out),
                        "--keylog", str(keys)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    whole = analyze_paths([str(pcap)], Options(keylog=str(keys)))
    part = analyze_paths([str(out)], Options(keylog=str(keys)))
    assert [c["verdict"]["cause"] for c in part["chains"]] == [c["verdict"]["cause"] for c in whole["chains"]]
    assert part["summary"]["tls"] == {"connections": 2, "decrypted": 2}
    assert analyze_paths([str(out)])["handshakes"] == []        # without the key log: still encrypted


@pytest.mark.skipif(shutil.which("editcap") is None or shutil.which("tshark") is None,
                    reason="editcap/tshark not installed (scripts/test installs them)")
def test_secrets_embedded_in_a_pcapng_decrypt_without_keylog(tmp_path):
    """`editcap --inject-secrets tls,KEYS` makes a self-contained capture (a Decryption Secrets
    Block); wscap decrypts it with no --keylog, as Wireshark does."""
    out = tmp_path / "with-secrets.pcapng"
    subprocess.run(["editcap", "--inject-secrets", f"tls,{KEYS}", str(PCAP), str(out)], check=True)
    doc = analyze_paths([str(out)])
    [h] = doc["handshakes"]
    assert h["outcome"] == "upgraded" and h["tls"]["decrypted"]
    assert doc["source"][0]["keylog"]["path"] == "secrets embedded in the pcapng"
    plain = tmp_path / "plain.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(PCAP), str(plain)], check=True)
    assert "keylog" not in analyze_paths([str(plain)])["source"][0]     # no secrets: tshark is not run

"""TCP keep-alive and zero-window probes are not retransmission conflicts (issue 14, part 3).

Wireshark's tcp.analysis labels them: a keep-alive is a segment of 0 or 1 byte at snd.nxt-1
(Windows sends the byte 0x00, which differs from the byte first sent there; RFC 9293 §3.8.4
allows any); a zero-window probe is 1 byte at snd.nxt sent while the receiver advertises a zero
window. Each capture below is a healthy session with probes in it: no conflict, exit 0.
"""
from __future__ import annotations

from scapy.all import TCP  # type: ignore[attr-defined]

import wscap
from builders import Capture, ws_frame, ws_response
from engines import analyse_checked as analyse
from wscap.cli.main import exit_code

CLIENT, SERVER = ("10.1.0.1", 51000), ("10.1.0.2", 8080)


def win(p, window: int):
    p[TCP].window = window
    return p


def codes(doc) -> dict[str, str]:
    return {a["code"]: a["severity"] for h in doc["handshakes"] for a in h["anomalies"]}


def finish_upgrade(c, key):
    c.send(False, ws_response(key))
    c.send(True, ws_frame(b"ping?", mask=True))
    c.send(False, ws_frame(b"pong!"))


def test_windows_keep_alive_while_waiting_for_the_101_is_not_a_conflict(tmp_path):
    cap = Capture()
    c, key, req = cap.upgrade(CLIENT, SERVER, 1)
    cap.wait(45.0)                                   # a slow backend; Windows probes after idle
    c._pkt(True, "A", b"\x00", seq=c.cseq - 1)      # 1 byte at snd.nxt-1, not the original '\n'
    c._pkt(False, "A")
    c._pkt(True, "A", b"", seq=c.cseq - 1)          # Linux's zero-length keep-alive
    finish_upgrade(c, key)
    doc = analyse(cap.write(tmp_path / "ka.pcap"))
    found = codes(doc)
    assert "retransmission-conflict" not in found
    assert found.get("tcp-keep-alive") == "info"
    h = doc["handshakes"][0]
    assert h["request"]["raw"].encode() == req                   # the request is intact
    assert h["outcome"] == "upgraded" and doc["chains"][0]["verdict"]["cause"] == "ok"
    assert exit_code(doc) == 0


def test_a_real_conflict_is_still_reported(tmp_path):
    """The probe rule is narrow: 2 different bytes retransmitted at the same offset still conflict."""
    cap = Capture()
    c, key, req = cap.upgrade(CLIENT, SERVER, 2)
    c._pkt(True, "PA", b"XX", seq=c.cseq - 4)
    finish_upgrade(c, key)
    doc = wscap.analyze_paths([cap.write(tmp_path / "conflict.pcap")])
    assert codes(doc).get("retransmission-conflict") == "error"


def test_zero_window_probe_with_a_byte_later_data_replaces(tmp_path):
    cap = Capture()
    c, key, req = cap.upgrade(CLIENT, SERVER, 3, sent=False)
    cut = 30
    c.send(True, req[:cut])
    win(c._pkt(False, "A"), 0)                       # the server's receive window is full
    win(c._pkt(True, "A", b"Z", seq=c.cseq), 8192)  # probe: 1 byte at snd.nxt into a zero window
    win(c._pkt(False, "A"), 0)                       # not accepted (ack unchanged, window still 0)
    cap.wait(0.2)
    win(c._pkt(False, "A"), 65535)                   # window opens
    c.send(True, req[cut:])                          # the real data from the probe's offset on
    finish_upgrade(c, key)
    # Both engines keep the data that superseded the probe (the tshark engine holds a segment tshark
    # labels tcp.analysis.zero_window_probe aside, as the core does).
    doc = analyse(cap.write(tmp_path / "zwp.pcap"))
    found = codes(doc)
    assert "retransmission-conflict" not in found
    assert found.get("tcp-zero-window-probe") == "info"
    h = doc["handshakes"][0]
    assert h["request"]["raw"].encode() == req
    assert exit_code(doc) == 0


def test_zero_window_probe_byte_that_was_taken_is_kept(tmp_path):
    cap = Capture()
    c, key, req = cap.upgrade(CLIENT, SERVER, 4, sent=False)
    cut = 30
    c.send(True, req[:cut])
    win(c._pkt(False, "A"), 0)
    c.send(True, req[cut:cut + 1])                   # the probe carries the real next byte ...
    win(c._pkt(False, "A"), 65535)                   # ... the receiver took it and opened its window
    c.send(True, req[cut + 1:])                      # data continues after the probe's byte
    finish_upgrade(c, key)
    doc = analyse(cap.write(tmp_path / "zwp2.pcap"))
    h = doc["handshakes"][0]
    assert h["request"]["raw"].encode() == req
    assert "retransmission-conflict" not in codes(doc) and "tcp-gap" not in codes(doc)
    assert exit_code(doc) == 0

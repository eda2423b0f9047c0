"""TCP reassembly as seen through the extracted handshakes: the truth is how the capture was built."""
from __future__ import annotations

from scapy.all import TCP, Raw  # type: ignore[attr-defined]

import wscap
from builders import Capture, accept_for, ws_frame, ws_request, ws_response

KEY = "x3JJHMbDL1EzLkh9GBhXDw=="
C, S = ("10.2.0.1", 43000), ("10.2.0.2", 9001)   # a port no dissector maps to HTTP


def run(tmp_path, cap: Capture, packets=None) -> dict:
    return wscap.analyze_paths([cap.write(tmp_path / "t.pcap", packets)])


def codes(h: dict) -> list[str]:
    return [a["code"] for a in h["anomalies"]]


def test_head_split_across_many_segments(tmp_path):
    cap = Capture()
    c = cap.conn(C, S).open()
    req = ws_request("/live", key=KEY)
    c.send(True, req, split=7)
    c.send(False, ws_response(KEY), split=5)
    doc = run(tmp_path, cap)
    h = doc["handshakes"][0]
    assert h["request"]["raw"].encode("latin-1") == req
    assert h["outcome"] == "upgraded"
    assert h["request"]["frame"] == 3 + -(-len(req) // 7)   # frame of the head's last byte
    assert "bad-accept" not in codes(h)


def test_reordered_segments(tmp_path):
    cap = Capture()
    c = cap.conn(C, S).open()
    segs = c.send(True, ws_request("/r", key=KEY), split=30)
    c.send(False, ws_response(KEY))
    pk = cap.packets
    i = pk.index(segs[0])
    pk[i], pk[i + 2] = pk[i + 2], pk[i]            # third segment first
    h = run(tmp_path, cap)["handshakes"][0]
    assert h["request"]["target"] == "/r" and h["outcome"] == "upgraded"
    assert "tcp-gap" not in codes(h)


def test_sequence_number_wraparound(tmp_path):
    cap = Capture()
    c = cap.conn(C, S, cseq=0xFFFFFFF0, sseq=0xFFFFFFFA).open()
    c.send(True, ws_request("/wrap", key=KEY), split=10)
    c.send(False, ws_response(KEY), split=10)
    h = run(tmp_path, cap)["handshakes"][0]
    assert h["request"]["target"] == "/wrap" and h["outcome"] == "upgraded"
    assert codes(h) == []


def test_retransmission_with_identical_bytes_is_silent(tmp_path):
    cap = Capture()
    c = cap.conn(C, S).open()
    segs = c.send(True, ws_request("/x", key=KEY), split=40)
    cap.packets.insert(cap.packets.index(segs[1]) + 1, segs[0].copy())
    c.send(False, ws_response(KEY))
    h = run(tmp_path, cap)["handshakes"][0]
    assert "retransmission-conflict" not in codes(h) and h["outcome"] == "upgraded"


def test_retransmission_with_conflicting_bytes_names_both_frames(tmp_path):
    cap = Capture()
    c = cap.conn(C, S).open()
    segs = c.send(True, ws_request("/x", key=KEY), split=40)
    evil = segs[0].copy()
    evil[Raw].load = b"POST" + evil[Raw].load[4:]
    evil.time = cap.t + 0.0001
    at = cap.packets.index(segs[1]) + 1
    cap.packets.insert(at, evil)
    c.send(False, ws_response(KEY))
    doc = run(tmp_path, cap)
    h = doc["handshakes"][0]
    assert h["request"]["method"] == "GET"                  # first copy kept
    conflict = [a for a in h["anomalies"] if a["code"] == "retransmission-conflict"]
    assert conflict and conflict[0]["frame"] == at + 1
    assert "frame 4 " in conflict[0]["message"]              # the original segment was frame 4


def test_overlapping_out_of_order_segments_that_differ(tmp_path):
    cap = Capture()
    c = cap.conn(C, S).open()
    req = ws_request("/ov", key=KEY)
    base = c.cseq
    p2 = c._pkt(True, "PA", req[50:], seq=base + 50)
    p2b = c._pkt(True, "PA", b"X" * 10 + req[60:], seq=base + 50)   # same offset, other bytes
    c._pkt(True, "PA", req[:50], seq=base)
    c.cseq += len(req)
    c.send(False, ws_response(KEY))
    h = run(tmp_path, cap)["handshakes"][0]
    assert [a for a in h["anomalies"] if a["code"] == "retransmission-conflict"]
    assert h["request"]["raw"].encode("latin-1") == req
    del p2, p2b


def test_capture_starting_mid_stream(tmp_path):
    cap = Capture()
    c = cap.conn(C, S).open()
    c.send(True, ws_request("/mid", key=KEY))
    c.send(False, ws_response(KEY))
    packets = cap.packets[3:]                     # no SYN, no SYN-ACK, no ACK
    h = run(tmp_path, cap, packets)["handshakes"][0]
    assert (h["client"], h["server"]) == ("10.2.0.1:43000", "10.2.0.2:9001")
    assert "mid-stream-start" in codes(h) and h["tcp"]["syn_frame"] is None
    assert h["outcome"] == "upgraded"


def test_lost_segment_is_a_reported_gap(tmp_path):
    cap = Capture()
    c = cap.conn(C, S).open()
    c.send(True, ws_request("/gap", key=KEY))
    c.send(False, ws_response(KEY))
    segs = [c.send(False, ws_frame(b"m%d" % i)) for i in range(4)]
    cap.packets.remove(segs[1][0])
    h = run(tmp_path, cap)["handshakes"][0]
    gaps = [a for a in h["anomalies"] if a["code"] == "tcp-gap"]
    assert gaps and "4 server bytes missing" in gaps[0]["message"]
    assert h["tcp"]["gaps"] == 1
    assert [f["preview"] for f in h["frames"] if f["dir"] == "server"] == ["m0"]


def test_fin_and_rst_with_who_and_when(tmp_path):
    cap = Capture()
    c = cap.conn(C, S).open()
    c.send(True, ws_request("/f", key=KEY))
    fin = c.fin(False)
    doc = run(tmp_path, cap)
    h = doc["handshakes"][0]
    assert h["outcome"] == "closed" and h["tcp"]["end"]["by"] == "server" and h["tcp"]["end"]["kind"] == "fin"
    assert h["tcp"]["end"]["frame"] == cap.packets.index(fin) + 1
    cap2 = Capture()
    c2 = cap2.conn(C, S).open()
    c2.send(True, ws_request("/r", key=KEY))
    c2.rst(True)
    h2 = run(tmp_path, cap2)["handshakes"][0]
    assert h2["outcome"] == "reset" and h2["tcp"]["end"]["by"] == "client"


def test_syn_answered_by_rst_and_unanswered_syn_as_missing_hops(tmp_path):
    """A proxy's upstream attempt that was refused / never answered is the chain's last hop."""
    cap = Capture()
    down = cap.conn(("172.18.0.1", 50000), ("172.18.0.2", 5173)).open()
    down.send(True, ws_request("/ws", key=KEY))
    up = cap.conn(("172.18.0.2", 40000), ("172.18.0.3", 5000))
    up._pkt(True, "S")
    up._pkt(False, "RA", seq=0)
    down.send(False, ws_response(KEY, status=502, reason="Bad Gateway"))
    cap.wait(5)
    down2 = cap.conn(("172.18.0.1", 50001), ("172.18.0.2", 5173)).open()
    down2.send(True, ws_request("/ws", key="AQIDBAUGBwgJCgsMDQ4PEA=="))
    up2 = cap.conn(("172.18.0.2", 40001), ("172.18.0.9", 5000))
    up2._pkt(True, "S")
    cap.wait(1)
    up2._pkt(True, "S")
    doc = run(tmp_path, cap)
    by = {(c["verdict"]["cause"], c["verdict"]["hop"]) for c in doc["chains"]}
    assert by == {("upstream-refused", 1), ("upstream-unreachable", 1)}
    refused = [h for h in doc["handshakes"] if h["outcome"] == "refused"][0]
    assert refused["request"] is None and refused["server"] == "172.18.0.3:5000"
    unans = [h for h in doc["handshakes"] if h["outcome"] == "unanswered"][0]
    assert unans["server"] == "172.18.0.9:5000"


def test_keep_alive_requests_then_upgrade(tmp_path):
    cap = Capture()
    c = cap.conn(C, S).open()
    body = b"x" * 300
    c.send(True, b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n")
    c.send(False, b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n" + body[:100])
    c.send(False, body[100:])
    c.send(True, b"POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
    c.send(False, b"HTTP/1.1 204 No Content\r\n\r\n")
    c.send(True, ws_request("/ws", key=KEY))
    c.send(False, ws_response(KEY) + ws_frame(b"welcome"))
    doc = run(tmp_path, cap)
    assert len(doc["handshakes"]) == 1
    h = doc["handshakes"][0]
    assert h["request"]["target"] == "/ws" and h["status"] == 101
    assert "keep-alive-before-upgrade" in codes(h) and "data-with-101" in codes(h)
    assert [f["preview"] for f in h["frames"]] == ["welcome"]
    assert dict(h["response"]["headers"])["Sec-WebSocket-Accept"] == accept_for(KEY)


def test_non_http_flows_are_ignored(tmp_path):
    cap = Capture()
    c = cap.conn(C, ("10.2.0.2", 443)).open()
    c.send(True, b"\x16\x03\x01\x02\x00" + b"\x00" * 200)
    c.send(False, b"\x16\x03\x03\x00\x40" + b"\x00" * 64)
    doc = run(tmp_path, cap)
    assert doc["handshakes"] == [] and doc["chains"] == []
    assert doc["stats"]["flows_tracked"] == 0


def test_tcp_checksums_are_not_checked(tmp_path):
    """Checksum offload leaves wrong checksums in captures (Zeek's docker trace): keep the packets."""
    cap = Capture()
    c = cap.conn(C, S).open()
    c.send(True, ws_request("/cs", key=KEY))
    c.send(False, ws_response(KEY))
    for p in cap.packets:
        p[TCP].chksum = 0xBEEF
    assert run(tmp_path, cap)["handshakes"][0]["outcome"] == "upgraded"

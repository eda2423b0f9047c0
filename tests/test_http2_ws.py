"""WebSockets over HTTP/2 (RFC 8441): extended CONNECT on h2c (prior knowledge and Upgrade: h2c).

Captures are built frame by frame from the spec (HPACK-encoded with the `hpack` package, the
encoder python-hyper's h2 uses), so every assertion is against what the spec put on the wire.
Recordings of real software (Node's http2 with enableConnectProtocol, Chromium over TLS) are
checked in tests/test_lab_recordings.py.
"""
from __future__ import annotations

import struct

import hpack
import pytest

from builders import Capture, accept_for, new_key, ws_frame, ws_request, ws_response
from wscap.engine.analyze import analyze_paths

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2frame(ftype: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def settings(**kw) -> bytes:
    ids = {"enable_connect_protocol": 8, "header_table_size": 1, "max_concurrent_streams": 3}
    return h2frame(4, 0, 0, b"".join(struct.pack("!HI", ids[k], v) for k, v in kw.items()))


def connect_headers(path="/ws", authority="localhost:8080", scheme="http", protocol="websocket", extra=()):
    hs = [(":method", "CONNECT"), (":protocol", protocol), (":scheme", scheme), (":path", path),
          (":authority", authority), ("sec-websocket-version", "13"), ("origin", "http://localhost:8080")]
    return [h for h in hs if h[1] is not None] + list(extra)


class H2Pair:
    """One HTTP/2 connection's two HPACK encoders."""

    def __init__(self) -> None:
        self.c, self.s = hpack.Encoder(), hpack.Encoder()

    def req(self, stream: int, headers, end_stream=False) -> bytes:
        return h2frame(1, 0x4 | (1 if end_stream else 0), stream, self.c.encode(headers))

    def resp(self, stream: int, status: int, extra=(), end_stream=False) -> bytes:
        return h2frame(1, 0x4 | (1 if end_stream else 0), stream, self.s.encode([(":status", str(status))] + list(extra)))


def h2_conn(cap: Capture, client=("10.0.0.1", 40000), server=("10.0.0.2", 8080), enable=True, status=200,
            split=None, reset=False, extra_req=(), extra_resp=()):
    pair = H2Pair()
    c = cap.conn(client, server).open()
    c.send(True, PREFACE + settings(), split=split)
    c.send(False, settings(enable_connect_protocol=1) if enable else settings(max_concurrent_streams=100))
    c.send(True, h2frame(4, 1, 0) + pair.req(1, connect_headers(extra=extra_req)), split=split)
    if reset:
        c.send(False, h2frame(4, 1, 0) + h2frame(3, 0, 1, (7).to_bytes(4, "big")))
        return c, pair
    c.send(False, h2frame(4, 1, 0) + pair.resp(1, status, extra_resp), split=split)
    if 200 <= status < 300:
        c.send(True, h2frame(0, 0, 1, ws_frame(b"hello h2", mask=True)), split=split)
        c.send(False, h2frame(0, 0, 1, ws_frame(b"echo: hello h2")), split=split)
        c.send(True, h2frame(0, 0, 1, ws_frame(b"\x03\xe8", opcode=8, mask=True)))
        c.send(False, h2frame(0, 1, 1, ws_frame(b"\x03\xe8", opcode=8)))
    return c, pair


def analyze(tmp_path, cap: Capture, name="c.pcap") -> dict:
    return analyze_paths([cap.write(tmp_path / name)])


def codes(h: dict) -> set[str]:
    return {a["code"] for a in h["anomalies"]}


def test_prior_knowledge_websocket(tmp_path):
    cap = Capture()
    h2_conn(cap)
    doc = analyze(tmp_path, cap)
    [h] = doc["handshakes"]
    assert h["http_version"] == "2" and h["websocket"] and h["outcome"] == "upgraded" and h["status"] == 200
    assert h["h2"]["stream_id"] == 1 and h["h2"]["mode"] == "prior-knowledge"
    assert h["h2"]["enable_connect_protocol"] is True
    req = h["request"]
    assert req["method"] == "CONNECT" and req["target"] == "/ws" and req["version"] == "HTTP/2"
    assert ["sec-websocket-version", "13"] in req["headers"] and [":protocol", "websocket"] in req["headers"]
    assert [(f["dir"], f["opcode_name"], f["preview"]) for f in h["frames"]] == [
        ("client", "text", "hello h2"), ("server", "text", "echo: hello h2"),
        ("client", "close", None), ("server", "close", None)]
    assert h["frames"][2]["close_code"] == 1000 and h["h2"]["end_stream"]["server"] is not None
    assert not [a for a in h["anomalies"] if a["severity"] == "error"], h["anomalies"]
    assert h["parsers"]["llhttp"]["request"] is None    # llhttp judges HTTP/1 bytes only
    [c] = doc["chains"]
    assert c["verdict"]["cause"] == "ok" and not c["verdict"]["broken"]


def test_connect_before_server_enabled_it(tmp_path):
    cap = Capture()
    h2_conn(cap, enable=False)
    [h] = analyze(tmp_path, cap)["handshakes"]
    assert h["h2"]["enable_connect_protocol"] is False
    assert "h2-connect-protocol-not-enabled" in codes(h)


def test_rejected_and_reset_streams(tmp_path):
    cap = Capture()
    h2_conn(cap, status=403)
    h2_conn(cap, client=("10.0.0.1", 40001), reset=True)
    doc = analyze(tmp_path, cap)
    rejected, reset = doc["handshakes"]
    assert rejected["outcome"] == "rejected" and rejected["status"] == 403 and not rejected["frames"]
    assert rejected["h2"]["end_stream"] == {"client": None, "server": None}   # this 403 left the stream open
    assert reset["outcome"] == "reset" and reset["h2"]["reset"] == {"by": "server", "code": "REFUSED_STREAM",
                                                                     "frame": reset["h2"]["reset"]["frame"]}
    assert "h2-stream-reset" in codes(reset)
    assert all(c["verdict"]["broken"] for c in doc["chains"]) and len(doc["chains"]) == 2


def test_malformed_extended_connect(tmp_path):
    cap = Capture()
    h2_conn(cap, extra_req=[("connection", "upgrade"), ("sec-websocket-key", new_key(1))],
            extra_resp=[("sec-websocket-accept", accept_for(new_key(1)))])
    [h] = analyze(tmp_path, cap)["handshakes"]
    assert {"h2-connection-header", "h2-key-header"} <= codes(h)


def test_byte_by_byte_segments_give_the_same_answer(tmp_path):
    whole, split = Capture(), Capture()
    h2_conn(whole)
    h2_conn(split, split=1)
    a = analyze(tmp_path, whole, "a.pcap")["handshakes"][0]
    b = analyze(tmp_path, split, "b.pcap")["handshakes"][0]
    for k in ("outcome", "status", "http_version", "websocket"):
        assert a[k] == b[k]
    assert a["request"]["headers"] == b["request"]["headers"]
    assert [f["preview"] for f in a["frames"]] == [f["preview"] for f in b["frames"]]


def test_end_stream_on_headers(tmp_path):
    cap = Capture()
    pair = H2Pair()
    c = cap.conn(("10.0.0.1", 40000), ("10.0.0.2", 8080)).open()
    c.send(True, PREFACE + settings())
    c.send(False, settings(enable_connect_protocol=1))
    c.send(True, pair.req(1, connect_headers()))
    [resp] = c.send(False, pair.resp(1, 403, end_stream=True))
    [h] = analyze(tmp_path, cap)["handshakes"]
    assert h["h2"]["end_stream"] == {"client": None, "server": len(cap.packets)}
    assert h["outcome"] == "rejected"


def test_several_streams_in_one_segment_and_hpack_state(tmp_path):
    """Two CONNECTs in one segment; the second reuses the first's dynamic-table entries."""
    cap = Capture()
    pair = H2Pair()
    c = cap.conn(("10.0.0.1", 40000), ("10.0.0.2", 8080)).open()
    c.send(True, PREFACE + settings())
    c.send(False, settings(enable_connect_protocol=1))
    c.send(True, pair.req(1, connect_headers("/a")) + pair.req(3, connect_headers("/b")))
    c.send(False, pair.resp(3, 200) + pair.resp(1, 404))
    doc = analyze(tmp_path, cap)
    got = {(h["request"]["target"], h["h2"]["stream_id"], h["status"]) for h in doc["handshakes"]}
    assert got == {("/a", 1, 404), ("/b", 3, 200)}


def test_hpack_garbage_is_an_anomaly_not_a_crash(tmp_path):
    cap = Capture()
    pair = H2Pair()
    c = cap.conn(("10.0.0.1", 40000), ("10.0.0.2", 8080)).open()
    c.send(True, PREFACE + settings())
    c.send(False, settings(enable_connect_protocol=1))
    c.send(True, pair.req(1, connect_headers()) + h2frame(1, 4, 3, b"\xff\xff\xff\xff\x7f"))
    [h] = analyze(tmp_path, cap)["handshakes"]
    assert "h2-hpack-error" in codes(h) and h["outcome"] == "no-response"


def h2c_upgrade_conn(cap: Capture, client=("10.0.0.1", 40000), end_stream: bool = False):
    """HTTP/1.1 `Upgrade: h2c` -> 101 -> the client's preface and an extended CONNECT on stream 3,
    answered 200, then one WebSocket frame "over h2c" from the server."""
    pair = H2Pair()
    c = cap.conn(client, ("10.0.0.2", 8080)).open()
    c.send(True, b"GET / HTTP/1.1\r\nHost: localhost:8080\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                 b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
    c.send(False, b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
           + settings(enable_connect_protocol=1) + pair.resp(1, 200, end_stream=True))
    c.send(True, PREFACE + settings() + pair.req(3, connect_headers()))
    c.send(False, pair.resp(3, 200))
    c.send(False, h2frame(0, 1 if end_stream else 0, 3, ws_frame(b"over h2c")))
    return c


def test_h2c_upgrade_then_extended_connect(tmp_path):
    cap = Capture()
    h2c_upgrade_conn(cap)
    doc = analyze(tmp_path, cap)
    up, ws = doc["handshakes"]
    assert not up["websocket"] and up["status"] == 101 and up["http_version"] == "1.1"
    assert "not-websocket-upgrade" in codes(up)
    assert ws["http_version"] == "2" and ws["h2"]["mode"] == "h2c-upgrade" and ws["h2"]["stream_id"] == 3
    assert ws["outcome"] == "upgraded" and [f["preview"] for f in ws["frames"]] == ["over h2c"]


@pytest.mark.parametrize("backend_status", [101, 403])
def test_h2_client_leg_linked_to_http1_backend_leg(tmp_path, backend_status):
    """Browser --h2 extended CONNECT--> proxy --HTTP/1.1 Upgrade--> backend (what Envoy does)."""
    cap = Capture()
    pair = H2Pair()
    down = cap.conn(("10.0.0.1", 40000), ("10.0.0.2", 8443)).open()
    down.send(True, PREFACE + settings())
    down.send(False, settings(enable_connect_protocol=1))
    down.send(True, pair.req(1, connect_headers(authority="localhost:8443")))
    up = cap.conn(("10.0.0.2", 51000), ("10.0.0.3", 5000)).open()
    key = new_key(7)
    up.send(True, ws_request("/ws", host="backend:5000", key=key, origin="http://localhost:8080"))
    if backend_status == 101:
        up.send(False, ws_response(key))
        down.send(False, pair.resp(1, 200))
    else:
        up.send(False, ws_response(key, status=403, reason="Forbidden"))
        down.send(False, pair.resp(1, 403))
    doc = analyze(tmp_path, cap)
    [c] = doc["chains"]
    assert len(c["hops"]) == 2 and c["links"][0]["by"] == "inferred"
    req_diff = next(d for d in c["diffs"] if d["direction"] == "request")
    translated = {ch["name"]: ch["class"] for ch in req_diff["changes"]}
    assert translated.get("sec-websocket-key") == "expected" and translated.get(":protocol") == "expected"
    if backend_status == 101:
        assert c["verdict"]["cause"] == "ok"
    else:
        assert c["verdict"]["broken"] and c["verdict"]["hop"] == 1


def test_server_settings_before_the_client_preface(tmp_path):
    """Over TLS an h2 server sends SETTINGS as soon as the handshake ends, often before the
    client's preface is on the wire (tests/test_lab_recordings.py: Chromium's h2-websocket)."""
    cap = Capture()
    pair = H2Pair()
    c = cap.conn(("10.0.0.1", 40000), ("10.0.0.2", 8080)).open()
    c.send(False, settings(enable_connect_protocol=1))
    c.send(True, PREFACE + settings() + pair.req(1, connect_headers()))
    c.send(False, pair.resp(1, 200))
    [h] = analyze(tmp_path, cap)["handshakes"]
    assert h["h2"]["enable_connect_protocol"] is True and "h2-connect-protocol-not-enabled" not in codes(h)


def test_renderers_take_the_authority_for_host(tmp_path):
    """HTTP/2 carries the host in :authority; CSV, HAR and --host filters must see it."""
    import csv
    import io
    from wscap.render.csv import render_csv
    from wscap.render.har import render_har
    from wscap.render.report import filter_document
    cap = Capture()
    h2_conn(cap)
    doc = analyze(tmp_path, cap)
    [row] = list(csv.DictReader(io.StringIO(render_csv(doc))))
    assert row["host"] == "localhost:8080" and row["method"] == "CONNECT"
    [entry] = render_har(doc)["log"]["entries"]
    assert entry["request"]["url"] == "ws://localhost:8080/ws" and entry["request"]["httpVersion"] == "HTTP/2"
    assert len(filter_document(doc, host="localhost*")["handshakes"]) == 1

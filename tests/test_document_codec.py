"""Codec: contract v1 dicts -> typed values -> the same dicts, on every recorded capture.

The documents come from analysing pcaps/*.pcap; decoding then encoding must give back each
handshake and chain exactly (same keys, same order, same values), since the codec is what
writes chains into the document and reads spooled handshakes back for judging.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import wscap
from wscap.document import codec
from wscap.engine.core import Options
from wscap.model.endpoint import Endpoint
from wscap.model.handshake import Outcome

ROOT = Path(__file__).resolve().parent.parent / "pcaps"
PCAPS = sorted(str(p) for p in ROOT.glob("*.pcap"))
HOSTILE = sorted(str(p) for p in (ROOT / "hostile").glob("*.pcap*"))


def _dump(d: object) -> str:
    return json.dumps(d, ensure_ascii=False, sort_keys=False)


@pytest.mark.parametrize("path", PCAPS, ids=lambda p: Path(p).stem)
def test_round_trip_of_recorded_documents(path):
    keys = Path(path).with_suffix(".keys")
    doc = wscap.analyze_paths([path], Options(keylog=str(keys)) if keys.exists() else None)
    assert doc["handshakes"], "every recorded capture holds at least one handshake"
    for h in doc["handshakes"]:
        typed = codec.decode_handshake(h)
        assert _dump(codec.encode_handshake(typed)) == _dump(h)
        assert typed.outcome is Outcome(h["outcome"])
        assert str(typed.client) == h["client"] and str(typed.server) == h["server"]
    for c in doc["chains"]:
        assert _dump(codec.encode_chain(codec.decode_chain(c))) == _dump(c)


@pytest.mark.parametrize("path", HOSTILE, ids=lambda p: Path(p).name)
def test_round_trip_of_hostile_documents(path):
    doc = wscap.analyze_paths([path])
    for h in doc["handshakes"]:
        assert _dump(codec.encode_handshake(codec.decode_handshake(h))) == _dump(h)
    for c in doc["chains"]:
        assert _dump(codec.encode_chain(codec.decode_chain(c))) == _dump(c)


def test_endpoint_parse_and_format():
    assert Endpoint.parse("172.18.0.2:5173") == Endpoint("172.18.0.2", 5173)
    assert Endpoint.parse("[fd00::1]:443") == Endpoint("fd00::1", 443)
    assert str(Endpoint("fd00::1", 443)) == "[fd00::1]:443"
    assert str(Endpoint("10.0.0.1", 80)) == "10.0.0.1:80"
    assert Endpoint.parse("nonsense") == Endpoint("nonsense", 0)      # no port: never raises


def test_times_are_exact_microseconds():
    # A capture's epoch time in the document has 6 decimals: ns is exact and the float comes back.
    for s in (1795416638.475012, 0.000229, 1700000000.0, 1795416638.999999):
        ns = codec.s_to_ns(s)
        assert ns % 1000 == 0
        assert codec.ns_to_s(ns) == s


def test_anomaly_side_and_head_are_typed_fields():
    """side/head travel as optional keys of the anomaly (never recovered from the message text)."""
    doc = {"code": "llhttp-rejects", "severity": "error", "frame": 4,
           "message": "Node's llhttp rejects the response: HPE_LF_EXPECTED", "head": "response"}
    c = codec.decode_anomaly(doc)
    assert (c.side, c.head, c.frame) == (None, "response", 4)
    assert codec.encode_anomaly(c) == doc
    # Without the keys nothing is guessed from the text.
    bare = {"code": "http-after-101", "severity": "error", "frame": 9,
            "message": "client sent HTTP after 101: 'GET / HTTP/1.1' where frames should be"}
    a = codec.decode_anomaly(bare)
    assert (a.side, a.head) == (None, None)
    assert codec.encode_anomaly(a) == bare


def test_frame_scanner_anomalies_say_who_sent_the_frames():
    from wscap.wire.wsframe import FrameScanner
    # An unmasked text frame "hi" from the client (RFC 6455 §5.3: clients must mask) and a masked
    # one from the server (§5.1: servers must not).
    client = FrameScanner("client", False)
    client.feed(b"\x81\x02hi", 5, 0)
    server = FrameScanner("server", False)
    server.feed(b"\x81\x82abcd" + bytes(x ^ k for x, k in zip(b"hi", b"ab")), 6, 0)
    assert [(a.code, a.side, a.frame) for a in client.anomalies] == [("client-frame-unmasked", "client", 5)]
    assert [(a.code, a.side, a.frame) for a in server.anomalies] == [("server-frame-masked", "server", 6)]
    assert codec.encode_anomaly(client.anomalies[0])["side"] == "client"


@pytest.mark.parametrize("name, found", [
    ("Sec-WebSocket-Key", True), ("SEC-WEBSOCKET-KEY", True), ("sec-websocket-key", True),
    ("Sec-WebSocket-\u212aey", True),        # KELVIN SIGN lower-cases to "k": str.lower() says it matches
    ("Sec-WebSocket-Ke\u0130", False),       # lower-cases to "i" + a combining dot (18 characters)
    ("Sec-WebSocket-Keys", False), ("Sec-WebSocket-Ke", False),
])
def test_the_link_views_key_is_found_by_its_lower_cased_name(name, found):
    doc = {"id": 1, "source": 0, "client": "10.0.0.1:5000", "server": "10.0.0.2:80", "first_frame": 1,
           "first_ts": 1.5, "outcome": "no-response", "response": None, "tcp": {"syn_frame": 1, "end": None},
           "request": {"headers": [["Host", "x"], [name, " k3y== "]], "frame": 2, "ts": 1.5, "target": "/"}}
    view = codec.decode_link_view(doc)
    assert view.request.headers == ((("Sec-WebSocket-Key", "k3y=="),) if found else ())


@pytest.mark.parametrize("path", PCAPS + HOSTILE, ids=lambda p: Path(p).name)
def test_handshakes_as_plain_values_come_back_equal(path):
    """engine/shards.py: the other half's legs cross by marshal as `handshake_values`; every
    handshake of every capture (its full form and its link view) must come back equal, and
    renumbered only where asked."""
    import marshal
    keys = Path(path).with_suffix(".keys")
    doc = wscap.analyze_paths([path], Options(keylog=str(keys)) if keys.exists() else None)
    for h in doc["handshakes"]:
        for typed in (codec.decode_handshake(h), codec.decode_link_view(h)):
            back = codec.handshake_from_values(marshal.loads(marshal.dumps(codec.handshake_values(typed))))
            assert back == typed
            assert [type(a.severity) for a in back.anomalies] == [type(a.severity) for a in typed.anomalies]
            assert back.outcome is typed.outcome
            assert codec.handshake_from_values(codec.handshake_values(typed), 99).id == 99
            assert codec.handshake_from_values(codec.handshake_values(typed), None).id is None

"""Head parsing, parser opinions, RFC 6455 §4 checks and frames — tiny byte fixtures."""
from __future__ import annotations

import pytest

import wscap
from builders import Capture, accept_for, ws_frame, ws_request, ws_response
from wscap.judge.checks import accept_key, check_request, check_response
from wscap.wire.http1 import parse_head
from wscap.wire.wsframe import FrameScanner


def codes_of(anoms) -> list[str]:
    return [a.code for a in anoms]


def test_rfc6455_sample_key_accept_vector():
    # RFC 6455 §1.3 worked example
    assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_bare_lf_head_reports_lines():
    h = parse_head(b"HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\n\n", "response", 7)
    a = [x for x in h.anomalies if x.code == "bare-lf"]
    assert a and "1, 2" in a[0].message and a[0].frame == 7
    assert h.status == 101 and h.get(b"upgrade") == b"websocket"


def test_headers_keep_order_case_duplicates():
    raw = (b"HTTP/1.1 101 Web Socket Protocol Handshake\r\nAccess-Control-Allow-Headers: a\r\n"
           b"access-control-allow-headers: b\r\nUPGRADE: WebSocket\r\n\r\n")
    h = parse_head(raw, "response")
    assert [(f.raw_name, f.value) for f in h.fields] == [
        (b"Access-Control-Allow-Headers", b"a"), (b"access-control-allow-headers", b"b"), (b"UPGRADE", b"WebSocket")]
    assert h.tokens(b"upgrade") == ["websocket"]
    assert h.reason == b"Web Socket Protocol Handshake"


@pytest.mark.parametrize("raw,code", [
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n  continued\r\n\r\n", "obs-fold"),
    (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "whitespace-before-colon"),
    (b"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", "invalid-header-name"),
    (b"GET / HTTP/1.1\r\nHost a\r\n\r\n", "malformed-header-line"),
    (b"GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n", "non-ascii-header"),
    (b"GET /\r\nHost: a\r\n\r\n", "malformed-start-line"),
])
def test_lenient_parse_records_anomalies(raw, code):
    h = parse_head(raw, "request")
    assert code in codes_of(h.anomalies)
    assert h.method == b"GET"


def test_missing_reason_phrase():
    h = parse_head(b"HTTP/1.1 101\r\nUpgrade: websocket\r\n\r\n", "response")
    assert h.status == 101 and "missing-reason-phrase" in codes_of(h.anomalies)


def req(**kw):
    return parse_head(ws_request(**kw), "request", 1)


def test_valid_request_has_no_findings():
    assert list(check_request(req())) == []


def test_connection_token_list_keep_alive_upgrade_is_valid():
    assert list(check_request(req(connection="keep-alive, Upgrade"))) == []


def test_all_request_findings_are_reported_not_just_the_first():
    r = parse_head(b"POST /ws HTTP/1.0\r\nUpgrade: h2c\r\nConnection: close\r\nSec-WebSocket-Key: abc\r\n"
                   b"Sec-WebSocket-Version: 8\r\n\r\n", "request")
    found = set(codes_of(check_request(r)))
    assert {"method-not-get", "http-1.0", "host-missing", "upgrade-missing", "connection-missing-upgrade",
            "key-invalid", "version-unsupported"} <= found


def test_response_checks():
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    r = req(key=key, protocol="chat, superchat", extra=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    ok = parse_head(ws_response(key, extra=[("Sec-WebSocket-Protocol", "chat"),
                                            ("Sec-WebSocket-Extensions", "permessage-deflate")]), "response")
    assert list(check_response(r, ok)) == []
    bad = parse_head(ws_response(key, accept="AAAA", extra=[("Sec-WebSocket-Protocol", "other"),
                                                            ("Sec-WebSocket-Extensions", "x-webkit"),
                                                            ("Content-Length", "0")]), "response")
    assert set(codes_of(check_response(r, bad))) == {"bad-accept", "subprotocol-not-offered",
                                                     "extension-not-offered", "body-on-101"}
    none = parse_head(ws_response(key), "response")
    # WHATWG: a browser (User-Agent Mozilla/...) fails an offer left unanswered; RFC 6455 §4.1 lets
    # other clients go on, so theirs is a warning.
    assert codes_of(check_response(r, none)) == ["subprotocol-declined"]
    browser = req(key=key, protocol="chat", extra=[("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/120")])
    assert codes_of(check_response(browser, none)) == ["subprotocol-not-echoed"]
    v426 = parse_head(b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13, 8\r\n\r\n", "response")
    found = list(check_response(req(), v426))
    assert codes_of(found) == ["version-rejected"] and "13, 8" in found[0].message


def scan(data: bytes, direction="server", deflate=False, chunks=1) -> FrameScanner:
    sc = FrameScanner(direction, deflate)
    step = max(1, len(data) // chunks)
    for i in range(0, len(data), step):
        sc.feed(data[i:i + step], 10 + i, 0)
    return sc


@pytest.mark.parametrize("chunks", [1, 3, 1000])
def test_frames_in_any_chunking(chunks):
    data = ws_frame(b"hello") + ws_frame(b"x" * 300, opcode=2) + ws_frame(b"\x03\xe8bye", opcode=8)
    sc = scan(data, chunks=chunks)
    assert [(f.opcode, f.length) for f in sc.frames] == [(1, 5), (2, 300), (8, 5)]
    assert sc.close is not None and sc.close.close_code == 1000 and sc.close.close_reason == "bye"
    assert sc.anomalies == []


def test_frame_rule_violations():
    data = (ws_frame(b"a", mask=True) + ws_frame(b"b", rsv1=True) + ws_frame(b"p" * 130, opcode=9)
            + ws_frame(b"q", opcode=9, fin=False) + ws_frame(b"\x03\xed", opcode=8))
    found = set(codes_of(scan(data).anomalies))
    assert found == {"server-frame-masked", "rsv1-without-extension", "control-frame-too-long",
                     "control-frame-fragmented", "invalid-close-code"}
    assert codes_of(scan(ws_frame(b"c"), direction="client").anomalies) == ["client-frame-unmasked"]
    assert codes_of(scan(bytes([0x83, 0x00])).anomalies) == ["reserved-opcode", "frames-desync"]


def test_permessage_deflate_preview_inflated_with_context_takeover():
    import zlib
    comp = zlib.compressobj(wbits=-15)
    msgs = []
    for text in (b"hello hello hello", b"hello again"):
        c = comp.compress(text) + comp.flush(zlib.Z_SYNC_FLUSH)
        assert c.endswith(b"\x00\x00\xff\xff")
        msgs.append(ws_frame(c[:-4], rsv1=True))
    sc = scan(b"".join(msgs), deflate=True)
    assert [f.preview for f in sc.frames] == ["hello hello hello", "hello again"]
    assert sc.anomalies == []


def test_http_text_after_101_is_flagged():
    sc = scan(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert codes_of(sc.anomalies) == ["http-after-101"] and sc.frames == []


def test_parser_opinions_split_node_and_strict(tmp_path):
    """A 101 with bare LF: what llhttp (Node/Vite) and h11 each say, as data on the handshake."""
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    cap = Capture()
    c = cap.conn(("10.3.0.1", 40000), ("10.3.0.2", 5000)).open()
    c.send(True, ws_request(key=key))
    c.send(False, ws_response(key, eol=b"\n"))
    h = wscap.analyze_paths([cap.write(tmp_path / "x.pcap")])["handshakes"][0]
    assert h["parsers"]["llhttp"]["response"]["accepts"] is False
    assert h["parsers"]["h11"]["response"]["accepts"] is True       # h11 silently accepts bare LF
    assert h["parsers"]["llhttp"]["request"]["accepts"] is True
    found = [a["code"] for a in h["anomalies"]]
    assert "bare-lf" in found and "llhttp-rejects" in found and "h11-rejects" not in found


def test_frames_in_same_segment_as_101_and_early_client_frames(tmp_path):
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    cap = Capture()
    c = cap.conn(("10.3.0.1", 40000), ("10.3.0.2", 5000)).open()
    c.send(True, ws_request(key=key) + ws_frame(b"early", mask=True))    # client frame before the 101
    c.send(False, ws_response(key) + ws_frame(b"0{\"sid\":1}"))
    h = wscap.analyze_paths([cap.write(tmp_path / "x.pcap")])["handshakes"][0]
    assert [(f["dir"], f["preview"]) for f in h["frames"]] == [("client", "early"), ("server", '0{"sid":1}')]
    assert any(a["code"] == "data-with-101" for a in h["anomalies"])


def test_response_before_request_complete(tmp_path):
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    cap = Capture()
    c = cap.conn(("10.3.0.1", 40000), ("10.3.0.2", 5000)).open()
    r = ws_request(key=key)
    c.send(True, r[:40])
    c.send(False, ws_response(key))
    c.send(True, r[40:])
    h = wscap.analyze_paths([cap.write(tmp_path / "x.pcap")])["handshakes"][0]
    assert h["status"] == 101 and "response-before-request" in [a["code"] for a in h["anomalies"]]
    assert dict(h["response"]["headers"])["Sec-WebSocket-Accept"] == accept_for(key)

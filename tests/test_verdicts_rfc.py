"""Verdicts a browser and RFC 6455 agree with (issue 14): every capture is built here, and the
expected cause, hop, `broken` and exit code follow from how it was built.

RFC 6455 §4.1, client side: the client fails the WebSocket connection when the 101 lacks
`Upgrade: websocket`, lacks the `upgrade` token in `Connection`, lacks a valid
Sec-WebSocket-Accept, or names an extension / subprotocol the client did not offer. The chain
verdict, the exit code and the anomalies must tell the same story, and name the hop that
*produced* the defective 101 (copies a proxy relays downstream are consequences).
"""
from __future__ import annotations

import pytest

from builders import Capture, accept_for, new_key, ws_frame, ws_request, ws_response
from engines import analyse_checked
from wscap.cli.main import exit_code

GW, VITE, BACK = "172.18.0.1", "172.18.0.2", "172.18.0.3"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def run(tmp_path, cap: Capture, known: set[str] = frozenset()) -> dict:
    """The capture's document, the tshark engine agreeing where installed (engines.analyse_checked)."""
    return analyse_checked(cap.write(tmp_path / "c.pcap"), known)


def the_verdict(doc) -> dict:
    assert len(doc["chains"]) == 1, doc["chains"]
    return doc["chains"][0]["verdict"]


def head(status_line: str, headers: list[tuple[str, str]]) -> bytes:
    return (status_line + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n").encode()


def response_101(key: str, drop: str | None = None, extra: list[tuple[str, str]] | None = None,
                 lower: bool = False) -> bytes:
    """A 101 built header by header, without the one named by `drop`."""
    hs = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept_for(key))]
    hs = [(n, v) for n, v in hs if n.lower() != drop] + (extra or [])
    if lower:
        hs = [(n.lower(), v) for n, v in hs]
    return head("HTTP/1.1 101 Switching Protocols", hs)


MISSING = {"upgrade": "response-upgrade-missing", "connection": "response-connection-missing",
           "sec-websocket-accept": "accept-missing"}


@pytest.mark.parametrize("drop", sorted(MISSING))
def test_direct_101_missing_a_required_header_is_invalid_101_at_hop_0(tmp_path, drop):
    cap = Capture()
    c, key, _ = cap.upgrade((GW, 50000), (BACK, 5000), 1, extra=[("User-Agent", CHROME)])
    c.send(False, response_101(key, drop=drop))
    doc = run(tmp_path, cap)
    v = the_verdict(doc)
    assert (v["cause"], v["hop"], v["broken"]) == ("invalid-101", 0, True)
    assert "fail" in v["summary"] and "RFC 6455 §4.1" in v["summary"]
    assert MISSING[drop] in {a["code"] for a in doc["handshakes"][0]["anomalies"]}
    assert exit_code(doc) == 1                      # verdict and exit code tell one story


def proxied(cap: Capture, key: str, backend_101: bytes, relayed_101: bytes) -> None:
    """Browser -> proxy -> backend; the proxy relays `relayed_101` after the backend's `backend_101`."""
    down = cap.conn((GW, 50001), (VITE, 5173)).open()
    down.send(True, ws_request("/ws", key=key, extra=[("User-Agent", CHROME)]))
    up = cap.conn((VITE, 40001), (BACK, 5000)).open()
    up.send(True, ws_request("/ws", host="meetsonar-backend:5000", key=key, lower=True,
                             extra=[("user-agent", CHROME)]))
    up.send(False, backend_101)
    down.send(False, relayed_101)


def test_backend_101_without_upgrade_relayed_by_proxy_blames_the_backend_hop(tmp_path):
    cap = Capture()
    key = new_key(2)
    # The backend forgets Upgrade; http-proxy re-serialises the 101 with the headers it got (lower case).
    proxied(cap, key, response_101(key, drop="upgrade"), response_101(key, drop="upgrade", lower=True))
    doc = run(tmp_path, cap)
    v = the_verdict(doc)
    assert (v["cause"], v["hop"], v["broken"]) == ("invalid-101", 1, True)
    assert f"{BACK}:5000" in v["summary"] and "consequence" in v["summary"]
    assert exit_code(doc) == 1


def test_proxy_that_strips_connection_from_a_valid_101_is_blamed(tmp_path):
    cap = Capture()
    key = new_key(3)
    proxied(cap, key, response_101(key), response_101(key, drop="connection", lower=True))
    v = the_verdict(run(tmp_path, cap))
    assert (v["cause"], v["hop"], v["broken"]) == ("invalid-101", 0, True)
    assert "removed" in v["summary"]


def test_extension_the_client_did_not_offer_fails_the_connection(tmp_path):
    cap = Capture()
    c, key, _ = cap.upgrade((GW, 50002), (BACK, 5000), 4, extra=[("User-Agent", CHROME)])
    c.send(False, response_101(key, extra=[("Sec-WebSocket-Extensions", "permessage-deflate")]))
    doc = run(tmp_path, cap)
    v = the_verdict(doc)
    assert (v["cause"], v["hop"], v["broken"]) == ("extension-mismatch", 0, True)
    assert "fails the connection" in v["summary"] and exit_code(doc) == 1


@pytest.mark.parametrize("ua,broken", [(CHROME, True), ("python-websockets/12.0", False), (None, False)])
def test_subprotocol_offered_but_not_echoed_depends_on_who_the_client_is(tmp_path, ua, broken):
    cap = Capture()
    c, key, _ = cap.upgrade((GW, 50003), (BACK, 5000), 5, protocol="chat",
                            extra=[("User-Agent", ua)] if ua else [])
    c.send(False, response_101(key))
    c.send(True, ws_frame(b"hi", mask=True))
    c.send(False, ws_frame(b"hi"))
    doc = run(tmp_path, cap)
    v = the_verdict(doc)
    codes = {a["code"]: a["severity"] for a in doc["handshakes"][0]["anomalies"]}
    if broken:      # WHATWG: a browser fails the connection
        assert (v["cause"], v["broken"]) == ("subprotocol-mismatch", True)
        assert codes == {"subprotocol-not-echoed": "error"} and exit_code(doc) == 1
    else:           # RFC 6455 §4.1: other clients may go on
        assert (v["cause"], v["broken"]) == ("ok", False)
        assert codes == {"subprotocol-declined": "warn"} and exit_code(doc) == 0
        assert "non-browser" in v["summary"]


def test_capture_that_ends_right_after_the_request_is_not_a_timeout(tmp_path):
    cap = Capture(step=0.0002)
    c, _, _ = cap.upgrade((GW, 50004), (BACK, 5000), 6)
    c._pkt(False, "A")                      # the server ACKs 0.2 ms later; then the capture ends
    doc = run(tmp_path, cap)
    v = the_verdict(doc)
    assert (v["cause"], v["hop"], v["broken"]) == ("unanswered-at-capture-end", 0, False)
    assert "0.0002 s" in v["summary"] and "not a timeout" in v["summary"]
    assert exit_code(doc) == 0


def test_unanswered_for_longer_than_timeout_is_a_timeout(tmp_path):
    cap = Capture()
    c, _, _ = cap.upgrade((GW, 50005), (BACK, 5000), 7)
    cap.wait(4.0)
    c._pkt(False, "A")                      # still no answer 4 s later (> --timeout 3 s)
    doc = run(tmp_path, cap)
    v = the_verdict(doc)
    assert (v["cause"], v["hop"], v["broken"]) == ("timeout", 0, True)
    assert "4.00" in v["summary"] and exit_code(doc) == 1


@pytest.mark.parametrize("client_gives_up", [False, True])
def test_proxy_that_neither_answers_nor_connects_upstream(tmp_path, client_gives_up):
    cap = Capture()
    key = new_key(8)
    # The proxy serves /ws (a healthy chain) ...
    down = cap.conn((GW, 50006), (VITE, 5173)).open()
    down.send(True, ws_request("/ws", key=key))
    up = cap.conn((VITE, 40006), (BACK, 5000)).open()
    up.send(True, ws_request("/ws", host="meetsonar-backend:5000", key=key, lower=True))
    up.send(False, ws_response(key))
    down.send(False, ws_response(key, lower=True))
    # ... but no proxy rule matches /other: no answer, no upstream connection, for 5 s.
    lost = cap.conn((GW, 50007), (VITE, 5173)).open()
    lost.send(True, ws_request("/other", key=new_key(9)))
    cap.wait(5.0)
    if client_gives_up:
        lost.fin(True)                      # the browser gives up after 5 s
    else:
        lost._pkt(False, "A")
    doc = run(tmp_path, cap)
    by_target = {}
    for ch in doc["chains"]:
        first = next(h for h in doc["handshakes"] if h["id"] == ch["hops"][0])
        by_target[first["request"]["target"]] = ch["verdict"]
    assert by_target["/ws"]["cause"] == "ok"
    v = by_target["/other"]
    assert (v["cause"], v["hop"], v["broken"]) == ("no-upstream-connection", 0, True)
    assert ("5" if client_gives_up else "5.00") in v["summary"] and "/other" in v["summary"]
    if client_gives_up:
        assert "gave up after 5" in v["summary"]


def test_malformed_request_accepted_by_the_server_is_a_warning_not_the_servers_fault(tmp_path):
    cap = Capture()
    key = new_key(10)
    c = cap.conn((GW, 50008), (BACK, 5000)).open()
    req = ws_request("/ws", key=key, extra=[("X-Folded", "a")]).replace(b"X-Folded: a\r\n",
                                                                        b"X-Folded: a\r\n  continued\r\n")
    c.send(True, req)
    c.send(False, response_101(key))
    c.send(True, ws_frame(b"x", mask=True))
    c.send(False, ws_frame(b"x"))
    # Both engines unfold it to "a continued" (RFC 9112 §5.2): the tshark engine feeds the core's parser.
    doc = run(tmp_path, cap)
    v = the_verdict(doc)
    assert (v["cause"], v["broken"]) == ("ok", False)
    assert "request" in v["summary"] and "accepted it anyway" in v["summary"]
    assert "malformed" not in v["summary"].lower()
    sev = {a["code"]: a["severity"] for a in doc["handshakes"][0]["anomalies"]}
    assert sev["obs-fold"] == "warn" and all(s != "error" for s in sev.values()), sev
    assert exit_code(doc) == 0


def test_malformed_request_refused_by_the_server_blames_the_request(tmp_path):
    cap = Capture()
    c, key, _ = cap.upgrade((GW, 50009), (BACK, 5000), 11, eol=b"\n")      # bare LF request
    c.send(False, ws_response(key, status=400, reason="Bad Request"))
    doc = run(tmp_path, cap)
    v = the_verdict(doc)
    assert (v["cause"], v["hop"], v["broken"]) == ("malformed-request", 0, True)
    assert GW in v["summary"] and "101" not in v["summary"]


def test_client_sending_http_after_101_is_named(tmp_path):
    cap = Capture()
    c, key, _ = cap.upgrade((GW, 50010), (BACK, 5000), 12)
    c.send(False, ws_response(key))
    c.send(True, b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
    c.send(False, ws_frame(b"\x03\xea", opcode=8))                # the server closes 1002
    doc = run(tmp_path, cap)
    h = doc["handshakes"][0]
    codes = [a["code"] for a in h["anomalies"]]
    assert "http-after-101" in codes
    assert "reserved-opcode" not in codes and "client-frame-unmasked" not in codes
    assert not [f for f in h["frames"] if f["dir"] == "client"]   # no garbage frame summarised
    v = the_verdict(doc)
    assert (v["cause"], v["hop"], v["broken"]) == ("client-http-after-101", 0, True)
    assert "GET /api/status" in v["summary"]


def test_backend_101_without_upgrade_that_the_proxy_answers_with_502_blames_the_backend(tmp_path):
    """Node's HTTP client takes a 101 without Upgrade as a plain response, not an upgrade: a proxy
    may then answer the client with something else. The invalid 101 is the cause, at the backend."""
    cap = Capture()
    key = new_key(13)
    proxied(cap, key, response_101(key, drop="upgrade"),
            head("HTTP/1.1 502 Bad Gateway", [("Content-Length", "0"), ("Connection", "close")]))
    v = the_verdict(run(tmp_path, cap))
    assert (v["cause"], v["hop"], v["broken"]) == ("invalid-101", 1, True)
    assert "502 Bad Gateway" in v["summary"]


def test_short_wait_upstream_is_still_a_failure_when_the_client_already_got_a_504(tmp_path):
    """The deepest leg waited less than --timeout, but the proxy already answered the client 504:
    a failure was seen, so it is a timeout at the backend hop, not 'unanswered at capture end'."""
    cap = Capture()
    key = new_key(14)
    down = cap.conn((GW, 50011), (VITE, 5173)).open()
    down.send(True, ws_request("/ws", key=key))
    up = cap.conn((VITE, 40011), (BACK, 5000)).open()
    up.send(True, ws_request("/ws", host="meetsonar-backend:5000", key=key, lower=True))
    cap.wait(1.0)
    down.send(False, head("HTTP/1.1 504 Gateway Timeout", [("Content-Length", "0"), ("Connection", "close")]))
    down.fin(False)
    v = the_verdict(run(tmp_path, cap))
    assert (v["cause"], v["hop"], v["broken"]) == ("timeout", 1, True)


@pytest.mark.parametrize("status", [101, 400])
def test_request_grammar_error_is_a_warning_when_accepted_and_the_cause_when_refused(tmp_path, status):
    cap = Capture()
    key = new_key(15)
    c = cap.conn((GW, 50012), (BACK, 5000)).open()
    c.send(True, ws_request("/ws", key=key, extra=[("X-Debug", "1")]).replace(b"X-Debug: 1", b"X-Debug : 1"))
    c.send(False, response_101(key) if status == 101 else ws_response(key, status=400, reason="Bad Request"))
    doc = run(tmp_path, cap)
    v = the_verdict(doc)
    sev = {a["code"]: a["severity"] for a in doc["handshakes"][0]["anomalies"]}
    if status == 101:     # the server accepted it: a warning, the chain is ok, exit 0
        assert sev["whitespace-before-colon"] == "warn"
        assert (v["cause"], v["broken"]) == ("ok", False) and exit_code(doc) == 0
    else:                 # refused: the request's bytes are the cause, at the client's leg
        assert sev["whitespace-before-colon"] == "error"
        assert (v["cause"], v["hop"], v["broken"]) == ("malformed-request", 0, True) and exit_code(doc) == 1


def test_server_sending_http_after_its_101_is_the_servers_fault(tmp_path):
    """Bun's handler-returned 101 (oven-sh/bun#35972): HTTP text where the server's frames belong."""
    cap = Capture()
    c, key, _ = cap.upgrade((GW, 50013), (BACK, 5000), 16)
    c.send(False, response_101(key))
    c.send(False, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    doc = run(tmp_path, cap)
    codes = [a["code"] for a in doc["handshakes"][0]["anomalies"]]
    assert "http-after-101" in codes and "reserved-opcode" not in codes
    v = the_verdict(doc)
    assert (v["cause"], v["hop"], v["broken"]) == ("malformed-response", 0, True)
    assert "HTTP/1.1 200 OK" in v["summary"]

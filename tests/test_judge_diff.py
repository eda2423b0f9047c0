"""Header diffs at a hop boundary (wscap.judge.diff): typed legs in, HeaderDiff values out."""
from __future__ import annotations

from dataclasses import replace

from typed_legs import leg, request, response

from wscap.judge.diff import diff_boundary, diff_headers
from wscap.model.handshake import Outcome

C, P, B, P_OUT = "172.18.0.1:50000", "172.18.0.2:5173", "172.18.0.3:5000", "172.18.0.2:40000"


def _by_name(changes):
    return {c.name: c for c in changes}


def test_relayed_request_lower_cased_and_host_rewritten_is_expected():
    before = [["Host", "localhost:5173"], ["Upgrade", "websocket"], ["Connection", "Upgrade"]]
    after = [["host", "backend:5000"], ["upgrade", "websocket"], ["connection", "upgrade"]]
    ch = _by_name(diff_headers("request", before, after))
    assert (ch["host"].kind, ch["host"].klass, ch["host"].before, ch["host"].after) == \
        ("changed", "expected", "localhost:5173", "backend:5000")
    # same tokens, other case: Connection's value is compared as a case-insensitive token set
    assert ch["connection"].kind == "case-changed" and ch["connection"].klass == "expected"
    assert ch["upgrade"].kind == "case-changed"
    assert "*" not in ch                      # same order of names


def test_dropped_upgrade_and_connection_token_are_breaking():
    before = [["Upgrade", "websocket"], ["Connection", "Upgrade"], ["Origin", "http://a"]]
    after = [["Connection", "close"], ["Origin", "http://b"]]
    ch = _by_name(diff_headers("request", before, after))
    assert (ch["upgrade"].kind, ch["upgrade"].klass) == ("removed", "breaking")
    assert (ch["connection"].kind, ch["connection"].klass) == ("changed", "breaking")
    assert (ch["origin"].before, ch["origin"].after, ch["origin"].klass) == ("http://a", "http://b", "breaking")


def test_reordered_names_are_listed_once():
    ch = diff_headers("request", [["A", "1"], ["B", "2"]], [["B", "2"], ["A", "1"]])
    assert [(c.kind, c.name, c.before, c.after) for c in ch] == [("reordered", "*", "a, b", "b, a")]


def test_boundary_diffs_status_and_target_rewrite():
    down = leg(1, C, P, 1, 0, request(4, 0.0, target="/ws"), response(9, 5.0, status=502, reason="Bad Gateway"))
    up = leg(2, P_OUT, B, 5, 1, request(6, 1.0, target="/app/ws"), response(8, 4.0, status=403, reason="Forbidden"))
    req_diff, resp_diff = diff_boundary(0, down, up)
    assert (req_diff.direction, req_diff.from_hop, req_diff.to_hop) == ("request", 0, 1)
    target = req_diff.changes[0]
    assert (target.name, target.before, target.after, target.klass) == (":target", "/ws", "/app/ws", "expected")
    assert (resp_diff.direction, resp_diff.from_hop, resp_diff.to_hop) == ("response", 1, 0)
    assert resp_diff.status_change is not None
    assert (resp_diff.status_change.before, resp_diff.status_change.after) == ("403", "502")
    assert resp_diff.changes[0].name == ":status" and resp_diff.changes[0].klass == "breaking"


def test_http2_to_http1_translation_is_expected():
    # Over HTTP/2 a 2xx to the extended CONNECT is the upgrade (RFC 8441 §5).
    down = replace(leg(1, C, P, 1, 0, request(4, 0.0), response(9, 5.0, status=200, reason=""),
                       outcome=Outcome.UPGRADED), http_version="2")
    up = leg(2, P_OUT, B, 5, 1, request(6, 1.0), response(8, 4.0))
    diffs = diff_boundary(0, down, up)
    resp = [d for d in diffs if d.direction == "response"][0]
    assert resp.status_change is None                 # 200 over h2 is the 101 over h1 (RFC 8441)
    status = _by_name(resp.changes)[":status"]
    assert status.klass == "expected" and "translation" in status.why

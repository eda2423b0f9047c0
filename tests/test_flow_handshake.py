"""wscap.flow.handshake on its own: exchanges + connection facts in, outcome and document out.

The heads come from tests/builders.py through the session (bytes in), the TCP
facts are written here; every expected value follows from those inputs.
"""
from __future__ import annotations

import dataclasses

from builders import accept_for, ws_request, ws_response
from wscap.flow.connection import Connection
from wscap.flow.handshake import ConnFacts, Exchange, TcpFacts, fmt_endpoint, h2_outcome, outcome
from wscap.flow.session import Session
from wscap.flow.tcp import TcpEnd
from wscap.model.events import C2S, S2C
from wscap.model.limits import Limits
from wscap.wire.http1 import parse_head

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
NO_END = TcpFacts(syn_frame=1, synack_frame=2, end=None, gaps=0, client_bytes=0, server_bytes=0)


def tcp(synack: int | None = 2, end: tuple[str, str] | None = None) -> TcpFacts:
    e = TcpEnd(end[0], end[1], 9, 9_000_000_000) if end else None
    return TcpFacts(syn_frame=1, synack_frame=synack, end=e, gaps=0, client_bytes=0, server_bytes=0)


def heads(status: int | None) -> tuple:
    req = parse_head(ws_request(key=KEY), "request", 4)
    resp = parse_head(ws_response(key=KEY, status=status), "response", 6) if status is not None else None
    return req, resp


def test_outcome_of_a_bare_attempt_is_read_from_tcp_alone() -> None:
    assert outcome(None, None, tcp(synack=None, end=("rst", "server"))) == "refused"
    assert outcome(None, None, tcp(synack=None)) == "unanswered"
    assert outcome(None, None, tcp(synack=None, end=("rst", "client"))) == "unanswered"
    assert outcome(None, None, tcp(end=("fin", "client"))) == "closed"
    assert outcome(None, None, tcp(end=("rst", "server"))) == "reset"


def test_outcome_of_an_upgrade_request() -> None:
    assert outcome(*heads(101), tcp()) == "upgraded"
    assert outcome(*heads(403), tcp()) == "rejected"
    assert outcome(*heads(None), tcp()) == "no-response"
    assert outcome(*heads(None), tcp(end=("rst", "server"))) == "reset"
    assert outcome(*heads(None), tcp(end=("fin", "server"))) == "closed"
    req, resp = heads(101)
    resp.complete = False                                 # a 101 cut short is no upgrade
    assert outcome(req, resp, tcp(end=("fin", "server"))) == "closed"


def test_h2_outcome() -> None:
    class Head:                                           # only .status is read
        def __init__(self, status: int) -> None:
            self.status = status

    assert h2_outcome(Head(200), False, NO_END) == "upgraded"      # type: ignore[arg-type]
    assert h2_outcome(Head(404), False, NO_END) == "rejected"      # type: ignore[arg-type]
    assert h2_outcome(None, True, NO_END) == "reset"
    assert h2_outcome(None, False, tcp(end=("fin", "client"))) == "closed"
    assert h2_outcome(None, False, NO_END) == "no-response"


def test_decided_by_answer_end_or_timeout() -> None:
    req, resp = heads(101)
    req.ts_ns = 1_000
    assert Exchange(req, resp).decided(None, 10, ended=False)
    waiting = Exchange(req)
    assert waiting.decided(None, 10, ended=True)
    assert not waiting.decided(1_009, 10, ended=False) and waiting.decided(1_010, 10, ended=False)
    attempt = Exchange(None, start_ns=500)
    assert attempt.ts_ns == 500 and attempt.decided(510, 10, ended=False)


def test_an_exchange_holds_no_reference_to_its_connection() -> None:
    fields = dataclasses.fields(Exchange)
    names = {f.name for f in fields if not f.name.startswith("_")}     # _memo*: cached head checks
    assert names == {"request", "response", "anomalies", "client_frames", "server_frames", "id", "emitted",
                     "start_ns"}
    assert not any("Connection" in str(f.type) for f in fields)


def test_document_from_session_bytes_and_connection_facts() -> None:
    s = Session(Limits())
    req, resp = ws_request(key=KEY), ws_response(key=KEY)
    s.on_data(C2S, req, 4, 4_000_000_000)
    s.on_data(S2C, resp, 6, 6_000_000_000)
    [ex] = s.exchanges
    ex.id = 7
    facts = ConnFacts(source=0, client=fmt_endpoint(b"\x0a\x00\x00\x01", 40000),
                      server=fmt_endpoint(b"\x0a\x00\x00\x02", 8080), first_frame=1, last_frame=6,
                      first_ts=1_000_000_000, last_ts=6_000_000_000,
                      tcp=TcpFacts(1, 2, None, 0, len(req), len(resp)), anomalies=(), tls=None, tunnel=None)
    doc = ex.to_json(facts)
    assert (doc["id"], doc["client"], doc["server"]) == (7, "10.0.0.1:40000", "10.0.0.2:8080")
    assert doc["outcome"] == "upgraded" and doc["status"] == 101 and doc["websocket"] is True
    assert doc["tcp"] == {"syn_frame": 1, "synack_frame": 2, "end": None, "gaps": 0,
                          "client_bytes": len(req), "server_bytes": len(resp)}
    assert doc["request"]["frame"] == 4 and doc["response"]["frame"] == 6
    assert doc["first_ts"] == 1.0 and doc["last_ts"] == 6.0 and doc["waited"] is None
    assert doc["anomalies"] == []                         # a clean handshake (builders write RFC 6455 heads)
    assert doc["http_version"] == "1.1" and doc["h2"] is None
    assert ws_response(key=KEY).count(accept_for(KEY).encode()) == 1


def test_connection_document_reads_its_tcp_flow_through_the_tshark_entry() -> None:
    """The entry the tshark engine uses (../shared/SESSION_API.md): bytes in, facts set, document out."""
    c = Connection((b"\x0a\x00\x00\x01", 40000), (b"\x0a\x00\x00\x02", 8080), 0, 1, 1_000_000_000, Limits())
    c.tcp.syn_frame, c.tcp.synack_frame = 1, 2
    req = ws_request(key=KEY)
    c.on_data(C2S, req, 4, 4_000_000_000)
    [ex] = c.exchanges
    assert c.tcp.note_end("rst", "server", 5, 5_000_000_000)        # no more bytes after a RST
    c.touch(5, 5_000_000_000)
    doc = c.document(ex, 5_500_000_000)
    assert doc["outcome"] == "reset"
    assert doc["tcp"]["end"] == {"kind": "rst", "by": "server", "frame": 5, "ts": 5.0}
    assert doc["tcp"]["client_bytes"] == len(req) and doc["tcp"]["server_bytes"] == 0
    assert doc["waited"] == 1.5 and doc["last_frame"] == 5

"""One upgrade attempt -> its handshake document; outcome and parser opinions as pure functions.

An `Exchange` is what the session builds for one upgrade attempt (an HTTP/1
Upgrade request, an HTTP/2 extended CONNECT, or a bare connection attempt with
no request at all). It holds no reference to its live connection: what the
document says about the connection (endpoints, TCP lifecycle, connection-level
anomalies, TLS) comes in as a frozen `ConnFacts`, taken by the owner when it
writes the document. `to_json` output is the JSON contract (v1) and must stay
byte-identical.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence, cast

from wscap.flow.tcp import TcpEnd
from wscap.judge import checks as hs
from wscap.model.anomaly import Anomaly, Severity, make
from wscap.model.events import C2S, S2C
from wscap.wire import opinions
from wscap.wire.http1 import HttpHead
from wscap.wire.http2 import H2Head, check_connect_response, check_extended_connect, error_name
from wscap.wire.wsframe import FrameScanner


def fmt_endpoint(ip: bytes, port: int) -> str:
    if len(ip) == 4:
        return f"{ip[0]}.{ip[1]}.{ip[2]}.{ip[3]}:{port}"
    import ipaddress
    return f"[{ipaddress.IPv6Address(ip)}]:{port}"


@dataclass(frozen=True, slots=True)
class TcpFacts:
    """The TCP side of a connection, as the document and the outcome read it."""

    syn_frame: int | None
    synack_frame: int | None
    end: TcpEnd | None
    gaps: int
    client_bytes: int
    server_bytes: int

    def to_json(self) -> dict:
        return {"syn_frame": self.syn_frame, "synack_frame": self.synack_frame,
                "end": self.end.to_json() if self.end else None, "gaps": self.gaps,
                "client_bytes": self.client_bytes, "server_bytes": self.server_bytes}


@dataclass(frozen=True, slots=True)
class ConnFacts:
    """A connection as its handshakes' documents describe it, at one moment."""

    source: int
    client: str                      # "ip:port" as the document writes it
    server: str
    first_frame: int
    last_frame: int
    first_ts: int                    # ns
    last_ts: int
    tcp: TcpFacts
    anomalies: tuple[Anomaly, ...]   # connection-level (tcp-gap, h2-goaway, ...), then the suppressed counts
    tls: dict | None
    tunnel: list[dict] | None


def outcome(request: HttpHead | None, response: HttpHead | None, tcp: TcpFacts) -> str:
    """An HTTP/1 upgrade's (or a bare attempt's, `request` None) outcome."""
    end = tcp.end
    if request is None:
        if tcp.synack_frame is None:
            return "refused" if end is not None and end.kind == "rst" and end.by == "server" else "unanswered"
        return "reset" if end is not None and end.kind == "rst" else "closed"
    if response is not None and response.status is not None and response.complete:
        return "upgraded" if response.status == 101 else "rejected"
    if end is not None:
        return "reset" if end.kind == "rst" else "closed"
    return "no-response"


def h2_outcome(response: H2Head | None, reset: bool, tcp: TcpFacts) -> str:
    """An RFC 8441 stream's outcome: any 2xx upgrades; `reset`: a RST_STREAM ended it."""
    st = response.status if response is not None else None
    if st is not None:
        return "upgraded" if 200 <= st < 300 else "rejected"
    if reset:
        return "reset"
    if tcp.end is not None:
        return "reset" if tcp.end.kind == "rst" else "closed"
    return "no-response"


@dataclass(slots=True)
class Exchange:
    """One upgrade attempt on a connection; becomes a Handshake in the output."""

    request: HttpHead | None
    response: HttpHead | None = None
    anomalies: list[Anomaly] = field(default_factory=list)
    client_frames: FrameScanner | None = None
    server_frames: FrameScanner | None = None
    id: int | None = None
    emitted: bool = False
    start_ns: int = 0          # when a bare attempt (no request) began: its connection's first packet
    # Memo of _request_checks and _head_checks: live mode renders an exchange several times (when
    # decided, in chain ticks, when spooled) and these checks were most of the cost.
    _memo: tuple | None = field(default=None, repr=False, compare=False)
    _memo_req: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def websocket(self) -> bool:
        return self.request is not None and self._request_checks()[0]

    def _request_checks(self) -> tuple:
        """(websocket?, the request's RFC 6455 checks): pure functions of the request head, computed
        again only if it changed (cut short, an anomaly added)."""
        req = self.request
        assert req is not None
        state = (req.complete, len(req.anomalies))
        m = self._memo_req
        if m is not None and m[0] == state:
            return m[1]
        ws = hs.is_websocket_request(req)
        checks = list(hs.check_request(req)) if ws else [
            make("not-websocket-upgrade", "Upgrade: " + ", ".join(req.tokens(b"upgrade")) or "none", req.frame)]
        res = (ws, checks)
        self._memo_req = (state, res)
        return res

    def _head_checks(self) -> tuple:
        """(request_anomalies, request + response + parser checks): pure functions of the two heads,
        computed again only when one of them changed (the response arrived, a head was cut short or
        got an anomaly); the lists are shared, so callers copy before changing them."""
        req, resp = self.request, self.response
        assert req is not None
        state = (req.complete, len(req.anomalies),
                 None if resp is None else (resp.complete, len(resp.anomalies), resp.status))
        m = self._memo
        if m is not None and m[0] is resp and m[1] == state:
            return m[2]
        checks = list(self._request_checks()[1])
        if resp is not None and resp.status is not None:
            checks += list(hs.check_response(req, resp))
        checks += self._opinion_anomalies()
        res = (hs.request_anomalies(req, resp), checks)
        self._memo = (resp, state, res)
        return res

    @property
    def ts_ns(self) -> int:
        return self.request.ts_ns if self.request is not None else self.start_ns

    def outcome(self, tcp: TcpFacts) -> str:
        return outcome(self.request, self.response, tcp)

    def decided(self, now_ns: int | None, timeout_ns: int, ended: bool) -> bool:
        """Answered, its connection ended (`ended`), or waited `timeout_ns` by `now_ns`."""
        if self.response is not None or ended:
            return True
        return now_ns is not None and now_ns - self.ts_ns >= timeout_ns

    def all_anomalies(self, conn_anomalies: Iterable[Anomaly] = ()) -> list[Anomaly]:
        """`conn_anomalies`: the connection-level ones, listed first."""
        out = list(conn_anomalies)
        checks: list[Anomaly] = []
        if self.request is not None:
            req_anomalies, checks = self._head_checks()
            out += req_anomalies
        if self.response is not None:
            out += self.response.anomalies
        out += self.anomalies
        for sc in (self.client_frames, self.server_frames):
            if sc is not None:
                out += sc.anomalies
        out += checks
        return out

    def parsers(self) -> dict:
        out: dict = {"llhttp": {}, "h11": {}}
        for part, head in (("request", self.request), ("response", self.response)):
            for name in ("llhttp", "h11"):
                out[name][part] = parser_opinion(head, name).to_json() if head is not None else None
        return out

    def _opinion_anomalies(self) -> list[Anomaly]:
        return opinion_anomalies((self.request, self.response))

    def waited(self, end_ns: int) -> float | None:
        if self.response is not None or self.request is None:
            return None
        return round((end_ns - self.request.ts_ns) / 1e9, 6)

    def to_json(self, c: ConnFacts, end_ns: int | None = None) -> dict:
        """The handshake document (the JSON contract, v1); `c`: its connection, now."""
        frames = []
        for sc in (self.client_frames, self.server_frames):
            if sc is not None:
                frames += sc.frames
        frames.sort(key=lambda f: f.order)
        resp = self.response
        doc = {
            "id": self.id, "source": c.source,
            "client": c.client, "server": c.server,
            "first_frame": c.first_frame, "last_frame": c.last_frame,
            "first_ts": round(c.first_ts / 1e9, 6), "last_ts": round(c.last_ts / 1e9, 6),
            "websocket": self.websocket,
            "request": self.request.to_json() if self.request is not None else None,
            "response": resp.to_json() if resp is not None else None,
            "outcome": self.outcome(c.tcp),
            "status": resp.status if resp is not None and resp.complete else None,
            "anomalies": [a.to_json() for a in self.all_anomalies(c.anomalies)],
            "parsers": self.parsers(),
            "frames": [f.to_json() for f in frames],
            "tcp": c.tcp.to_json(),
            "waited": self.waited(end_ns if end_ns is not None else c.last_ts),
            "http_version": "1.1",
            "h2": None,
            "tls": c.tls,
            "tunnel": c.tunnel,
        }
        for head in (self.request, resp):     # its checks are memoised here now: the lookups can go
            drop = getattr(head, "drop_lookups", None)
            if drop is not None:
                drop()
        return doc


    def link_json(self, source: int, client: str, server: str, first_frame: int, first_ts: int,
                  tcp: TcpFacts) -> dict:
        """The keys of `to_json` that linking reads, by the same expressions (see
        Connection.link_document); tests/test_live_link_views.py holds the two to the same link view."""
        resp = self.response
        return {
            "id": self.id, "source": source, "client": client, "server": server,
            "first_frame": first_frame, "first_ts": round(first_ts / 1e9, 6),
            "request": self.request.to_json() if self.request is not None else None,
            "response": resp.to_json() if resp is not None else None,
            "outcome": self.outcome(tcp), "tcp": tcp.to_json(),
        }


@dataclass(slots=True)
class H2Exchange(Exchange):
    """A WebSocket over HTTP/2: one stream opened by an extended CONNECT (RFC 8441)."""

    stream_id: int = 0
    h2_mode: str = "prior-knowledge"
    enabled: bool | None = None                 # SETTINGS_ENABLE_CONNECT_PROTOCOL when the CONNECT was sent
    reset: tuple | None = None                  # (by, error code, frame, ts_ns) of a RST_STREAM
    ended: list = field(default_factory=lambda: [None, None])   # END_STREAM frame per direction

    @property
    def connect(self) -> H2Head:
        """The extended CONNECT that opened the stream (an H2Head, never None here)."""
        return cast(H2Head, self.request)

    @property
    def answer(self) -> H2Head | None:
        return cast("H2Head | None", self.response)

    @property
    def websocket(self) -> bool:
        return (self.connect.get(b":protocol") or b"").lower() == b"websocket"

    def outcome(self, tcp: TcpFacts) -> str:
        return h2_outcome(self.answer, self.reset is not None, tcp)

    def decided(self, now_ns: int | None, timeout_ns: int, ended: bool) -> bool:
        return self.reset is not None or Exchange.decided(self, now_ns, timeout_ns, ended)

    def all_anomalies(self, conn_anomalies: Iterable[Anomaly] = ()) -> list[Anomaly]:
        req, resp = self.connect, self.answer
        out = list(conn_anomalies) + req.anomalies + self.anomalies
        if resp is not None:
            out += resp.anomalies
        for sc in (self.client_frames, self.server_frames):
            if sc is not None:
                out += sc.anomalies
        if self.websocket:
            out += check_extended_connect(req, self.enabled)
            if resp is not None:
                out += check_connect_response(req, resp)
        else:
            out.append(make("not-websocket-upgrade", ":protocol " + (req.get(b":protocol") or b"").decode(
                "latin-1"), req.frame))
        if self.reset is not None:
            by, code, frame, _ts = self.reset
            out.append(make("h2-stream-reset", f"the {by} reset stream {self.stream_id} with RST_STREAM "
                            f"{error_name(code)}", frame))
        return out

    def parsers(self) -> dict:
        # llhttp and h11 parse HTTP/1 heads only; an HTTP/2 header list has no bytes for them to judge.
        return {"llhttp": {"request": None, "response": None}, "h11": {"request": None, "response": None}}

    def to_json(self, c: ConnFacts, end_ns: int | None = None) -> dict:
        d = Exchange.to_json(self, c, end_ns)
        d["http_version"] = "2"
        d["h2"] = {"stream_id": self.stream_id, "mode": self.h2_mode,
                   "enable_connect_protocol": self.enabled,
                   "reset": None if self.reset is None else {"by": self.reset[0], "code": error_name(self.reset[1]),
                                                             "frame": self.reset[2]},
                   "end_stream": {"client": self.ended[C2S], "server": self.ended[S2C]}}
        return d


_PARSERS = {("llhttp", "request"): opinions.llhttp_request, ("llhttp", "response"): opinions.llhttp_response,
            ("h11", "request"): opinions.h11_request, ("h11", "response"): opinions.h11_response}


def opinion_anomalies(heads: Sequence[HttpHead | None]) -> list[Anomaly]:
    """llhttp-rejects / h11-rejects for each complete head (shared with the tshark engine).

    A request that the server answered 101 anyway is a warning, not an error: the server (not a
    Node one) accepted it, and the failure, if any, is the response's."""
    out: list[Anomaly] = []
    resp = heads[1] if len(heads) > 1 else None
    accepted = resp is not None and resp.complete and resp.status == 101
    for head in heads:
        if head is None or not head.complete:
            continue
        o = parser_opinion(head, "llhttp")
        if o.accepts is False:
            if head.kind == "request" and accepted:
                out.append(Anomaly("llhttp-rejects", Severity.WARN, f"Node's llhttp rejects the request: {o.error} "
                                   f"(the server answered 101 anyway)", head.frame, head="request"))
                continue
            out.append(make("llhttp-rejects", f"Node's llhttp rejects the {head.kind}: {o.error}", head.frame,
                            head=head.kind))
        o = parser_opinion(head, "h11")
        if o.accepts is False:
            out.append(make("h11-rejects", f"h11 rejects the {head.kind}: {o.error}", head.frame))
    return out


def parser_opinion(head: HttpHead, parser: str) -> opinions.ParserOpinion:
    """What `parser` says about this head; computed once per head (heads are immutable once parsed)."""
    o = head.opinions.get(parser)
    if o is None:
        if parser == "h11" and _clean_for_h11(head):
            o = opinions.ACCEPTS
        else:
            o = _PARSERS[(parser, head.kind)](head.raw)
        head.opinions[parser] = o
    return o


def _clean_for_h11(head: HttpHead) -> bool:
    """Heads that pass every rule h11 enforces, so running h11 (pure Python, ~1 ms a head) adds nothing.

    h11 rejects: bad start lines, non-token names, CTL in values, a missing or repeated Host on
    HTTP/1.1 requests, and Content-Length / Transfer-Encoding it cannot frame. wscap's own parser
    flags the first three as anomalies; the rest are checked here. tests/test_properties.py
    asserts that h11 accepts every head this function calls clean.

    A Content-Length h11 can frame is clean too: rejections carry a body, and for a response h11
    must first be walked through sending a request (most of its ~0.24 ms a head).
    """
    if head.anomalies or not head.complete or head.version != b"HTTP/1.1":
        return False
    if head.has(b"transfer-encoding"):
        return False
    lengths = head.get_all(b"content-length")
    if lengths and not _h11_content_length_ok(lengths):
        return False
    if head.kind == "request":
        return len(head.get_all(b"host")) == 1 and bool(_TARGET.match(head.target))
    return head.status is not None and 100 <= head.status <= 999


_TARGET = re.compile(rb"^[\x21-\x7e]+$")
_DIGITS = re.compile(rb"[0-9]{1,20}")


def _h11_content_length_ok(values: list[bytes]) -> bool:
    """Content-Length lines h11 accepts (h11._headers.normalize_and_validate): each a comma list
    of one repeated value, that value 1..20 ASCII digits, and the same value on every line."""
    seen = None
    for v in values:
        lengths = {x.strip() for x in v.split(b",")}
        if len(lengths) != 1:
            return False
        value = lengths.pop()
        if not _DIGITS.fullmatch(value) or (seen is not None and value != seen):
            return False
        seen = value
    return True

"""One tracked connection: who talks (identity), its TCP flow and its session, side by side.

The owner (`wscap.engine.core.Pipeline`, or the tshark engine) drives it:
`tcp.segment()` turns a segment into TCP events, `handle()` hands them to the
session and returns the session's events; `document()` writes one handshake's
document from the exchange and the facts of this connection. Neither stage
reaches into the other: the TCP flow never calls the session, the session never
sees a sequence number, and an exchange never points back here.

Bytes reassembled elsewhere (the tshark engine) enter through `on_data`, `on_gap` and
`flush_partial_heads`; the TCP facts then come from `tcp.note_end` and the other TcpFlow setters.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from wscap.flow.handshake import (ConnFacts, Exchange, H2Exchange, TcpFacts, _clean_for_h11, fmt_endpoint,
                                  opinion_anomalies, parser_opinion)
from wscap.flow.session import READING_HEADS, Session, SessionEvent
from wscap.flow.tcp import TcpEnd, TcpFlow, tcp_anomaly
from wscap.model.anomaly import Anomaly
from wscap.model.events import C2S, S2C, Conflict, Data, Gap, Overflow, Probe, TcpEvent
from wscap.model.limits import Limits
from wscap.wire.decode import tunnel_json
from wscap.wire.tls import ClientHello

_NOTHING: tuple[SessionEvent, ...] = ()
MAX_TLS_LISTED = 10_000    # TLS connections listed in the document (the rest are counted in limits_hit)

__all__ = ["C2S", "S2C", "Connection", "ConnFacts", "Exchange", "H2Exchange", "TcpFacts", "fmt_endpoint",
           "opinion_anomalies", "parser_opinion", "_clean_for_h11", "MAX_TLS_LISTED", "add_hits"]


def add_hits(hits: dict[str, int], more: Iterable[tuple[str, int]]) -> None:
    """Add limit hits (name, count) to an owner's `limits_hit`, in the order they come."""
    for k, v in more:
        hits[k] = hits.get(k, 0) + v


class Connection:
    """Identity + `tcp` (TcpFlow) + `session` (Session) of one connection."""

    # Slots: up to --max-flows of these live at once (a SYN flood tracks every one of them).
    __slots__ = ("client", "server", "source", "first_frame", "first_ts", "last_frame", "last_ts", "tunnel",
                 "tcp", "session", "keep", "attempt", "spooled")

    def __init__(self, client: tuple[bytes, int], server: tuple[bytes, int], source: int,
                 frame: int, ts_ns: int, limits: Limits) -> None:
        self.client = client
        self.server = server
        self.source = source
        self.first_frame = self.last_frame = frame
        self.first_ts = self.last_ts = ts_ns
        self.tunnel: list[dict] | None = None        # the encapsulation the connection came through
        self.tcp = TcpFlow(limits.flow_buffer)
        self.session = Session(limits)
        self.keep = [True, True]                      # what tcp was last told: keep_recent per direction
        self.attempt: Exchange | None = None         # set when this connection is a bare attempt
        self.spooled = False                          # its handshakes' documents are final and on disk

    # -- driving -----------------------------------------------------------------
    def handle(self, events: list[TcpEvent]) -> Sequence[SessionEvent]:
        """The TCP flow's events for one segment, in order -> what the session made of them.
        (Opened / Closed are lifecycle: the owner reads them from the list it passed.)"""
        session = self.session
        fed = 0                  # directions that got bytes (bit 1 << direction)
        for ev in events:
            if isinstance(ev, Data):
                d = ev.direction
                session.on_data(d, ev.data, ev.frame, ev.ts_ns)
                fed |= 1 << d
            elif isinstance(ev, Gap):
                session.on_gap(ev.direction, ev.length, ev.frame, ev.ts_ns)
            elif isinstance(ev, (Conflict, Probe)):
                session.note(tcp_anomaly(ev))
            elif isinstance(ev, Overflow) and ev.first:
                session.add(tcp_anomaly(ev))
        if fed:
            # Retransmission conflicts only matter while heads are read (told on change only).
            keep, mode = self.keep, session.mode
            for d in (C2S, S2C):
                if fed >> d & 1 and keep[d] is not (mode[d] in READING_HEADS):
                    keep[d] = not keep[d]
                    self.tcp.keep_recent(d, keep[d])
        return session.take() if session.events else _NOTHING

    def segment(self, direction: int, flags: int, seq: int, payload: bytes, paylen: int, window: int,
                frame: int, ts_ns: int) -> tuple[list[TcpEvent], Sequence[SessionEvent]]:
        """One segment of this connection, `direction` decided by the owner -> the TCP events (the
        owner reads Opened / Closed there) and the session events they led to."""
        self.last_frame = frame
        self.last_ts = ts_ns
        events = self.tcp.segment(direction, flags, seq, payload, paylen, window, frame, ts_ns)
        return events, (self.handle(events) if events else _NOTHING)

    def fast_lane(self, src: bytes, sport: int, seq: int, paylen: int, no: int, ts_ns: int) -> bool:
        """Account an in-order segment whose bytes are only counted (a body being skipped).

        Called from the capture reader's record filter for packets without SYN/FIN/RST. Returns
        False whenever the full path is needed: another mode, out of order, or the body ends
        inside this segment.
        """
        direction = C2S if src == self.client[0] and sport == self.client[1] else S2C
        session = self.session
        if not session.skippable(direction, paylen) or not self.tcp.advance(direction, seq, paylen):
            return False
        session.skipped(direction, paylen)
        self.last_frame = no
        self.last_ts = ts_ns
        return True

    def came_through(self, tunnel: tuple, direction: int) -> None:
        """A packet of this connection came out of `tunnel` (wscap.wire.decode's layers): the
        document shows the client's encapsulation when there is one, else the server's."""
        if self.tunnel is None or direction == C2S and self.tunnel[0]["direction"] != "c2s":
            self.tunnel = tunnel_json(tunnel, "c2s" if direction == C2S else "s2c")

    def touch(self, frame: int, ts_ns: int) -> None:
        """A segment of this connection passed."""
        self.last_frame = frame
        self.last_ts = ts_ns

    # -- the entry for bytes reassembled elsewhere (the tshark engine) ----------------
    def on_data(self, direction: int, data: bytes, frame: int, ts_ns: int) -> None:
        self.tcp.seen(direction, len(data))
        self.session.on_data(direction, data, frame, ts_ns)

    def on_gap(self, direction: int, length: int, frame: int, ts_ns: int) -> None:
        self.session.on_gap(direction, length, frame, ts_ns)

    def flush_partial_heads(self, frame: int, ts_ns: int) -> None:
        self.session.flush_partial_heads(frame, ts_ns)

    # -- facts ---------------------------------------------------------------------
    @property
    def exchanges(self) -> list[Exchange]:
        return self.session.exchanges

    @property
    def anomalies(self) -> list[Anomaly]:
        return self.session.anomalies

    @property
    def tls(self) -> ClientHello | None:
        return self.session.tls

    @property
    def tls_frame(self) -> int | None:
        return self.session.tls_frame

    @property
    def ignored(self) -> bool:
        return self.session.ignored

    @property
    def end(self) -> TcpEnd | None:
        return self.tcp.end

    @property
    def saw_payload(self) -> bool:
        return self.tcp.saw_payload

    @property
    def syn_frame(self) -> int | None:
        return self.tcp.syn_frame

    def take_limits(self) -> dict[str, int]:
        """The limit hits of both stages since the last call (TCP's first)."""
        out: dict[str, int] = {}
        for hits in (self.tcp.limits_hit, self.session.limits_hit):
            for k, v in hits.items():
                out[k] = out.get(k, 0) + v
            hits.clear()
        return out

    def frame_limits(self) -> list[tuple[str, int]]:
        """The frame bounds its exchanges hit (--max-frames, --max-inflate-bytes): read once, when
        the connection is retired (both engines)."""
        out: list[tuple[str, int]] = []
        for ex in self.session.exchanges:
            for sc in (ex.client_frames, ex.server_frames):
                if sc is not None and sc.dropped:
                    out.append(("frames", sc.dropped))
                if sc is not None and sc.inflate_cut:
                    out.append(("inflate_bytes", sc.inflate_cut))
        return out

    @property
    def bare_attempt(self) -> bool:
        """It opened (a SYN was seen) but never carried a request, nor TLS: a candidate missing hop
        of a chain (refused, unanswered...)."""
        return not (self.tcp.saw_payload or self.tcp.syn_frame is None or self.session.exchanges
                    or self.session.tls is not None)

    def list_tls(self, listed: list[dict], hits: dict[str, int], handshakes: list[Any]) -> dict | None:
        """A connection that spoke TLS is listed once (SNI, ALPN, ports) rather than not at all:
        -> its entry, appended to `listed`; None when it did not, was listed before, or `listed`
        is full (MAX_TLS_LISTED; counted as tls_listed). `handshakes`: the engine's references to
        the handshakes it carried (ids, or documents the assembly turns into ids)."""
        hello = self.session.tls
        if hello is None or hello.listed:
            return None
        hello.listed = True
        if len(listed) >= MAX_TLS_LISTED:
            hits["tls_listed"] = hits.get("tls_listed", 0) + 1
            return None
        doc = {
            "source": self.source, "client": fmt_endpoint(*self.client), "server": fmt_endpoint(*self.server),
            "first_frame": self.first_frame, "hello_frame": self.session.tls_frame,
            "first_ts": round(self.first_ts / 1e9, 6), **hello.to_json(), "handshakes": handshakes}
        listed.append(doc)
        return doc

    def facts(self) -> ConnFacts:
        tcp = self.tcp
        session = self.session
        return ConnFacts(
            self.source, fmt_endpoint(*self.client), fmt_endpoint(*self.server),
            self.first_frame, self.last_frame, self.first_ts, self.last_ts,
            TcpFacts(tcp.syn_frame, tcp.synack_frame, tcp.end, tcp.gaps(), tcp.delivered(C2S), tcp.delivered(S2C)),
            tuple(session.anomalies) + tuple(session.suppressed()),
            session.tls_json(), self.tunnel)

    def document(self, ex: Exchange, end_ns: int | None = None) -> dict:
        """`ex`'s handshake document (the JSON contract), with this connection as it is now."""
        return ex.to_json(self.facts(), end_ns)

    def link_document(self, ex: Exchange) -> dict:
        """The part of `document(ex)` that linking reads (document/codec.decode_link_view): a live
        tick builds it for every leg that changed, so it skips the anomalies, parser opinions and
        frames that make the full document cost."""
        tcp = self.tcp
        # gaps and byte counts are not read by linking (nor by the outcome): left at 0
        facts = TcpFacts(tcp.syn_frame, tcp.synack_frame, tcp.end, 0, 0, 0)
        return ex.link_json(self.source, fmt_endpoint(*self.client), fmt_endpoint(*self.server),
                            self.first_frame, self.first_ts, facts)

    def decided(self, ex: Exchange, now_ns: int | None, timeout_ns: int) -> bool:
        return ex.decided(now_ns, timeout_ns, self.tcp.end is not None)

    def release(self) -> None:
        """Both sides are done: free the reassembly and parsing state (the exchanges stay)."""
        self.tcp.release()

"""`--engine tshark`: the same JSON document, with the packets decoded by Wireshark.

tshark (`wscap.engine.tshark_fields`, one `tshark -T fields` run per file) decodes what lies
below the session stage: link layers, tunnels, IP fragments, which TCP stream a segment belongs
to (`tcp.stream`, tshark's connection tracking), flags, raw sequence numbers, each segment's
payload bytes and its `tcp.analysis` probe labels; DNS messages too. TLS is opened by tshark with
the key log through `wscap.engine.decrypt` (the same per-frame plaintext overlay the core uses).
The core's `wscap.flow.tcp.HalfStream` puts each direction's bytes in order by tshark's sequence
numbers, as tshark's reassembly does (`first_copy`: the first copy of a byte is kept, probes are
tshark's `tcp.analysis` labels).

Everything above is the core's: per tshark stream a `wscap.flow.connection.Connection` is fed
the ordered bytes, holes and probes through its session entry (`on_data`, `on_gap`, probes as session notes,
`flush_partial_heads`) and does the HTTP/1 heads, WebSocket frames,
HTTP/2 (RFC 8441), the ClientHello, the exchange, outcome, RFC 6455 checks, parser opinions and
the Handshake JSON; `wscap.document.build.document` links, judges and assembles the document.
This module is only the adapter: tshark's stream lifecycle (SYN, SYN-ACK, FIN, RST) onto
connections, as the core's pipeline does with its own flow table.
"""
from __future__ import annotations

import dataclasses
from typing import Any, cast

from wscap.capture.files import read_names
from wscap.document.build import document
from wscap.engine.core import Options
from wscap.engine.decrypt import Overlay
from wscap.engine.tshark_fields import TH_ACK, TH_FIN, TH_RST, TH_SYN, DnsRecord, FileStats, TsharkPacket, file_format, read
from wscap.flow.connection import C2S, S2C, Connection, Exchange, add_hits
from wscap.flow.tcp import HalfStream, tcp_anomaly
from wscap.model.events import Data, Gap, Overflow, Probe, TcpEvent
from wscap.flow.dns import DOCKER_RESOLVER, DnsTracker
from wscap.model.anomaly import make
from wscap.model.limits import Limits
from wscap.wire.http1 import looks_like_request, looks_like_response
from wscap.wire.tls import looks_like_tls

ENGINE = "tshark"


class _Overlays:
    """What `engine.analyze._attach_keylog` fills in (the core's key-log path, reused as is)."""

    def __init__(self) -> None:
        self.overlays: dict[int, Overlay] = {}


def _set_tls(conn: Connection, hello: Any, frame: int | None) -> None:
    conn.session.tls, conn.session.tls_frame = hello, frame


class _Flow:
    """A tshark stream that carries HTTP (or TLS): the core's Connection and tshark's two directions."""

    __slots__ = ("conn", "halves")

    def __init__(self, conn: Connection, flow_buffer: int) -> None:
        self.conn = conn
        # The reassembly is tshark's (first copy kept, its labels), apart from conn.tcp's.
        self.halves = (HalfStream(C2S, flow_buffer, first_copy=True), HalfStream(S2C, flow_buffer, first_copy=True))


def _document(conn: Connection, ex: Exchange, end_ns: int) -> dict:
    """The Handshake JSON, from the core."""
    return conn.document(ex, end_ns)


class Streams:
    """One capture file: tshark's TCP streams -> core Connections -> Handshake dicts.

    The lifecycle mirrors what the core's pipeline does with its own flow table, keyed by tshark's
    `tcp.stream` instead: the first segment names the client (SYN, SYN-ACK, a request line, a
    status line, a ClientHello) or the stream is uninteresting; a SYN on a stream that ended starts
    a new connection; RST or both FINs end it (open heads are cut, holes become gaps)."""

    def __init__(self, source: int, limits: Limits, overlay: Overlay | None = None) -> None:
        self.source = source
        self.limits = limits
        self.overlay = overlay
        self.conns: dict[int, _Flow | None] = {}          # tshark stream -> its connection (None: not HTTP)
        self.clock = 0                                     # latest timestamp of the capture so far
        self.next_id = 1
        self.handshakes: dict[int, dict] = {}              # registration order -> Handshake dict
        self.attempts: list[dict] = []
        self.tls: list[dict] = []
        self.live = 0                                      # Connections in `conns` (--max-flows)
        self.flows = 0
        self.evicted = 0
        self.limits_hit: dict[str, int] = {}

    def tick(self, ts_ns: int) -> None:
        if ts_ns > self.clock:
            self.clock = ts_ns

    def feed(self, p: TsharkPacket) -> None:
        self.tick(p.ts_ns)
        if p.sport == 53 or p.dport == 53 or p.dst == DOCKER_RESOLVER or p.src == DOCKER_RESOLVER:
            return                               # DNS over TCP: read from tshark's dns fields
        seq, payload, paylen = p.seq, p.payload, p.paylen
        plain = self.overlay.frames.get(p.frame) if self.overlay is not None else None
        if plain is not None:
            # A frame of a connection tshark decrypted: its plaintext at a plaintext-stream sequence number.
            seq, data, paylen = plain
            payload = data if data is not None else b""
        fresh_syn = bool(p.flags & TH_SYN and not p.flags & TH_ACK)
        known = p.stream in self.conns
        flow = self.conns.get(p.stream)
        if known and flow is None and not fresh_syn:
            return                               # an uninteresting stream; only a new SYN revives it
        if flow is not None and fresh_syn and (p.src, p.sport) == flow.conn.client and flow.conn.end is not None:
            self._retire(p.stream, flow)         # port reuse tshark kept in one stream
            flow = None
        if flow is None:
            flow = self._new(p, payload, paylen)
            if flow is None:
                return
        self._segment(flow, p, seq, payload, paylen)

    def _segment(self, flow: _Flow, p: TsharkPacket, seq: int, payload: bytes, paylen: int) -> None:
        conn = flow.conn
        d = C2S if (p.src, p.sport) == conn.client else S2C
        tcp = conn.tcp
        conn.last_frame, conn.last_ts = p.frame, p.ts_ns
        half = flow.halves[d]
        if p.flags & TH_SYN:
            if d == C2S and not p.flags & TH_ACK:
                half.set_isn(seq)
                if tcp.syn_frame is None:
                    tcp.syn_frame = p.frame
            elif d == S2C and p.flags & TH_ACK:
                half.set_isn(seq)
                if tcp.synack_frame is None:
                    tcp.synack_frame = p.frame
        if p.tunnel is not None and (conn.tunnel is None or d == C2S and conn.tunnel[0]["direction"] != "c2s"):
            way = "c2s" if d == C2S else "s2c"
            conn.tunnel = [{**t, "direction": way} for t in p.tunnel]
        if paylen:
            out: list[TcpEvent] = []
            half.feed(seq, payload, paylen, p.frame, p.ts_ns, out, p.zero_window_probe, p.keep_alive)
            self._events(flow, d, out)
            for ex in conn.exchanges:
                if ex.id is None:                 # ids in the order the requests were complete (core's)
                    ex.id = self.next_id
                    self.next_id += 1
        if p.flags & (TH_FIN | TH_RST):
            self._end(flow, "rst" if p.flags & TH_RST else "fin", "client" if d == C2S else "server", p)
        end = tcp.end
        if end is not None and (end.kind == "rst" or len({e.by for e in tcp.fins}) == 2):
            self._retire(p.stream, flow)
        elif conn.ignored and not conn.exchanges:
            self._absorb(conn)
            self._list_tls(conn)
            self.conns[p.stream] = None
            self.live -= 1

    def _events(self, flow: _Flow, d: int, events: list[TcpEvent]) -> None:
        """Ordered bytes, holes and probes of one direction -> the session stage (`on_data` counts
        the bytes in `conn.tcp.seen`; the document's tcp.gaps are counted here)."""
        conn = flow.conn
        for ev in events:
            if isinstance(ev, Data):
                conn.on_data(d, ev.data, ev.frame, ev.ts_ns)
            elif isinstance(ev, Gap):
                conn.on_gap(d, ev.length, ev.frame, ev.ts_ns)
                conn.tcp.halves[d].gaps += 1
            elif isinstance(ev, Probe):
                conn.session.note(tcp_anomaly(ev))
            elif isinstance(ev, Overflow):
                # The flow buffer's bound was hit: counted, and the first time per direction said.
                hits = conn.tcp.limits_hit
                hits["flow_buffer"] = hits.get("flow_buffer", 0) + 1
                if ev.first:
                    conn.anomalies.append(tcp_anomaly(ev))

    def _end(self, flow: _Flow, kind: str, by: str, p: TsharkPacket) -> None:
        conn = flow.conn
        tcp = conn.tcp
        tcp.note_end(kind, by, p.frame, p.ts_ns)
        if kind == "rst" or len({e.by for e in tcp.fins if e.kind == "fin"}) == 2:
            conn.flush_partial_heads(p.frame, p.ts_ns)
            self._flush(flow)

    def _new(self, p: TsharkPacket, payload: bytes, paylen: int) -> _Flow | None:
        src, dst = (p.src, p.sport), (p.dst, p.dport)
        if p.flags & TH_SYN and not p.flags & TH_ACK:
            client, server = src, dst
        elif p.flags & TH_SYN:
            client, server = dst, src
        elif paylen and looks_like_request(payload):
            client, server = src, dst
        elif paylen and looks_like_response(payload):
            client, server = dst, src
        elif paylen > 5 and looks_like_tls(payload) and payload[5:6] == b"\x01":
            client, server = src, dst            # a ClientHello: the capture began just after the SYN
        else:
            if paylen:
                self.conns[p.stream] = None      # first bytes are not HTTP: never interesting
            return None
        if self.live >= self.limits.max_flows:
            self._evict()
        conn = Connection(client, server, self.source, p.frame, p.ts_ns, self.limits)
        found = self.overlay.hello_of(p.frame) if self.overlay is not None else None
        if found is not None:
            _set_tls(conn, *found)               # its plaintext is parsed as HTTP like any other
        if not p.flags & TH_SYN:
            conn.anomalies.append(make("mid-stream-start", "the capture starts after this connection's SYN", p.frame))
        flow = _Flow(conn, self.limits.flow_buffer)
        self.conns[p.stream] = flow
        self.live += 1
        self.flows += 1
        return flow

    def _evict(self) -> None:
        """--max-flows: the oldest open connection goes (and is reported as it stands)."""
        for stream, flow in self.conns.items():
            if flow is not None:
                self.evicted += 1
                self.limits_hit["max_flows"] = self.limits_hit.get("max_flows", 0) + 1
                self._retire(stream, flow)
                return

    def _flush(self, flow: _Flow) -> None:
        """Stop waiting for the holes of both directions: they become gaps."""
        for d, half in enumerate(flow.halves):
            if half.ooo:
                out: list[TcpEvent] = []
                half.flush_gap(out)
                self._events(flow, d, out)

    def finish(self) -> None:
        for stream, flow in list(self.conns.items()):
            if flow is not None:
                self._flush(flow)
                flow.conn.flush_partial_heads(flow.conn.last_frame, flow.conn.last_ts)
                self._retire(stream, flow)
        self.conns.clear()

    def _absorb(self, conn: Connection) -> None:
        add_hits(self.limits_hit, conn.take_limits().items())

    def _retire(self, stream: int, flow: _Flow) -> None:
        """The connection is over: its Handshake dicts are final ("waited" runs to the capture's clock)."""
        conn = flow.conn
        self._absorb(conn)
        for half in flow.halves:
            half.release()
        if self.conns.get(stream) is flow:
            del self.conns[stream]
            self.live -= 1
        add_hits(self.limits_hit, conn.frame_limits())
        mine = []
        for ex in conn.exchanges:
            if ex.id is not None:
                doc = _document(conn, ex, self.clock)
                self.handshakes[ex.id] = doc
                mine.append(doc)
        if conn.bare_attempt:
            # A connection that never carried a request: a candidate missing hop (refused, unanswered...).
            self.attempts.append(_document(conn, Exchange(None, start_ns=conn.first_ts), self.clock))
        self._list_tls(conn, mine)

    def _list_tls(self, conn: Connection, handshakes: list[dict] | None = None) -> None:
        # The documents become ids in the assembly (wscap.document.build.document).
        conn.list_tls(self.tls, self.limits_hit, handshakes or [])


def _keylog(source: int, path: str, options: Options) -> tuple[Overlay | None, dict | None]:
    """The core's key-log path (`engine.analyze._attach_keylog`): tshark decrypts, per frame."""
    from wscap.engine.analyze import _attach_keylog
    holder = _Overlays()
    info = _attach_keylog(cast(Any, holder), source, path, options)
    return holder.overlays.get(source), info


def analyze_paths(paths: list[str], options: Options | None = None, keylog: str | None = None) -> dict:
    """Analyse capture files with tshark's decoding into wscap's JSON document (schema v1), plus
    `"engine": "tshark"`. Never raises for bad input: errors land in `source[i].errors`."""
    import os
    options = options or Options()
    if keylog and keylog != options.keylog:
        options = dataclasses.replace(options, keylog=keylog)
    sources: list[dict] = []
    hands: list[dict] = []
    attempts: list[dict] = []
    tls: list[dict] = []
    packets = tcp_packets = flows = evicted = 0
    limits_hit: dict[str, int] = {}
    dns = DnsTracker(options.limits.max_dns)
    capture_names: dict[str, str] = {}
    for i, path in enumerate(paths):
        stats = FileStats(path)
        overlay, key_info = None, None
        if not os.path.exists(path):
            stats.errors.append(f"{path}: no such file")
        elif os.path.isdir(path):
            stats.errors.append(f"{path}: is a directory")
        else:
            overlay, key_info = _keylog(i, path, options)
        streams = Streams(i, options.limits, overlay)
        if not stats.errors:
            for item in read(path, stats):
                try:
                    if isinstance(item, TsharkPacket):
                        streams.feed(item)
                    elif isinstance(item, DnsRecord):
                        streams.tick(item.ts_ns)
                        dns.record(i, *item)
                    else:
                        streams.tick(item)
                except Exception as e:   # a value shape tshark never gave before: keep the rest
                    stats.errors.append(f"{path}: {type(e).__name__}: {e}")
        streams.finish()
        hands += [streams.handshakes[k] for k in sorted(streams.handshakes)]
        attempts += streams.attempts
        tls += streams.tls
        packets += stats.packets
        tcp_packets += stats.tcp_packets
        flows += streams.flows
        evicted += streams.evicted
        for k, v in streams.limits_hit.items():
            limits_hit[k] = limits_hit.get(k, 0) + v
        nrb, skipped = read_names(path)
        for ip, name in nrb.items():
            capture_names.setdefault(ip, name)
        src = {"path": path, "format": file_format(path), "packets": stats.packets, "bytes": stats.bytes,
               "first_ts": None if stats.first_ts_ns is None else round(stats.first_ts_ns / 1e9, 6),
               "last_ts": None if stats.last_ts_ns is None else round(stats.last_ts_ns / 1e9, 6),
               "linktypes": stats.linktypes(), "interfaces": [], "complete": not stats.errors,
               "errors": stats.errors, "names": nrb, "names_skipped": skipped}
        if key_info is not None:
            src["keylog"] = key_info
        sources.append(src)
    if dns.dropped:
        limits_hit["max_dns"] = dns.dropped
    stats_doc = {"packets": packets, "tcp_packets": tcp_packets, "truncated_packets": 0, "flows": flows,
                 "flows_tracked": 0, "evicted_flows": evicted, "ip_fragments_dropped": 0, "limits_hit": limits_hit}
    doc = document(hands, attempts, sources, stats_doc, options, tls, dns=dns, capture_names=capture_names)
    return {"version": doc.pop("version"), "tool": doc.pop("tool"), "engine": ENGINE, **doc}

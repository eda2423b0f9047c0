"""The one streaming pipeline: RawFrame in, decided handshakes and chains out.

`analyze` (files) and `live` (sniffers) both drive exactly this object:
`feed(frame)` per captured frame, `tick(ts_ns)` when time passes without
packets, `finish()` at the end, `document()` for the full JSON document. Time
only comes from frame timestamps and ticks, so a capture re-analysed offline
reaches the same verdicts as the live run that wrote it.
"""
from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Hashable, Literal

from wscap.document.build import Assembly
from wscap.document.codec import SCHEMA_VERSION
from wscap.judge.chains import LINK_WINDOW_S
from wscap.model.handshake import Handshake
from wscap.document.spool import Spool
from wscap.flow.connection import C2S, MAX_TLS_LISTED, S2C, Connection, Exchange, add_hits
from wscap.flow.tcp import FlowTable
from wscap.model.events import C2S as _C2S, Closed, H2Stream, HeadSeen
from wscap.wire.decode import TH_ACK, TH_FIN, TH_RST, TH_SYN, Decoder, Segment
from wscap.wire.linklayer import FIXED_HEADER
from wscap.flow.dns import DOCKER_RESOLVER, DnsTracker
from wscap.flow.session import BODY, FRAMES
from wscap.wire.wsframe import FrameScanner
from wscap.wire.http1 import looks_like_request, looks_like_response
from wscap.wire.tls import looks_like_tls
from wscap.model.anomaly import make
from wscap.model.limits import Limits
from wscap.model.raw import RawFrame
from wscap.engine.shards import ShardLog



@dataclass(frozen=True, slots=True)
class Options:
    timeout_s: float = 3.0            # a leg without a response is decided after this long
    limits: Limits = field(default_factory=Limits)
    names: tuple[tuple[str, str], ...] = ()   # ip -> name labels (--names; live: Docker too): win over all
    names_fallback: tuple[tuple[str, str], ...] = ()   # ip -> name from the Docker API: below a capture's NRB names
    stream: bool = True               # emit Decided events (live); analyze only wants document()
    keylog: str | None = None         # SSLKEYLOGFILE: decrypt TLS connections with tshark (wscap.engine.decrypt)
    keylog_sources: tuple[str, ...] = ()   # the user's key log files when several were merged into `keylog`
    judge_processes: int = 0          # JSON output: chains judged in 2 processes (0: when 2 CPUs are usable; 1: never)


# The fast path's fields after the link layer's ethertype: version/IHL, total length, fragment bits,
# protocol, addresses (IPv4 without options), then TCP ports, sequence number, data offset, flags, window.
_FAST_IP_TCP = "BxH2xHxB2x4s4sHHI4xBBH"


class _Unseen(Enum):
    UNSEEN = 0               # a flow key not in the table (None there means "known, ignored")


UNSEEN: Literal[_Unseen.UNSEEN] = _Unseen.UNSEEN
FlowKey = Hashable   # (src, sport, dst, dport), or (source, that) for the second and later inputs


def flow_key(src: bytes, sport: int, dst: bytes, dport: int, source: int = 0) -> FlowKey:
    """Direction-free connection key; the fast path computes exactly the same tuple."""
    key = (src, sport, dst, dport) if (src < dst or src == dst and sport < dport) else (dst, dport, src, sport)
    return key if not source else (source, key)


@dataclass(frozen=True, slots=True)
class Decided:
    kind: str          # "handshake" | "chain" | "tls" (a connection that spoke TLS where HTTP was expected)
    json: dict


class Pipeline(Assembly):
    def __init__(self, options: Options | None = None) -> None:
        self.options = options or Options()
        self.limits = self.options.limits
        self.timeout_ns = int(self.options.timeout_s * 1e9)
        self.stream = self.options.stream
        self.decoder = Decoder(self.limits.fragments, self.limits.tunnel_depth)
        self.dns = DnsTracker(self.limits.max_dns)
        self.decoder.udp_sink = self.dns.udp     # type: ignore[assignment]  # (Decoder declares it None)
        self.capture_names: dict[str, str] = {}   # ip -> name from the captures' Name Resolution Blocks
        # flow key -> Connection, or None for a flow proven uninteresting (cheap to skip).
        self.flows: FlowTable[Connection] = FlowTable(self.limits.max_flows)
        self.conns = self.flows.flows            # the same dict (the fast path and stats read it)
        self.registered = 0                      # upgrade attempts with a request (ids handed out)
        self.spool = Spool()                     # finished handshake documents, on disk
        self.views: list[Handshake] = []         # link views of spooled handshakes (document/build.py)
        self.view_locs: list[tuple[Spool, tuple[int, int], int]] = []   # ... where their documents are
        self.attempt_views: list[Handshake] = []  # ... and of bare connection attempts
        self.attempt_locs: list[tuple[Spool, tuple[int, int], int]] = []
        self.attempt_live: list[Exchange | None] = []   # live: the attempt's Exchange (its id once shown)
        self._requests_to: dict[tuple, deque] = {}   # (source, server address) -> recent request times
        self._clock: dict[int, int] = {}             # latest timestamp seen per capture (source)
        self.link_window_ns = int(max(LINK_WINDOW_S, self.options.timeout_s) * 1e9)
        self.unlinked_attempts = 0
        self._extra_spools: list[Spool] = []      # spools of files analysed by worker processes (-j)
        self.next_id = 1
        # engine/shards.py: which half of the flows this process keeps (None: all of them), and
        # what it saw that the halves' merge needs (requests and bare attempts, by record).
        self.shard: int | None = None
        self.shard_log: ShardLog | None = None
        self._no = 0                               # the record being fed (kept in shard mode only)
        self.now_ns = 0
        self.flows_seen = 0
        self.evicted = 0
        self.limits_hit: dict[str, int] = {}
        # Live mode: handshakes not yet emitted, and legs not yet part of an emitted chain, each
        # with its connection (whose facts its document reads).
        self._undecided: list[tuple[Connection, Exchange]] = []
        self._open: list[tuple[Connection, Exchange]] = []
        self._views: dict[int, tuple[tuple, Handshake]] = {}   # their link views (document/build.py)
        self._syn_only: list[Connection] = []    # connections that so far only sent a SYN
        self._chain_seq = 0
        self.sources: list[dict] = []
        self.tls_docs: list[dict] = []            # connections that carried TLS where HTTP was expected
        self._tls_events: list[Decided] = []      # live: TLS connections not yet reported
        self.overlays: dict = {}                  # source -> decrypt.Overlay (--keylog)

    # -- driving ---------------------------------------------------------------
    def feed(self, frame: RawFrame) -> list[Decided]:
        if frame.ts_ns > self.now_ns:
            self.now_ns = frame.ts_ns
        if frame.ts_ns > self._clock.get(frame.source, 0):
            self._clock[frame.source] = frame.ts_ns
        seg = self.decoder.decode(frame)
        if seg is None:
            return []
        if self.overlays:
            ov = self.overlays.get(seg.source)
            plain = ov.frames.get(seg.frame) if ov is not None else None
            if plain is not None:
                # A frame of a decrypted TLS connection: its TCP payload becomes the plaintext the
                # key log opened, at a sequence number of the plaintext stream.
                seq, data, length = plain
                seg = seg._replace(seq=seq, payload=data if data is not None else b"", paylen=length)
        if seg.sport == 53 or seg.dport == 53 or seg.dst == DOCKER_RESOLVER or seg.src == DOCKER_RESOLVER:
            self.dns.tcp(seg)                    # DNS over TCP: evidence, never an HTTP connection
            return []
        if self.shard is not None:
            if (seg.sport ^ seg.dport) & 1 != self.shard:
                return []                        # the other process's flow (engine/shards.py)
            self._no = seg.frame
        src = (seg.src, seg.sport)
        key = flow_key(seg.src, seg.sport, seg.dst, seg.dport, seg.source)
        flags = seg.flags
        conns = self.conns
        found = conns.get(key, UNSEEN)
        if found is None:
            # Known-uninteresting flow: only a fresh SYN (port reuse) revives it.
            if not (flags & TH_SYN and not flags & TH_ACK):
                if flags & (TH_RST | TH_FIN):
                    del conns[key]
                return []
            found = UNSEEN
        if found is UNSEEN:
            found = self._new_connection(seg, key)
            if found is None:
                return []
        elif flags & TH_SYN and not flags & TH_ACK and src == found.client and found.end is not None:
            # A new connection on the same 4-tuple after the old one ended.
            self._retire(key, found)
            found = self._new_connection(seg, key)
            if found is None:
                return []
        conn = found
        direction = C2S if src == conn.client else S2C
        if seg.tunnel is not None:
            conn.came_through(seg.tunnel, direction)
        tcp = conn.tcp
        events, sevents = conn.segment(direction, flags, seg.seq, seg.payload, seg.paylen, seg.window, seg.frame,
                                       seg.ts_ns)
        if events:
            for sev in sevents:
                # An upgrade request, or an extended CONNECT (HTTP/2 can open several per segment).
                if isinstance(sev, H2Stream) or isinstance(sev, HeadSeen) and sev.direction == _C2S:
                    self._register(conn, sev.exchange)
            if events[-1].__class__ is Closed:
                # A RST, or both FINs: cut open heads, then stop waiting for holes. Exchanges these
                # open get no id: the connection is over before anything could answer them.
                conn.flush_partial_heads(seg.frame, seg.ts_ns)
                self._maybe_attempt(conn)
                conn.handle(tcp.flush())
        session = conn.session
        out: list[Decided] = []
        if self.stream and session.exchanges:
            for ex in session.exchanges:
                if not ex.emitted and ex.id is not None and ex.id > 0 and conn.decided(ex, self.now_ns, self.timeout_ns):
                    ex.emitted = True
                    out.append(Decided("handshake", conn.document(ex, self.now_ns)))
        if tcp.closed:
            # Both sides are done: keep the exchanges, free the reassembly state.
            conn.release()
            self._retire(key, conn)
        elif session.ignored and not session.exchanges:
            self._absorb_limits(conn)            # e.g. an endless head that was cut, then ignored
            self._list_tls(conn)
            conns[key] = None
        if self._tls_events:
            out += self._tls_events
            self._tls_events = []
        return out

    def tick(self, ts_ns: int) -> list[Decided]:
        if ts_ns > self.now_ns:
            self.now_ns = ts_ns
        return self._collect(self.now_ns, chains=True)

    def finish(self) -> list[Decided]:
        self._no = ShardLog.END
        for key, conn in list(self.conns.items()):
            if conn is not None:
                conn.handle(conn.tcp.flush())
                conn.flush_partial_heads(conn.last_frame, conn.last_ts)
                self._retire(key, conn)
        self.conns.clear()
        return self._collect(None, chains=True)

    def record_filter(self, linktype: int, source: int) -> Callable[[bytes, int, int, int, int], bool] | None:
        """A per-record predicate for the capture reader's tight loop (the fast path).

        It reads the flow key and flags straight from the file buffer and answers False for a
        record it fully accounted for — a packet of a flow already proven uninteresting, or
        in-order body bytes being skipped — so no RawFrame or Segment is ever built for it.
        True means "build the frame and feed() it". Only link types with a fixed header
        (wire/linklayer.py FIXED_HEADER: Ethernet, Linux SLL/SLL2) + IPv4 without options;
        every other packet (VLAN tags, IPv6, options...) takes the general path.
        """
        fixed = FIXED_HEADER.get(linktype)
        if fixed is None or source in self.overlays:
            return None       # decrypted frames must reach feed() to have their payload replaced
        l3, eoff = fixed      # offsets of the network header and of the ethertype field
        gap = l3 - eoff - 2
        unpack = struct.Struct("!H" + (f"{gap}x" if gap else "") + _FAST_IP_TCP).unpack_from
        minlen = l3 + 40
        conns = self.conns
        stats = self.decoder.stats
        clock = self._clock
        unseen = UNSEEN
        shard = self.shard

        def want(buf: bytes, off: int, caplen: int, no: int, ts: int) -> bool:
            if caplen < minlen:
                return True
            et, vi, totlen, frag, proto, src, dst, sport, dport, seq, offx, flags, win = unpack(buf, off + eoff)
            if et != 0x0800 or vi != 0x45 or proto != 6 or frag & 0x3FFF:
                return True
            # The other process's flow (engine/shards.py): only counted and timed, as the decoder
            # would count it; anything it could say more of, and DNS (read by both): full path.
            other = shard is not None and (sport ^ dport) & 1 != shard
            if other:
                conn = unseen
            else:
                if flags & TH_SYN:
                    return True   # a SYN may start or revive a connection; FIN/RST are decided per flow
                if src < dst or src == dst and sport < dport:
                    key = (src, sport, dst, dport)
                else:
                    key = (dst, dport, src, sport)
                k = key if not source else (source, key)
                conn = conns.get(k, unseen)
            if conn is unseen:
                # A segment of an untracked flow without SYN and payload (the last ACK, FIN or RST
                # after both FINs retired it): _new_connection starts nothing. DNS over TCP is evidence.
                hl = (offx >> 4) << 2
                if (hl < 20 or (totlen < 20 + hl if other else totlen != 20 + hl) or caplen < l3 + totlen
                        or sport == 53 or dport == 53 or src == DOCKER_RESOLVER or dst == DOCKER_RESOLVER):
                    return True
            if ts > self.now_ns:
                self.now_ns = ts
            if ts > clock.get(source, 0):
                clock[source] = ts
            if conn is None:
                if flags & (TH_FIN | TH_RST):
                    del conns[k]          # a known-uninteresting flow ends: its key is forgotten (feed)
            elif conn is not unseen:
                if flags & (TH_FIN | TH_RST):
                    return True
                if totlen < 40:
                    return True   # IPv4 length 0 (TSO/GSO on the sending host) or bogus: general path
                if win == 0 or conn.tcp.zw:
                    return True          # zero windows are tracked on the full path (probes)
                paylen = totlen - 20 - ((offx >> 4) << 2)
                if paylen <= 0:
                    # A pure ACK of a tracked connection: nothing to reassemble.
                    conn.touch(no, ts)
                elif caplen < l3 + totlen or not conn.fast_lane(src, sport, seq, paylen, no, ts):
                    return True
            stats.packets += 1
            stats.tcp += 1
            return False
        # The same question for the compiled record loop (wscap/wire/_fastpath.c decide()): it reads
        # these, answers exactly as `want` does, and writes now_ns, the clock and the stats back.
        # Connection.fast_lane runs there too, for a Connection exactly (reading the same fields),
        # and, without stream mode, lanes of its own that do what the full path would: a WebSocket
        # direction's in-order bytes go to its frame scanner (see frames_lane_c), plain HTTP/1 heads
        # and the bodies around them are read as Session's plain fast paths read them (heads_lane_c;
        # it reads Mode.HEAD / Mode.IGNORE off BODY's class), and a server's SYN-ACK and a first FIN
        # are recorded as TcpFlow records them (synack_lane_c, fin_lane_c).
        want.fast = (eoff, l3, conns, source, self, stats, clock, Connection, BODY, want,  # type: ignore[attr-defined]
                     FRAMES, FrameScanner, self.stream, -1 if shard is None else shard)
        return want

    # -- internals ---------------------------------------------------------------
    def _new_connection(self, seg: Segment, key: FlowKey) -> Connection | None:
        flags = seg.flags
        src = (seg.src, seg.sport)
        dst = (seg.dst, seg.dport)
        if flags & TH_SYN and not flags & TH_ACK:
            client, server = src, dst
        elif flags & TH_SYN:
            client, server = dst, src
        elif seg.paylen and looks_like_request(seg.payload):
            client, server = src, dst
        elif seg.paylen and looks_like_response(seg.payload):
            client, server = dst, src
        elif seg.paylen > 5 and looks_like_tls(seg.payload) and seg.payload[5:6] == b"\x01":
            client, server = src, dst        # a ClientHello: the capture began just after the SYN
        else:
            if seg.paylen:
                # First bytes are not HTTP: never interesting, but still a flow an attacker can
                # multiply (one packet each), so it counts under --max-flows like any other.
                self._admit(key)
                self.conns[key] = None
            return None
        self._admit(key)
        conn = Connection(client, server, seg.source, seg.frame, seg.ts_ns, self.limits)
        if self.overlays:
            ov = self.overlays.get(seg.source)
            found = ov.hello_of(seg.frame) if ov is not None else None
            if found is not None:
                conn.session.decrypted(*found)   # its plaintext is parsed as HTTP like any other
        if self.stream and flags & TH_SYN and not flags & TH_ACK:
            self._syn_only.append(conn)
        if not flags & TH_SYN:
            conn.session.add(make("mid-stream-start", "the capture starts after this connection's SYN", seg.frame))
        self.conns[key] = conn
        self.flows_seen += 1
        return conn

    def _admit(self, key: FlowKey) -> None:
        """Make room under --max-flows for a new flow; the one evicted is retired like a closed one."""
        if self.shard_log is not None:
            self.shard_log.admitting(len(self.conns), self.limits.max_flows)
        gone = self.flows.admit(key)
        if gone is not None:
            self.evicted += 1
            self.limits_hit["max_flows"] = self.limits_hit.get("max_flows", 0) + 1
            if gone[1] is not None:
                self._retire(gone[0], gone[1])

    def _absorb_limits(self, conn: Connection) -> None:
        add_hits(self.limits_hit, conn.take_limits().items())

    def _retire(self, key: FlowKey, conn: Connection) -> None:
        self._absorb_limits(conn)
        self._maybe_attempt(conn)
        if self.conns.get(key) is conn:
            del self.conns[key]
        self._list_tls(conn)
        self._spool(conn)

    def _list_tls(self, conn: Connection) -> None:
        """A connection that spoke TLS: say so (SNI, ALPN, ports) rather than nothing at all."""
        if conn.tls is None:
            return
        doc = conn.list_tls(self.tls_docs, self.limits_hit,
                            [ex.id for ex in conn.exchanges if ex.id is not None and ex.id > 0])
        if self.shard_log is not None:
            self.shard_log.listed_tls(self.limits_hit)
        if doc is not None and self.stream:
            self._tls_events.append(Decided("tls", doc))

    def _spool(self, conn: Connection) -> None:
        """The connection is over: its handshakes' documents are final; move them to disk."""
        if conn.spooled:
            return
        conn.spooled = True
        end = self._clock.get(conn.source, self.now_ns)    # "waited" runs to the end of this capture
        add_hits(self.limits_hit, conn.frame_limits())
        for ex in conn.exchanges:
            if ex.id is not None and ex.id > 0:
                self._put(conn.document(ex, end))
        if conn.attempt is not None:
            if self.shard_log is not None:
                # Whether it could be a hop depends on requests the other process may hold: the
                # merge decides, in record order (ShardLog.attempt).
                self.shard_log.attempt(self._no, conn.source, conn.client[0], conn.first_ts)
                self._put(conn.document(conn.attempt, end))
            elif self._could_be_a_hop(conn):
                self._put(conn.document(conn.attempt, end), conn.attempt if self.stream else None)
            else:
                self.unlinked_attempts += 1      # a scan, a health check: no request it could serve
        # The HTTP/2 reader and its session refer to each other; break that so heads and frame
        # summaries are freed now rather than at some later cyclic collection (live too: a full
        # collection in the middle of a burst delays every line behind it).
        conn.session.release()
        if not self.stream:
            conn.attempt = None

    def _could_be_a_hop(self, conn: Connection) -> bool:
        """Did this address receive an upgrade request shortly before it dialled out? Only then can a
        bare connection attempt be a chain's missing hop; keeping the others would let a SYN flood
        grow memory without bound."""
        seen = self._requests_to.get((conn.source, conn.client[0]))
        if not seen:
            return False
        lo = conn.first_ts - self.link_window_ns
        return any(lo <= t <= conn.first_ts + 1_000_000 for t in seen)

    def _maybe_attempt(self, conn: Connection) -> None:
        """A connection that never carried a request is a candidate missing hop (refused, unanswered...)."""
        if not conn.bare_attempt or conn.attempt is not None:
            return
        conn.attempt = Exchange(None, start_ns=conn.first_ts)
        if self.stream:
            self._open.append((conn, conn.attempt))

    def _register(self, conn: Connection, ex: Exchange) -> None:
        if self.shard_log is not None:
            self.shard_log.request(self._no, conn.source, conn.server[0], ex.ts_ns,
                                   self.registered, self.limits.max_handshakes)
        if self.registered >= self.limits.max_handshakes:
            self.limits_hit["max_handshakes"] = self.limits_hit.get("max_handshakes", 0) + 1
            ex.id = -1
            return
        ex.id = self.next_id
        self.next_id += 1
        self.registered += 1
        # Remember when each address received an upgrade request (a bounded, sliding window).
        seen = self._requests_to.setdefault((conn.source, conn.server[0]), deque())
        seen.append(ex.ts_ns)
        while seen and seen[0] < ex.ts_ns - 2 * self.link_window_ns:
            seen.popleft()
        if len(seen) > 4096:
            seen.popleft()
        if self.stream:
            self._undecided.append((conn, ex))
            self._open.append((conn, ex))


__all__ = ["Pipeline", "Options", "Decided", "SCHEMA_VERSION"]

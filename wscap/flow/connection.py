"""One TCP connection's story: reassembled bytes -> HTTP heads -> handshakes -> frames.

A `Connection` receives ordered stream bytes from its two `HalfStream`s (it is
their `StreamSink`) and runs a small per-direction state machine:

    client: HEAD -> (plain request) BODY -> HEAD ... -> (upgrade request) WAIT -> FRAMES | HEAD
    server: HEAD -> BODY -> HEAD ... -> (101) FRAMES | (other) BODY -> HEAD

A connection whose first client bytes are not an HTTP request line is marked
IGNORE at once, so the pipeline can forget it (the fast path). Bytes after an
upgrade request are held (bounded) until the response says whether they are
WebSocket frames or another HTTP request — never parsed as HTTP blindly
(OISF/libhtp#141 is that bug).
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from wscap.judge import checks as hs
from wscap.wire import opinions
from wscap.model.anomaly import Anomaly, Severity, make
from wscap.wire.http1 import HttpHead, find_head_end, looks_like_request, looks_like_response, parse_head
from wscap.model.limits import Limits
from wscap.flow.tcp import TcpEnd, TcpFlow
from wscap.model.events import Conflict, Data, Gap, Overflow, Probe, ProbeKind, TcpEvent
from wscap.wire.http2 import (ENABLE_CONNECT_PROTOCOL, PREFACE, H2Head, H2Reader, check_connect_response,
                    check_extended_connect, error_name)
from wscap.wire.tls import ClientHello, hello_bytes_needed, looks_like_tls, parse_client_hello
from wscap.wire.wsframe import FrameScanner

C2S, S2C = 0, 1
PER_CODE = 8          # connection-level anomalies listed per code (the rest are counted)
HEAD, BODY, WAIT, FRAMES, IGNORE = "head", "body", "wait", "frames", "ignore"
H2 = "h2"               # HTTP/2 frames (prior knowledge, after an h2c 101, or decrypted with ALPN h2)
HELLO = "tls-hello"     # the client's first bytes are a TLS ClientHello: read it, then ignore the rest


def fmt_endpoint(ip: bytes, port: int) -> str:
    if len(ip) == 4:
        return f"{ip[0]}.{ip[1]}.{ip[2]}.{ip[3]}:{port}"
    import ipaddress
    return f"[{ipaddress.IPv6Address(ip)}]:{port}"



@dataclass(slots=True)
class Exchange:
    """One upgrade attempt on a connection; becomes a Handshake in the output."""

    conn: "Connection"
    request: HttpHead | None
    response: HttpHead | None = None
    anomalies: list[Anomaly] = field(default_factory=list)
    client_frames: FrameScanner | None = None
    server_frames: FrameScanner | None = None
    id: int | None = None
    emitted: bool = False

    @property
    def websocket(self) -> bool:
        return self.request is not None and hs.is_websocket_request(self.request)

    @property
    def ts_ns(self) -> int:
        return self.request.ts_ns if self.request is not None else self.conn.first_ts

    def outcome(self) -> str:
        c = self.conn
        if self.request is None:
            if c.tcp.synack_frame is None:
                return "refused" if c.end is not None and c.end.kind == "rst" and c.end.by == "server" else "unanswered"
            return "reset" if c.end is not None and c.end.kind == "rst" else "closed"
        if self.response is not None and self.response.status is not None and self.response.complete:
            return "upgraded" if self.response.status == 101 else "rejected"
        if c.end is not None:
            return "reset" if c.end.kind == "rst" else "closed"
        return "no-response"

    def decided(self, now_ns: int | None, timeout_ns: int) -> bool:
        if self.response is not None or self.conn.end is not None:
            return True
        return now_ns is not None and now_ns - self.ts_ns >= timeout_ns

    def all_anomalies(self) -> list[Anomaly]:
        out = list(self.conn.anomalies) + self.conn.suppressed()
        if self.request is not None:
            out += hs.request_anomalies(self.request, self.response)
        if self.response is not None:
            out += self.response.anomalies
        out += self.anomalies
        for sc in (self.client_frames, self.server_frames):
            if sc is not None:
                out += sc.anomalies
        if self.request is not None:
            out += list(hs.check_request(self.request)) if self.websocket else [
                make("not-websocket-upgrade", "Upgrade: " + ", ".join(self.request.tokens(b"upgrade")) or "none",
                     self.request.frame)]
            if self.response is not None and self.response.status is not None:
                out += list(hs.check_response(self.request, self.response))
            out += self._opinion_anomalies()
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

    def to_json(self, end_ns: int | None = None) -> dict:
        c = self.conn
        frames = []
        for sc in (self.client_frames, self.server_frames):
            if sc is not None:
                frames += sc.frames
        frames.sort(key=lambda f: f.order)
        resp = self.response
        return {
            "id": self.id, "source": c.source,
            "client": fmt_endpoint(*c.client), "server": fmt_endpoint(*c.server),
            "first_frame": c.first_frame, "last_frame": c.last_frame,
            "first_ts": round(c.first_ts / 1e9, 6), "last_ts": round(c.last_ts / 1e9, 6),
            "websocket": self.websocket,
            "request": self.request.to_json() if self.request is not None else None,
            "response": resp.to_json() if resp is not None else None,
            "outcome": self.outcome(),
            "status": resp.status if resp is not None and resp.complete else None,
            "anomalies": [a.to_json() for a in self.all_anomalies()],
            "parsers": self.parsers(),
            "frames": [f.to_json() for f in frames],
            "tcp": {"syn_frame": c.tcp.syn_frame, "synack_frame": c.tcp.synack_frame,
                    "end": c.end.to_json() if c.end else None, "gaps": c.tcp.gaps(),
                    "client_bytes": c.tcp.delivered(C2S), "server_bytes": c.tcp.delivered(S2C)},
            "waited": self.waited(end_ns if end_ns is not None else c.last_ts),
            "http_version": "1.1",
            "h2": None,
            "tls": c.tls_json(),
            "tunnel": c.tunnel,
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
    def websocket(self) -> bool:
        return (self.request.get(b":protocol") or b"").lower() == b"websocket"

    def outcome(self) -> str:
        st = self.response.status if self.response is not None else None
        if st is not None:
            return "upgraded" if 200 <= st < 300 else "rejected"
        if self.reset is not None:
            return "reset"
        c = self.conn
        if c.end is not None:
            return "reset" if c.end.kind == "rst" else "closed"
        return "no-response"

    def decided(self, now_ns: int | None, timeout_ns: int) -> bool:
        return self.reset is not None or Exchange.decided(self, now_ns, timeout_ns)

    def all_anomalies(self) -> list[Anomaly]:
        out = list(self.conn.anomalies) + self.conn.suppressed() + self.request.anomalies + self.anomalies
        if self.response is not None:
            out += self.response.anomalies
        for sc in (self.client_frames, self.server_frames):
            if sc is not None:
                out += sc.anomalies
        if self.websocket:
            out += check_extended_connect(self.request, self.enabled)
            if self.response is not None:
                out += check_connect_response(self.request, self.response)
        else:
            out.append(make("not-websocket-upgrade", ":protocol " + (self.request.get(b":protocol") or b"").decode(
                "latin-1"), self.request.frame))
        if self.reset is not None:
            by, code, frame, _ts = self.reset
            out.append(make("h2-stream-reset", f"the {by} reset stream {self.stream_id} with RST_STREAM "
                            f"{error_name(code)}", frame))
        return out

    def parsers(self) -> dict:
        # llhttp and h11 parse HTTP/1 heads only; an HTTP/2 header list has no bytes for them to judge.
        return {"llhttp": {"request": None, "response": None}, "h11": {"request": None, "response": None}}

    def to_json(self, end_ns: int | None = None) -> dict:
        d = Exchange.to_json(self, end_ns)
        d["http_version"] = "2"
        d["h2"] = {"stream_id": self.stream_id, "mode": self.h2_mode,
                   "enable_connect_protocol": self.enabled,
                   "reset": None if self.reset is None else {"by": self.reset[0], "code": error_name(self.reset[1]),
                                                             "frame": self.reset[2]},
                   "end_stream": {"client": self.ended[C2S], "server": self.ended[S2C]}}
        return d


class Connection:
    """One connection: its identity, its TCP flow (`tcp`) and its HTTP/WebSocket state.

    The owner feeds TCP events (`handle`) from `tcp.segment()`; the tshark engine feeds
    reassembled bytes straight to `on_data` / `on_gap` (see ../shared/SESSION_API.md)."""

    # Slots: up to --max-flows of these live at once (a SYN flood tracks every one of them).
    __slots__ = ("anomalies", "attempt", "body_left", "buf", "client", "early_response", "exchanges",
                 "first_frame", "first_ts", "head_first_frame", "head_last", "held", "held_frames", "last_frame",
                 "last_ts", "limits", "limits_hit", "mode", "noted", "pending", "plain_requests",
                 "server", "source", "spooled", "tcp", "tls", "tls_frame",
                 "h2", "h2_mode", "h2_enable", "h2_streams", "server_first", "tunnel")

    def __init__(self, client: tuple[bytes, int], server: tuple[bytes, int], source: int,
                 frame: int, ts_ns: int, limits: Limits) -> None:
        self.client = client
        self.server = server
        self.source = source
        self.limits = limits
        self.tcp = TcpFlow(limits.flow_buffer)
        self.first_frame = self.last_frame = frame
        self.first_ts = self.last_ts = ts_ns
        self.anomalies: list[Anomaly] = []
        self.exchanges: list[Exchange] = []
        self.mode = [HEAD, HEAD]
        self.buf = [bytearray(), bytearray()]
        self.head_first_frame: list[int | None] = [None, None]
        self.head_last: list[tuple[int, int] | None] = [None, None]   # (frame, ts) of a head's latest bytes
        self.body_left = [0, 0]
        # requests awaiting responses (None = plain request); a deque: answered from the front
        self.pending: deque[Exchange | None] = deque()
        self.held = bytearray()                      # client bytes after an upgrade request, until decided
        self.held_frames: list[tuple[int, int]] = []
        self.plain_requests = 0
        self.limits_hit: dict[str, int] = {}
        self.early_response: tuple | None = None   # a response head that beat its request head
        self.attempt: Exchange | None = None       # set when this connection is a bare attempt
        self.spooled = False                        # its handshakes' documents are final and on disk
        self.noted: dict[str, int] = {}             # connection-level anomalies seen, per code
        self.tls: ClientHello | None = None         # TLS where HTTP was expected (or decrypted, see tls_json)
        self.tls_frame: int | None = None           # frame that completed (or cut) the ClientHello
        self.h2: H2Reader | None = None
        self.h2_mode: str | None = None              # prior-knowledge | h2c-upgrade | tls
        self.h2_enable: bool | None = None           # server's SETTINGS_ENABLE_CONNECT_PROTOCOL (None: unseen)
        self.h2_streams: dict[int, H2Exchange] = {}
        # Server bytes that came before the client said anything: an HTTP/2 server's SETTINGS
        # (it may send them before the client's preface arrives). Replayed if HTTP/2 starts.
        self.server_first: tuple[bytearray, int, int] | None = None
        self.tunnel: list[dict] | None = None        # the encapsulation the connection came through

    # -- TCP facts (owned by self.tcp) ------------------------------------------
    @property
    def end(self) -> TcpEnd | None:
        return self.tcp.end

    @property
    def saw_payload(self) -> bool:
        return self.tcp.saw_payload

    @property
    def syn_frame(self) -> int | None:
        return self.tcp.syn_frame

    # -- fast lane -----------------------------------------------------------
    def fast_lane(self, src: bytes, sport: int, seq: int, paylen: int, no: int, ts_ns: int) -> bool:
        """Account an in-order segment whose bytes are only counted (a body being skipped).

        Called from the capture reader's record filter for packets without SYN/FIN/RST. Returns
        False whenever the full path is needed: another mode, out of order, or the body ends
        inside this segment.
        """
        direction = C2S if src == self.client[0] and sport == self.client[1] else S2C
        if self.mode[direction] != BODY:
            return False
        left = self.body_left[direction]
        if paylen <= 0 or paylen >= left or not self.tcp.advance(direction, seq, paylen):
            return False
        self.body_left[direction] = left - paylen
        self.last_frame = no
        self.last_ts = ts_ns
        return True

    def touch(self, frame: int, ts_ns: int) -> None:
        """A segment of this connection passed (a pure ACK on the fast path, say)."""
        self.last_frame = frame
        self.last_ts = ts_ns

    # -- helpers -------------------------------------------------------------
    @property
    def ignored(self) -> bool:
        return self.mode[C2S] == IGNORE and self.mode[S2C] in (IGNORE, HEAD) and not self.exchanges

    def _note(self, anomaly: Anomaly) -> None:
        """Connection-level anomalies, at most PER_CODE of each code: a hostile or very lossy
        capture can produce one per segment, and the count (tcp.gaps, suppressed) says the rest."""
        n = self.noted.get(anomaly.code, 0)
        self.noted[anomaly.code] = n + 1
        if n < PER_CODE:
            self.anomalies.append(anomaly)
        elif n == PER_CODE:
            self._hit("anomalies")

    def suppressed(self) -> list[Anomaly]:
        return [make("anomalies-suppressed", f"{n - PER_CODE} more '{code}' anomalies on this connection "
                     f"were not listed", None) for code, n in self.noted.items() if n > PER_CODE]

    def gaps(self) -> int:
        return self.tcp.gaps()

    def _hit(self, name: str) -> None:
        self.limits_hit[name] = self.limits_hit.get(name, 0) + 1

    def current(self) -> Exchange | None:
        return self.exchanges[-1] if self.exchanges else None

    # -- TCP events --------------------------------------------------------
    def handle(self, events: list[TcpEvent]) -> None:
        """The TCP flow's events for one segment, in order (Opened / Closed are the owner's)."""
        for ev in events:
            cls = ev.__class__
            if cls is Data:
                self._data(*ev)             # type: ignore[misc]
            elif cls is Gap:
                self.on_gap(*ev)            # type: ignore[misc]
            elif cls is Conflict:
                self.on_conflict(*ev)       # type: ignore[misc]
            elif cls is Probe:
                self.on_probe(*ev)          # type: ignore[misc]
            elif cls is Overflow:
                self.on_overflow(*ev)       # type: ignore[misc]

    def on_data(self, direction: int, data: bytes, frame: int, ts_ns: int) -> None:
        """Stream bytes from elsewhere than `tcp` (the tshark engine): counted, then read."""
        self.tcp.seen(direction, len(data))
        self._data(direction, data, frame, ts_ns)

    def _data(self, direction: int, data: bytes, frame: int, ts_ns: int) -> None:
        if direction == C2S:
            self._client_data(data, frame, ts_ns)
        else:
            self._server_data(data, frame, ts_ns)
        # Retransmission conflicts only matter while heads are read; frames and bodies are not kept.
        self.tcp.keep_recent(direction, self.mode[direction] in (HEAD, WAIT))

    def on_gap(self, direction: int, length: int, frame: int, ts_ns: int) -> None:
        who = "client" if direction == C2S else "server"
        self._note(make("tcp-gap", f"{length} {who} bytes missing before frame {frame}", frame))
        mode = self.mode[direction]
        if mode == HELLO:
            self.tls = parse_client_hello(bytes(self.buf[C2S])) or ClientHello()
            self.tls.complete = False
            self.buf[C2S].clear()
            self.mode[C2S] = IGNORE
            return
        if mode == BODY:
            self.body_left[direction] -= length
            if self.body_left[direction] <= 0:
                self.mode[direction] = HEAD
                self.body_left[direction] = 0
            return
        if mode == FRAMES:
            ex = self.current()
            sc = ex and (ex.client_frames if direction == C2S else ex.server_frames)
            if sc is not None and not sc.desynced:
                sc.desynced = True
                sc.anomalies.append(make("frames-desync", f"{who} frames lost sync at a {length}-byte gap", frame))
            return
        if mode == HEAD and self.buf[direction]:
            # A hole inside a head: the head cannot be trusted past it.
            self.buf[direction].clear()
        if mode != FRAMES:
            self.mode[direction] = IGNORE if mode != WAIT else WAIT

    def on_conflict(self, direction: int, offset: int, old_frame: int, new_frame: int) -> None:
        who = "client" if direction == C2S else "server"
        self._note(make(
            "retransmission-conflict",
            f"{who} bytes at stream offset {offset} differ between frame {old_frame} and frame {new_frame}; "
            f"kept frame {old_frame}'s", new_frame))

    def on_overflow(self, direction: int, limit: int, frame: int, first: bool) -> None:
        if first:
            who = "client" if direction == C2S else "server"
            self.anomalies.append(make("flow-buffer-full",
                                       f"{who} out-of-order bytes exceeded the {limit}-byte flow buffer "
                                       f"at frame {frame}; the hole before them was declared a gap", frame))

    def on_probe(self, direction: int, kind: str, offset: int, frame: int) -> None:
        who = "client" if direction == C2S else "server"
        if kind == ProbeKind.KEEP_ALIVE:
            self._note(make("tcp-keep-alive", f"{who} keep-alive probe at stream offset {offset} (snd.nxt-1); "
                            f"not data, not a conflict", frame))
        else:
            self._note(make("tcp-zero-window-probe", f"{who} probed a zero window with 1 byte at stream offset "
                            f"{offset}; later data at that offset is kept", frame))

    # -- client side ---------------------------------------------------------
    def _frames_or_ignored(self, direction: int, data: bytes, frame: int, ts_ns: int) -> bool:
        """Bytes of a direction that no longer carries HTTP: frames after a 101, or nothing at all."""
        mode = self.mode[direction]
        if mode == FRAMES:
            ex = self.current()
            sc = None if ex is None else (ex.client_frames if direction == C2S else ex.server_frames)
            if sc is not None:
                sc.feed(data, frame, ts_ns)
            return True
        if mode == H2:
            self.h2.feed(direction, data, frame, ts_ns, self.limits.flow_buffer)
            return True
        return mode == IGNORE

    def _client_data(self, data: bytes, frame: int, ts_ns: int) -> None:
        if self._frames_or_ignored(C2S, data, frame, ts_ns):
            return
        mode = self.mode[C2S]
        if mode == HELLO:
            self._client_hello(data, frame)
            return
        if mode == WAIT:
            if len(self.held) < self.limits.flow_buffer:
                self.held += data
                self.held_frames.append((frame, ts_ns))
            return
        if mode == BODY:
            n = min(len(data), self.body_left[C2S])
            self.body_left[C2S] -= n
            data = data[n:]
            if self.body_left[C2S]:
                return
            self.mode[C2S] = HEAD
            if not data:
                return
        self._client_heads(data, frame, ts_ns)

    def _client_heads(self, data: bytes, frame: int, ts_ns: int) -> None:
        buf = self.buf[C2S]
        if not buf and len(data) > 1024 and (self.plain_requests or self.exchanges):
            data = self._skip_plain_heads(data, frame, ts_ns)
            if not data:
                return
        while data or buf:
            if len(buf) < 24 and not self.exchanges and not self.plain_requests:
                seen = bytes(buf) + data[:24 - len(buf)]
                if seen and seen == PREFACE[:len(seen)]:
                    # HTTP/2 with prior knowledge (or decrypted ALPN h2): wait for the whole preface,
                    # since "PRI" alone could still be an HTTP/1 method.
                    if not buf:
                        self.head_first_frame[C2S] = frame
                    if len(seen) < len(PREFACE):
                        buf += data
                        return
                    allb = bytes(buf) + data
                    buf.clear()
                    self._start_h2("tls" if self.tls is not None else "prior-knowledge", allb, frame, ts_ns)
                    return
            if len(buf) < 24:
                if not looks_like_request(bytes(buf) + data[:24]):
                    if not buf and not self.exchanges and not self.plain_requests and looks_like_tls(data):
                        self.mode[C2S] = HELLO
                        self.tls_frame = frame
                        self._client_hello(data, frame)
                        return
                    self.mode[C2S] = IGNORE
                    buf.clear()
                    return
                if not buf:
                    self.head_first_frame[C2S] = frame
            got = self._next_head(C2S, "request", data, frame, ts_ns)
            data = b""
            if got is None:
                return
            if isinstance(got, HttpHead):
                self._request_done(got, frame, ts_ns)
                return
            raw, rest = got
            if not _UPGRADE_HINT.search(raw):
                # Fast path: a plain request only matters for where the next one starts.
                self.plain_requests += 1
                self.pending.append(None)
                left = self._skip_body(C2S, _quick_length(raw, None), rest)
                if left is None:
                    return
                data = left
                continue
            head = parse_head(raw, "request", frame)
            head.first_frame = self.head_first_frame[C2S]
            head.ts_ns = ts_ns
            upgrade = self._request_done(head, frame, ts_ns)
            if upgrade:
                ex = self.current()
                if self.mode[C2S] == FRAMES and ex is not None and ex.client_frames is not None:
                    ex.client_frames.feed(rest, frame, ts_ns)   # the 101 came first (early response)
                    return
                self.mode[C2S] = WAIT
                if rest:
                    self.held += rest
                    self.held_frames.append((frame, ts_ns))
                return
            cl = _content_length(head)
            if cl is None:     # chunked or unknown request body: cannot follow further requests
                self.mode[C2S] = IGNORE
                return
            if cl:
                n = min(cl, len(rest))
                rest = rest[n:]
                if cl > n:
                    self.body_left[C2S] = cl - n
                    self.mode[C2S] = BODY
                    return
            data = rest

    # -- HTTP/2 (RFC 8441 WebSockets) ---------------------------------------------
    def _start_h2(self, mode: str, client_bytes: bytes, frame: int, ts_ns: int) -> None:
        self.h2_mode = mode
        lim = self.limits
        self.h2 = H2Reader(self, lim.hpack_table, lim.head_bytes, lim.h2_header_bytes)
        self.mode[C2S] = self.mode[S2C] = H2
        self.buf[S2C].clear()
        if self.server_first is not None:
            early, fr, t = self.server_first
            self.server_first = None
            self.h2.feed(S2C, bytes(early), fr, t, self.limits.flow_buffer)
        if client_bytes:
            self.h2.feed(C2S, client_bytes, frame, ts_ns, self.limits.flow_buffer)

    def h2_settings(self, d: int, settings: dict, frame: int) -> None:
        if d == S2C:
            if ENABLE_CONNECT_PROTOCOL in settings:
                self.h2_enable = settings[ENABLE_CONNECT_PROTOCOL] == 1
            elif self.h2_enable is None:
                self.h2_enable = False        # absent means 0 until a later SETTINGS says otherwise

    def h2_headers(self, d: int, stream: int, headers: list, end_stream: bool, frame: int, ts_ns: int) -> None:
        if d == C2S:
            if stream in self.h2_streams:
                return                          # trailers
            head = H2Head("request", headers, frame, ts_ns, end_stream)
            if head.method == b"CONNECT" and head.has(b":protocol"):
                ex = H2Exchange(self, head, stream_id=stream, h2_mode=self.h2_mode or "prior-knowledge",
                                enabled=self.h2_enable)
                if end_stream:
                    ex.ended[C2S] = frame           # a CONNECT that ends its own stream cannot carry frames
                self.exchanges.append(ex)
                self.h2_streams[stream] = ex
            return
        ex = self.h2_streams.get(stream)
        if ex is None or ex.response is not None:
            return
        head = H2Head("response", headers, frame, ts_ns, end_stream)
        st = head.status
        if st is not None and 100 <= st < 200:
            return                              # interim
        ex.response = head
        if end_stream and ex.ended[S2C] is None:
            ex.ended[S2C] = frame                   # e.g. a 403 sent as HEADERS with END_STREAM
        if ex.websocket and st is not None and 200 <= st < 300:
            deflate = "permessage-deflate" in [e.split(";")[0].strip() for e in head.tokens(b"sec-websocket-extensions")]
            lim, order = self.limits, [0]
            ex.server_frames = FrameScanner("server", deflate, lim.frames_per_direction, lim.preview_bytes,
                                            lim.inflate_bytes, counter=order)
            ex.client_frames = FrameScanner("client", deflate, lim.frames_per_direction, lim.preview_bytes,
                                            lim.inflate_bytes, counter=order)

    def h2_data(self, d: int, stream: int, chunk: bytes, end: bool, frame: int, ts_ns: int) -> bool:
        ex = self.h2_streams.get(stream)
        if ex is None:
            return False
        if end:
            if ex.ended[d] is None:
                ex.ended[d] = frame
            return True
        sc = ex.client_frames if d == C2S else ex.server_frames
        if sc is None:
            return False                        # data before the 2xx: not WebSocket frames yet
        sc.feed(chunk, frame, ts_ns)
        return True

    def h2_reset(self, d: int, stream: int, code: int, frame: int, ts_ns: int) -> None:
        ex = self.h2_streams.get(stream)
        if ex is not None and ex.reset is None:
            ex.reset = ("client" if d == C2S else "server", code, frame, ts_ns)

    def h2_goaway(self, d: int, last_stream: int, code: int, frame: int, ts_ns: int) -> None:
        if code:
            self._note(make("h2-goaway", f"the {'client' if d == C2S else 'server'} sent GOAWAY "
                            f"{error_name(code)} (last stream {last_stream})", frame))

    def h2_anomaly(self, anomaly: Anomaly) -> None:
        self._note(anomaly)

    def h2_limit(self, name: str, anomaly: Anomaly) -> None:
        """A bound on attacker-controlled HTTP/2 state was hit: counted, and said on the connection."""
        self._hit(name)
        self._note(anomaly)

    def _client_hello(self, data: bytes, frame: int) -> None:
        """Buffer the ClientHello (it may span segments: post-quantum key shares make it ~1.8 KB),
        read SNI/ALPN/versions from it, then stop looking at this direction."""
        buf = self.buf[C2S]
        buf += data
        need = hello_bytes_needed(bytes(buf[:9]))
        self.tls_frame = frame
        if need is not None and len(buf) < need and len(buf) < self.limits.head_bytes:
            return
        self.tls = parse_client_hello(bytes(buf)) or ClientHello(complete=False)
        buf.clear()
        self.mode[C2S] = IGNORE

    def tls_json(self) -> dict | None:
        return None if self.tls is None else self.tls.to_json()

    def _request_done(self, head: HttpHead, frame: int, ts_ns: int) -> bool:
        head.ts_ns = ts_ns
        head.frame = frame
        if not hs.is_upgrade_request(head):
            self.plain_requests += 1
            self.pending.append(None)
            return False
        ex = Exchange(self, head)
        if self.plain_requests:
            ex.anomalies.append(make("keep-alive-before-upgrade",
                                     f"{self.plain_requests} plain request(s) preceded the upgrade", frame))
        self.exchanges.append(ex)
        self.pending.append(ex)
        if self.early_response is not None:
            early, self.early_response = self.early_response, None
            self.mode[S2C] = HEAD
            self._response_done(*early)
        return True


    def flush_partial_heads(self, frame: int, ts_ns: int) -> None:
        """The connection ended with a head still open: keep what came, flagged incomplete."""
        if self.mode[C2S] == HELLO:
            self.tls = parse_client_hello(bytes(self.buf[C2S])) or ClientHello(complete=False)
            self.tls.complete = False
            self.buf[C2S].clear()
            self.mode[C2S] = IGNORE
        buf = self.buf[S2C]
        ex = self._awaiting_exchange()
        if buf and ex is not None and self.mode[S2C] == HEAD:
            # The head's evidence is the frame holding its last byte, not the FIN/RST that ended it.
            hframe, hts = self.head_last[S2C] or (frame, ts_ns)
            head = parse_head(bytes(buf), "response", hframe)
            head.complete = False
            head.first_frame = self.head_first_frame[S2C]
            head.ts_ns = hts
            head.anomalies.append(make("head-incomplete", f"the response head was never terminated: {len(buf)} "
                                       f"bytes without an empty line before the connection ended (frame {frame})",
                                       hframe))
            buf.clear()
            ex.response = head
            self.mode[S2C] = IGNORE
        cbuf = self.buf[C2S]
        if cbuf and self.mode[C2S] == HEAD and looks_like_request(bytes(cbuf[:24])):
            hframe, hts = self.head_last[C2S] or (frame, ts_ns)
            head = parse_head(bytes(cbuf), "request", hframe)
            head.complete = False
            head.first_frame = self.head_first_frame[C2S]
            head.anomalies.append(make("head-incomplete", f"the request head was never terminated ({len(cbuf)} bytes)",
                                       hframe))
            cbuf.clear()
            if hs.is_upgrade_request(head):
                self._request_done(head, hframe, hts)
            self.mode[C2S] = IGNORE

    # -- server side ---------------------------------------------------------
    def _server_data(self, data: bytes, frame: int, ts_ns: int) -> None:
        if self._frames_or_ignored(S2C, data, frame, ts_ns):
            return
        mode = self.mode[S2C]
        if mode == BODY:
            n = min(len(data), self.body_left[S2C])
            self.body_left[S2C] -= n
            data = data[n:]
            if self.body_left[S2C]:
                return
            self.mode[S2C] = HEAD
            if not data:
                return
        buf = self.buf[S2C]
        if not buf and len(data) > 1024 and self.pending and self.pending[0] is None:
            data = self._skip_plain_responses(data, frame, ts_ns)
            if not data:
                return
        while data or buf:
            if len(buf) < 16:
                first = bytes(buf) + data[:16]
                if not looks_like_response(first):
                    if not buf and not self.exchanges and not self.plain_requests and self.mode[C2S] == HEAD:
                        if self.server_first is None:
                            self.server_first = (bytearray(), frame, ts_ns)
                        if len(self.server_first[0]) + len(data) <= self.limits.flow_buffer:
                            self.server_first[0].extend(data)
                            return
                    ex = self._awaiting_exchange()
                    if ex is not None:
                        ex.anomalies.append(make("non-http-response",
                                                 f"server's first bytes are {first!r}, not an HTTP/1 status line", frame))
                    self.mode[S2C] = IGNORE
                    buf.clear()
                    return
                if not buf:
                    self.head_first_frame[S2C] = frame
            got = self._next_head(S2C, "response", data, frame, ts_ns)
            data = b""
            if got is None:
                return
            if isinstance(got, HttpHead):
                self._response_done(got, b"", frame, ts_ns)
                return
            raw, rest = got
            if self.pending and self.pending[0] is None and not _UPGRADE_HINT.search(raw):
                m = _STATUS.match(raw)
                if m:
                    # Fast path: the answer to a plain request; only its body length matters.
                    status = int(m.group(1))
                    if not (100 <= status < 200):
                        self.pending.popleft()
                    left = self._skip_body(S2C, _quick_length(raw, status), rest)
                    if left is None:
                        return
                    data = left
                    continue
            head = parse_head(raw, "response", frame)
            head.first_frame = self.head_first_frame[S2C]
            head.ts_ns = ts_ns
            if not self.pending:
                # Response before the request head was complete: keep it until the request is.
                if self.mode[C2S] == HEAD and self.buf[C2S]:
                    head.anomalies.append(make("response-before-request",
                                               "response head arrived before the request head was complete", frame))
                    self.early_response = (head, rest, frame, ts_ns)
                    self.mode[S2C] = WAIT
                    return
            data = self._response_done(head, rest, frame, ts_ns)
            if self.mode[S2C] != HEAD:
                return

    def _skip_plain_heads(self, data: bytes, frame: int, ts_ns: int) -> bytes:
        """Pipelined plain requests (no upgrade, no body running past the segment), counted by
        offset in one pass. The general path copies the rest of the segment per head, which made a
        segment of thousands of tiny heads quadratic. -> the bytes from the first head it leaves
        to the general path (an upgrade, a body, a head that does not end here)."""
        off, n = 0, len(data)
        while off < n:
            end = find_head_end(data, off)
            if end is None or end - off > self.limits.head_bytes:
                break
            raw = data[off:end]
            if not looks_like_request(raw[:24]) or _UPGRADE_HINT.search(raw):
                break
            length = _quick_length(raw, None)
            if length is None or length > n - end:
                break
            self.plain_requests += 1
            self.pending.append(None)
            off = end + length
        if not off:
            return data
        self.head_last[C2S] = (frame, ts_ns)
        return data[off:]

    def _skip_plain_responses(self, data: bytes, frame: int, ts_ns: int) -> bytes:
        """The answers to pipelined plain requests, counted off by offset in one pass (as
        `_skip_plain_heads`); -> the bytes from the first response it leaves to the general path."""
        off, n = 0, len(data)
        pending = self.pending
        while off < n and pending and pending[0] is None:
            end = find_head_end(data, off)
            if end is None or end - off > self.limits.head_bytes:
                break
            raw = data[off:end]
            m = _STATUS.match(raw)
            if not m or _UPGRADE_HINT.search(raw):
                break
            status = int(m.group(1))
            length = _quick_length(raw, status)
            if length is None or length > n - end:
                break
            if not (100 <= status < 200):
                pending.popleft()
            off = end + length
        if not off:
            return data
        self.head_last[S2C] = (frame, ts_ns)
        return data[off:]

    def _next_head(self, direction: int, kind: str, data: bytes, frame: int,
                   ts_ns: int) -> tuple[bytes, bytes] | HttpHead | None:
        """Buffer `data` for a head: -> (raw head, bytes after it), None while it is incomplete, or
        the head parsed as far as the limit (complete=False) when it outgrows `head_bytes`."""
        buf = self.buf[direction]
        start = max(0, len(buf) - 3)          # the terminator may straddle the previous chunk
        buf += data
        if data:
            self.head_last[direction] = (frame, ts_ns)
        end = find_head_end(buf, start)
        if end is not None:
            raw, rest = bytes(buf[:end]), bytes(buf[end:])
            buf.clear()
            return raw, rest
        if len(buf) <= self.limits.head_bytes:
            return None
        self._hit("head_bytes")
        head = parse_head(bytes(buf[:self.limits.head_bytes]), kind, frame)
        head.complete = False
        head.ts_ns = ts_ns
        head.anomalies.append(make("head-too-large", f"{kind} head exceeds {self.limits.head_bytes} bytes", frame))
        buf.clear()
        self.mode[direction] = IGNORE
        return head

    def _skip_body(self, direction: int, length: int | None, rest: bytes) -> bytes | None:
        """Skip a message body; -> the bytes after it, or None when the stream is now in BODY/IGNORE."""
        if length is None:           # chunked / close-delimited: cannot follow this stream further
            self.mode[direction] = IGNORE
            return None
        if length > len(rest):
            self.body_left[direction] = length - len(rest)
            self.mode[direction] = BODY
            return None
        return rest[length:]

    def _awaiting_exchange(self) -> Exchange | None:
        for p in self.pending:
            if p is not None and p.response is None:
                return p
        return None

    def _response_done(self, head: HttpHead, rest: bytes, frame: int, ts_ns: int) -> bytes:
        """Match a response to the oldest pending request; return bytes still to parse as heads."""
        status = head.status or 0
        if 100 <= status < 200 and status != 101:
            return rest                       # interim response: the request stays pending
        ex = self.pending.popleft() if self.pending else None
        if ex is None:
            cl = _content_length(head)
            if status in (204, 304) or cl == 0:
                return rest
            if cl is None:
                self.mode[S2C] = IGNORE
                return b""
            n = min(cl, len(rest))
            if cl > n:
                self.body_left[S2C] = cl - n
                self.mode[S2C] = BODY
                return b""
            return rest[n:]
        ex.response = head
        if status == 101 and not ex.websocket and "h2c" in ex.request.tokens(b"upgrade"):
            # RFC 7540 §3.2: after this 101 both sides speak HTTP/2; WebSockets may follow as streams.
            held, self.held = bytes(self.held), bytearray()
            fr, t = self.held_frames[0] if self.held_frames else (frame, ts_ns)
            self.held_frames = []
            self._start_h2("h2c-upgrade", held, fr, t)
            if rest:
                self.h2.feed(S2C, rest, frame, ts_ns, self.limits.flow_buffer)
            return b""
        if status == 101 and (not ex.websocket or "websocket" not in head.tokens(b"upgrade")):
            # Upgrade to another protocol (Upgrade: tcp): its bytes are not frames. Nor after a 101
            # without 'Upgrade: websocket': the client fails the connection (RFC 6455 §4.1), no
            # WebSocket exists, and what follows (a proxy's chunked body) is not frames either.
            self.mode[S2C] = self.mode[C2S] = IGNORE
            self.held = bytearray()
            return b""
        if status == 101:
            deflate = hs.deflate_negotiated(head)
            lim = self.limits
            order = [0]
            ex.server_frames = FrameScanner("server", deflate, lim.frames_per_direction, lim.preview_bytes,
                                            lim.inflate_bytes, counter=order)
            ex.client_frames = FrameScanner("client", deflate, lim.frames_per_direction, lim.preview_bytes,
                                            lim.inflate_bytes, counter=order)
            self.mode[S2C] = FRAMES
            self.mode[C2S] = FRAMES
            # Client bytes held since the request were sent before this 101 arrived: scan them first.
            held, self.held = bytes(self.held), bytearray()
            if held:
                fr, t = self.held_frames[0]
                ex.client_frames.feed(held, fr, t)
            self.held_frames = []
            if rest:
                ex.anomalies.append(make("data-with-101", f"{len(rest)} bytes of WebSocket data follow the 101 head "
                                         f"in the same segment (frame {frame})", frame))
                ex.server_frames.feed(rest, frame, ts_ns)
            return b""
        # A refused upgrade: the connection goes on as plain HTTP (both sides).
        if self.mode[C2S] == WAIT:
            self.mode[C2S] = HEAD
            held, self.held = bytes(self.held), bytearray()
            if held:
                fr, t = self.held_frames[0]
                self.held_frames = []
                self._client_heads(held, fr, t)
        cl = _content_length(head)
        if cl is None or self.mode[S2C] == IGNORE:
            self.mode[S2C] = IGNORE if cl is None else self.mode[S2C]
            return b""
        n = min(cl, len(rest))
        if cl > n:
            self.body_left[S2C] = cl - n
            self.mode[S2C] = BODY
            return b""
        return rest[n:]


_UPGRADE_HINT = re.compile(rb"(?i)upgrade|sec-websocket")
_STATUS = re.compile(rb"(?:\r?\n)*HTTP/\d\.\d (\d{3})")
_CL = re.compile(rb"(?im)^content-length[ \t]*:[ \t]*(\d+)[ \t]*\r?$")
_TE_CHUNKED = re.compile(rb"(?im)^transfer-encoding[ \t]*:[^\n]*chunked")


def _quick_length(raw: bytes, status: int | None) -> int | None:
    """Body length of a plain message without a full parse (None: chunked / until close)."""
    if status is not None and (status < 200 or status in (204, 304)):
        return 0
    if _TE_CHUNKED.search(raw):
        return None
    m = _CL.search(raw)
    if m:
        return int(m.group(1))
    return 0 if status is None else None


_PARSERS = {("llhttp", "request"): opinions.llhttp_request, ("llhttp", "response"): opinions.llhttp_response,
            ("h11", "request"): opinions.h11_request, ("h11", "response"): opinions.h11_response}


def opinion_anomalies(heads) -> list[Anomaly]:
    """llhttp-rejects / h11-rejects for each complete head (shared with the tshark engine).

    A request that the server answered 101 anyway is a warning, not an error: the server (not a
    Node one) accepted it, and the failure, if any, is the response's."""
    out = []
    resp = heads[1] if len(heads) > 1 else None
    accepted = resp is not None and resp.complete and resp.status == 101
    for head in heads:
        if head is None or not head.complete:
            continue
        o = parser_opinion(head, "llhttp")
        if o.accepts is False:
            if head.kind == "request" and accepted:
                out.append(Anomaly("llhttp-rejects", Severity.WARN, f"Node's llhttp rejects the request: {o.error} "
                                   f"(the server answered 101 anyway)", head.frame))
                continue
            out.append(make("llhttp-rejects", f"Node's llhttp rejects the {head.kind}: {o.error}", head.frame))
        o = parser_opinion(head, "h11")
        if o.accepts is False:
            out.append(make("h11-rejects", f"h11 rejects the {head.kind}: {o.error}", head.frame))
    return out


def parser_opinion(head: HttpHead, parser: str) -> opinions.ParserOpinion:
    """What `parser` says about this head; computed once per head (heads are immutable once parsed)."""
    o = head.opinions.get(parser)
    if o is None:
        if parser == "h11" and _clean_for_h11(head):
            o = opinions.ParserOpinion(True, None)
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
    """
    if head.anomalies or not head.complete:
        return False
    if head.has(b"content-length") or head.has(b"transfer-encoding"):
        return False
    if head.kind == "request":
        return head.version == b"HTTP/1.1" and len(head.get_all(b"host")) == 1 and bool(_TARGET.match(head.target))
    return head.version == b"HTTP/1.1" and head.status is not None and 100 <= head.status <= 999


_TARGET = re.compile(rb"^[\x21-\x7e]+$")


def _content_length(head: HttpHead) -> int | None:
    """Body length to skip; None when it cannot be known without parsing (chunked, close-delimited)."""
    if head.kind == "response" and head.status is not None and (head.status < 200 or head.status in (204, 304)):
        return 0
    if "chunked" in head.tokens(b"transfer-encoding"):
        return None
    v = head.get(b"content-length")
    if v is None:
        return 0 if head.kind == "request" else None
    try:
        return max(0, int(v.split(b",")[0].strip()))
    except ValueError:
        return None

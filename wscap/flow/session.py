"""One connection's HTTP/WebSocket story: TCP events in -> heads -> exchanges -> frames.

A `Session` consumes the events of `wscap.flow.tcp.TcpFlow` (or, from the tshark
engine, reassembled bytes through `on_data` / `on_gap`) and runs a small
per-direction state machine whose modes and allowed moves are `Mode` and `NEXT`:

    client: HEAD -> (plain request) BODY -> HEAD ... -> (upgrade request) WAIT -> FRAMES | HEAD
    server: HEAD -> BODY -> HEAD ... -> (101) FRAMES | (other) BODY -> HEAD
    either: -> H2 (prior knowledge, h2c 101, ALPN h2); client: HEAD -> HELLO (TLS) -> IGNORE

A connection whose first client bytes are not an HTTP request line is marked
IGNORE at once, so the owner can forget it (the fast path). Bytes after an
upgrade request are held (bounded) until the response says whether they are
WebSocket frames or another HTTP request — never parsed as HTTP blindly
(OISF/libhtp#141 is that bug). `take()` returns what happened as session events
(wscap.model.events); the exchanges are `wscap.flow.handshake` values.
"""
from __future__ import annotations

from collections import deque
from enum import Enum

from wscap.flow.framing import STATUS, UPGRADE_HINT, content_length, plain_requests, plain_responses, quick_length
from wscap.flow.h2session import H2Mixin
from wscap.flow.notes import Notes
from wscap.flow.handshake import Exchange, H2Exchange
from wscap.judge import checks as hs
from wscap.model.anomaly import make
from wscap.model.events import C2S, S2C, HeadSeen, Hello, SessionEvent, Upgraded
from wscap.model.limits import Limits
from wscap.wire.http1 import HttpHead, find_head_end, looks_like_request, looks_like_response, parse_head
from wscap.wire.http2 import PREFACE, H2Reader
from wscap.wire.tls import ClientHello, hello_bytes_needed, looks_like_tls, parse_client_hello
from wscap.wire.wsframe import FrameScanner



class Mode(Enum):
    """What the next bytes of one direction are read as."""

    HEAD = "head"            # an HTTP/1 head
    BODY = "body"            # a plain message's body, skipped by length (body_left)
    WAIT = "wait"            # client bytes after an upgrade request: held until the response decides
    FRAMES = "frames"        # WebSocket frames after a 101
    H2 = "h2"                # HTTP/2 frames (prior knowledge, after an h2c 101, or decrypted with ALPN h2)
    HELLO = "tls-hello"      # the client's first bytes are a TLS ClientHello: read it, then ignore the rest
    IGNORE = "ignore"        # nothing more to read


HEAD, BODY, WAIT, FRAMES, H2, HELLO, IGNORE = (Mode.HEAD, Mode.BODY, Mode.WAIT, Mode.FRAMES, Mode.H2,
                                               Mode.HELLO, Mode.IGNORE)

# The moves `_to` may make (tests/test_flow_session.py checks the captures' moves against it). IGNORE
# is not final: a request cut at --max-head-bytes is still answered, and a 101 moves both sides on.
NEXT: dict[Mode, frozenset[Mode]] = {
    HEAD: frozenset({HEAD, BODY, WAIT, FRAMES, H2, HELLO, IGNORE}),
    BODY: frozenset({HEAD, IGNORE, H2, FRAMES}),
    WAIT: frozenset({HEAD, WAIT, FRAMES, H2, IGNORE}),
    FRAMES: frozenset({FRAMES, IGNORE}),
    H2: frozenset({H2, IGNORE}),
    HELLO: frozenset({IGNORE}),
    IGNORE: frozenset({IGNORE, FRAMES, H2, HEAD}),
}


READING_HEADS = frozenset({HEAD, WAIT})     # modes where a retransmission conflict matters


class Session(H2Mixin):
    """HTTP/1, HTTP/2 and WebSocket state of one connection (both directions)."""

    # Slots: up to --max-flows of these live at once (a SYN flood tracks every one of them).
    __slots__ = ("body_left", "buf", "early_response", "events", "exchanges",
                 "head_first_frame", "head_last", "held", "held_frames", "limits", "mode",
                 "pending", "plain_requests", "tls", "tls_frame")   # + H2Mixin's and Notes'


    def __init__(self, limits: Limits) -> None:
        Notes.__init__(self)
        self.limits = limits
        self.exchanges: list[Exchange] = []
        self.events: list[SessionEvent] = []         # since the last take()
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
        self.early_response: tuple | None = None   # a response head that beat its request head
        self.tls: ClientHello | None = None         # TLS where HTTP was expected (or decrypted, see tls_json)
        self.tls_frame: int | None = None           # frame that completed (or cut) the ClientHello
        self.h2: H2Reader | None = None
        self.h2_mode: str | None = None              # prior-knowledge | h2c-upgrade | tls
        self.h2_enable: bool | None = None           # server's SETTINGS_ENABLE_CONNECT_PROTOCOL (None: unseen)
        self.h2_streams: dict[int, H2Exchange] = {}
        # Server bytes that came before the client said anything: an HTTP/2 server's SETTINGS
        # (it may send them before the client's preface arrives). Replayed if HTTP/2 starts.
        self.server_first: tuple[bytearray, int, int] | None = None

    def _to(self, direction: int, mode: Mode) -> None:
        """The one place a direction changes mode (see NEXT)."""
        self.mode[direction] = mode

    def _enter_h2(self) -> None:
        self._to(C2S, H2)
        self._to(S2C, H2)

    def take(self) -> list[SessionEvent]:
        """The session events since the last call."""
        out, self.events = self.events, []
        return out

    def reading_heads(self, direction: int) -> bool:
        """Whether this direction still reads HTTP heads (retransmission conflicts matter there)."""
        return self.mode[direction] in READING_HEADS

    def release(self) -> None:
        """The connection is over: drop what only reading more bytes needs (the HTTP/2 reader
        refers back to this session)."""
        self.pending = deque()
        self.h2_streams = {}
        self.h2 = None

    def skippable(self, direction: int, paylen: int) -> bool:
        """Are the next `paylen` bytes of `direction` all inside a body being skipped?"""
        return self.mode[direction] is BODY and 0 < paylen < self.body_left[direction]

    def skipped(self, direction: int, n: int) -> None:
        """`n` body bytes passed by (the fast path counted them in order; see skippable)."""
        self.body_left[direction] -= n

    def on_data(self, direction: int, data: bytes, frame: int, ts_ns: int) -> None:
        """In-order stream bytes of one direction."""
        if direction == C2S:
            self._client_data(data, frame, ts_ns)
        else:
            self._server_data(data, frame, ts_ns)

    @property
    def ignored(self) -> bool:
        return self.mode[C2S] == IGNORE and self.mode[S2C] in (IGNORE, HEAD) and not self.exchanges

    def decrypted(self, hello: ClientHello, frame: int | None) -> None:
        """A key log opened this connection: its ClientHello, and plaintext bytes to follow."""
        self.tls, self.tls_frame = hello, frame

    def current(self) -> Exchange | None:
        return self.exchanges[-1] if self.exchanges else None

    def on_gap(self, direction: int, length: int, frame: int, ts_ns: int) -> None:
        who = "client" if direction == C2S else "server"
        self.note(make("tcp-gap", f"{length} {who} bytes missing before frame {frame}", frame))
        mode = self.mode[direction]
        if mode == HELLO:
            self._hello_done(truncated=True)
            return
        if mode == BODY:
            self.body_left[direction] -= length
            if self.body_left[direction] <= 0:
                self._to(direction, HEAD)
                self.body_left[direction] = 0
            return
        if mode == FRAMES:
            ex = self.current()
            sc = None if ex is None else ex.client_frames if direction == C2S else ex.server_frames
            if sc is not None and not sc.desynced:
                sc.desynced = True
                sc.anomalies.append(make("frames-desync", f"{who} frames lost sync at a {length}-byte gap", frame))
            return
        if mode == HEAD and self.buf[direction]:
            # A hole inside a head: the head cannot be trusted past it.
            self.buf[direction].clear()
        if mode != FRAMES:
            self._to(direction, IGNORE if mode != WAIT else WAIT)

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
            if self.h2 is not None:
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
            data = self._body_bytes(C2S, data)
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
                        self._to(C2S, HELLO)
                        self.tls_frame = frame
                        self._client_hello(data, frame)
                        return
                    self._to(C2S, IGNORE)
                    buf.clear()
                    return
            got = self._next_head(C2S, data, frame, ts_ns)
            data = b""
            if got is None:
                return
            raw, rest = got
            if not UPGRADE_HINT.search(raw):
                # Fast path: a plain request only matters for where the next one starts.
                self.plain_requests += 1
                self.pending.append(None)
                left = self._skip_body(C2S, quick_length(raw, None), rest)
                if left is None:
                    return
                data = left
                continue
            head = self._head(C2S, raw, frame, ts_ns)
            upgrade = self._request_done(head, frame, ts_ns)
            if upgrade:
                ex = self.current()
                if self.mode[C2S] == FRAMES and ex is not None and ex.client_frames is not None:
                    ex.client_frames.feed(rest, frame, ts_ns)   # the 101 came first (early response)
                    return
                self._to(C2S, WAIT)
                if rest:
                    self.held += rest
                    self.held_frames.append((frame, ts_ns))
                return
            # chunked or unknown request body: cannot follow further requests
            left = self._skip_body(C2S, content_length(head), rest)
            if left is None:
                return
            data = left

    def _client_hello(self, data: bytes, frame: int) -> None:
        """Buffer the ClientHello (it may span segments: post-quantum key shares make it ~1.8 KB),
        read SNI/ALPN/versions from it, then stop looking at this direction."""
        buf = self.buf[C2S]
        buf += data
        need = hello_bytes_needed(bytes(buf[:9]))
        self.tls_frame = frame
        if need is not None and len(buf) < need and len(buf) < self.limits.head_bytes:
            return
        self._hello_done(truncated=False)

    def _hello_done(self, truncated: bool) -> None:
        """The ClientHello read so far is all there will be: an event, then ignore the client."""
        buf = self.buf[C2S]
        self.tls = parse_client_hello(bytes(buf)) or ClientHello(complete=False)
        if truncated:
            self.tls.complete = False
        self.events.append(Hello(self.tls, self.tls_frame))
        buf.clear()
        self._to(C2S, IGNORE)

    def tls_json(self) -> dict | None:
        return None if self.tls is None else self.tls.to_json()

    def _request_done(self, head: HttpHead, frame: int, ts_ns: int) -> bool:
        head.ts_ns = ts_ns
        head.frame = frame
        if not hs.is_upgrade_request(head):
            self.plain_requests += 1
            self.pending.append(None)
            return False
        ex = Exchange(head)
        if self.plain_requests:
            ex.anomalies.append(make("keep-alive-before-upgrade",
                                     f"{self.plain_requests} plain request(s) preceded the upgrade", frame))
        self.exchanges.append(ex)
        self.events.append(HeadSeen(C2S, ex))
        self.pending.append(ex)
        if self.early_response is not None:
            early, self.early_response = self.early_response, None
            self._to(S2C, HEAD)
            self._response_done(*early)
        head.drop_lookups()          # until its answer is checked
        return True


    def flush_partial_heads(self, frame: int, ts_ns: int) -> None:
        """The connection ended with a head still open: keep what came, flagged incomplete."""
        if self.mode[C2S] == HELLO:
            self._hello_done(truncated=True)
        buf = self.buf[S2C]
        ex = self._awaiting_exchange()
        if buf and ex is not None and self.mode[S2C] == HEAD:
            head = self._unterminated(S2C, f": {len(buf)} bytes without an empty line before the connection "
                                      f"ended (frame {frame})", frame, ts_ns)
            ex.response = head
            self.events.append(HeadSeen(S2C, ex))
            self._to(S2C, IGNORE)
        cbuf = self.buf[C2S]
        if cbuf and self.mode[C2S] == HEAD and looks_like_request(bytes(cbuf[:24])):
            head = self._unterminated(C2S, f" ({len(cbuf)} bytes)", frame, ts_ns)
            if hs.is_upgrade_request(head):
                self._request_done(head, head.frame or frame, head.ts_ns)
            self._to(C2S, IGNORE)

    def _unterminated(self, direction: int, detail: str, frame: int, ts_ns: int) -> HttpHead:
        """The open head of `direction` as it is (complete=False, a head-incomplete anomaly). Its evidence is the frame holding its last byte, not the
        FIN/RST that ended the connection."""
        kind = "request" if direction == C2S else "response"
        buf = self.buf[direction]
        hframe, hts = self.head_last[direction] or (frame, ts_ns)
        head = self._head(direction, bytes(buf), hframe, hts)
        head.complete = False
        head.anomalies.append(make("head-incomplete", f"the {kind} head was never terminated{detail}", hframe,
                                   head=kind))
        buf.clear()
        return head

    def _head(self, direction: int, raw: bytes, frame: int, ts_ns: int) -> HttpHead:
        """A complete raw head of `direction`, parsed, with where it started and when it ended."""
        head = parse_head(raw, "request" if direction == C2S else "response", frame)
        head.first_frame = self.head_first_frame[direction]
        head.ts_ns = ts_ns
        return head

    # -- server side ---------------------------------------------------------
    def _server_data(self, data: bytes, frame: int, ts_ns: int) -> None:
        if self._frames_or_ignored(S2C, data, frame, ts_ns):
            return
        if self.mode[S2C] == BODY:
            data = self._body_bytes(S2C, data)
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
                    self._to(S2C, IGNORE)
                    buf.clear()
                    return
            got = self._next_head(S2C, data, frame, ts_ns)
            data = b""
            if got is None:
                return
            raw, rest = got
            if self.pending and self.pending[0] is None and not UPGRADE_HINT.search(raw):
                m = STATUS.match(raw)
                if m:
                    # Fast path: the answer to a plain request; only its body length matters.
                    status = int(m.group(1))
                    if not (100 <= status < 200):
                        self.pending.popleft()
                    left = self._skip_body(S2C, quick_length(raw, status), rest)
                    if left is None:
                        return
                    data = left
                    continue
            head = self._head(S2C, raw, frame, ts_ns)
            if not self.pending:
                # Response before the request head was complete: keep it until the request is.
                if self.mode[C2S] == HEAD and self.buf[C2S]:
                    head.anomalies.append(make("response-before-request",
                                               "response head arrived before the request head was complete", frame))
                    self.early_response = (head, rest, frame, ts_ns)
                    self._to(S2C, WAIT)
                    return
            data = self._response_done(head, rest, frame, ts_ns)
            if self.mode[S2C] != HEAD:
                return

    def _skip_plain_heads(self, data: bytes, frame: int, ts_ns: int) -> bytes:
        """Pipelined plain requests counted off in one pass (see framing.plain_requests); -> the
        bytes from the first head it leaves to the general path."""
        off, count = plain_requests(data, self.limits.head_bytes)
        if not off:
            return data
        self.plain_requests += count
        self.pending.extend([None] * count)
        self.head_last[C2S] = (frame, ts_ns)
        return data[off:]

    def _skip_plain_responses(self, data: bytes, frame: int, ts_ns: int) -> bytes:
        """Their answers, counted off the same way (see framing.plain_responses)."""
        off = plain_responses(data, self.limits.head_bytes, self.pending)
        if not off:
            return data
        self.head_last[S2C] = (frame, ts_ns)
        return data[off:]

    def _next_head(self, direction: int, data: bytes, frame: int, ts_ns: int) -> tuple[bytes, bytes] | None:
        """Buffer `data` for a head: -> (raw head, bytes after it), or None while it is incomplete
        and when it outgrows `head_bytes` (then it is parsed as far as the limit, complete=False,
        and handed on as the direction's head; the direction reads nothing more)."""
        kind = "request" if direction == C2S else "response"
        buf = self.buf[direction]
        if not buf:
            self.head_first_frame[direction] = frame
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
        head.anomalies.append(make("head-too-large", f"{kind} head exceeds {self.limits.head_bytes} bytes", frame,
                                   head=kind))
        buf.clear()
        self._to(direction, IGNORE)
        if direction == C2S:
            self._request_done(head, frame, ts_ns)
        else:
            self._response_done(head, b"", frame, ts_ns)
        return None

    def _body_bytes(self, direction: int, data: bytes) -> bytes:
        """BODY mode: count `data` off the body being skipped; -> the bytes after the body (the
        direction reads heads again once it ends)."""
        n = min(len(data), self.body_left[direction])
        self.body_left[direction] -= n
        if self.body_left[direction]:
            return b""
        self._to(direction, HEAD)
        return data[n:]

    def _skip_body(self, direction: int, length: int | None, rest: bytes) -> bytes | None:
        """Skip a message body; -> the bytes after it, or None when the stream is now in BODY/IGNORE."""
        if length is None:           # chunked / close-delimited: cannot follow this stream further
            self._to(direction, IGNORE)
            return None
        if length > len(rest):
            self.body_left[direction] = length - len(rest)
            self._to(direction, BODY)
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
            if status in (204, 304):
                return rest
            return self._skip_body(S2C, content_length(head), rest) or b""
        ex.response = head
        self.events.append(HeadSeen(S2C, ex))
        try:
            return self._answered(ex, head, status, rest, frame, ts_ns)
        finally:
            # the session's checks of both heads are done (the document's are memoised on `ex`)
            head.drop_lookups()
            if ex.request is not None:
                ex.request.drop_lookups()

    def _answered(self, ex: Exchange, head: HttpHead, status: int, rest: bytes, frame: int, ts_ns: int) -> bytes:
        """`head` answers `ex`: start what follows it (frames, HTTP/2, another protocol, a body)."""
        if status == 101 and not ex.websocket and ex.request is not None and "h2c" in ex.request.tokens(b"upgrade"):
            # RFC 7540 §3.2: after this 101 both sides speak HTTP/2; WebSockets may follow as streams.
            held, self.held = bytes(self.held), bytearray()
            fr, t = self.held_frames[0] if self.held_frames else (frame, ts_ns)
            self.held_frames = []
            self._start_h2("h2c-upgrade", held, fr, t)
            if rest and self.h2 is not None:
                self.h2.feed(S2C, rest, frame, ts_ns, self.limits.flow_buffer)
            return b""
        if status == 101 and (not ex.websocket or "websocket" not in head.tokens(b"upgrade")):
            # Upgrade to another protocol (Upgrade: tcp): its bytes are not frames. Nor after a 101
            # without 'Upgrade: websocket': the client fails the connection (RFC 6455 §4.1), no
            # WebSocket exists, and what follows (a proxy's chunked body) is not frames either.
            self._to(S2C, IGNORE)
            self._to(C2S, IGNORE)
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
            self._to(S2C, FRAMES)
            self._to(C2S, FRAMES)
            self.events.append(Upgraded(ex))
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
            self._to(C2S, HEAD)
            held, self.held = bytes(self.held), bytearray()
            if held:
                fr, t = self.held_frames[0]
                self.held_frames = []
                self._client_heads(held, fr, t)
        cl = content_length(head)
        if self.mode[S2C] == IGNORE and cl is not None:
            return b""
        return self._skip_body(S2C, cl, rest) or b""



"""The session's HTTP/2 side (RFC 8441 WebSockets): the sink of wscap.wire.http2.H2Reader.

A mixin of `wscap.flow.session.Session`, apart only to keep one module per concern:
the stream table (`h2_streams`), SETTINGS_ENABLE_CONNECT_PROTOCOL and the exchanges
an extended CONNECT opens.
"""
from __future__ import annotations

from wscap.flow.handshake import Exchange, H2Exchange
from wscap.flow.notes import Notes
from wscap.model.anomaly import Anomaly, make
from wscap.model.events import C2S, S2C, H2Stream, HeadSeen, SessionEvent, Upgraded
from wscap.model.limits import Limits
from wscap.wire.http2 import ENABLE_CONNECT_PROTOCOL, H2Head, H2Reader, error_name
from wscap.wire.wsframe import FrameScanner


class H2Mixin(Notes):
    """HTTP/2 state of a Session (initialised by Session.__init__)."""

    __slots__ = ("h2", "h2_mode", "h2_enable", "h2_streams", "server_first")
    h2: H2Reader | None
    h2_mode: str | None
    h2_enable: bool | None
    h2_streams: dict[int, H2Exchange]
    server_first: tuple[bytearray, int, int] | None
    # Session's own (declared in its __slots__):
    limits: Limits
    buf: list[bytearray]
    exchanges: list[Exchange]
    events: list[SessionEvent]

    def _enter_h2(self) -> None: ...

    # -- HTTP/2 (RFC 8441 WebSockets) ---------------------------------------------
    def _start_h2(self, mode: str, client_bytes: bytes, frame: int, ts_ns: int) -> None:
        self.h2_mode = mode
        lim = self.limits
        self.h2 = H2Reader(self, lim.hpack_table, lim.head_bytes, lim.h2_header_bytes)
        self._enter_h2()
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
                # An H2Head reads like an HttpHead (get, has, tokens, anomalies, to_json).
                ex = H2Exchange(head, stream_id=stream,  # type: ignore[arg-type]
                                h2_mode=self.h2_mode or "prior-knowledge", enabled=self.h2_enable)
                if end_stream:
                    ex.ended[C2S] = frame           # a CONNECT that ends its own stream cannot carry frames
                self.exchanges.append(ex)
                self.h2_streams[stream] = ex
                self.events.append(H2Stream(stream, ex))
            return
        open_ = self.h2_streams.get(stream)
        if open_ is None or open_.response is not None:
            return
        ex = open_
        head = H2Head("response", headers, frame, ts_ns, end_stream)
        st = head.status
        if st is not None and 100 <= st < 200:
            return                              # interim
        ex.response = head                      # type: ignore[assignment]  # reads like an HttpHead
        self.events.append(HeadSeen(S2C, ex))
        if end_stream and ex.ended[S2C] is None:
            ex.ended[S2C] = frame                   # e.g. a 403 sent as HEADERS with END_STREAM
        if ex.websocket and st is not None and 200 <= st < 300:
            deflate = "permessage-deflate" in [e.split(";")[0].strip() for e in head.tokens(b"sec-websocket-extensions")]
            lim, order = self.limits, [0]
            ex.server_frames = FrameScanner("server", deflate, lim.frames_per_direction, lim.preview_bytes,
                                            lim.inflate_bytes, counter=order)
            ex.client_frames = FrameScanner("client", deflate, lim.frames_per_direction, lim.preview_bytes,
                                            lim.inflate_bytes, counter=order)
            self.events.append(Upgraded(ex))

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
            self.note(make("h2-goaway", f"the {'client' if d == C2S else 'server'} sent GOAWAY "
                            f"{error_name(code)} (last stream {last_stream})", frame))

    def h2_anomaly(self, anomaly: Anomaly) -> None:
        self.note(anomaly)

    def h2_limit(self, name: str, anomaly: Anomaly) -> None:
        """A bound on attacker-controlled HTTP/2 state was hit: counted, and said on the connection."""
        self._hit(name)
        self.note(anomaly)


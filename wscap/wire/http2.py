"""HTTP/2 on a connection, for one purpose: WebSockets over HTTP/2 (RFC 8441).

A WebSocket over HTTP/2 is a stream opened by an *extended CONNECT*
(`:method CONNECT`, `:protocol websocket`, RFC 8441 §4), answered by `:status
200`; the stream's DATA frames then carry ordinary RFC 6455 frames. The server
must first have advertised SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (§3).

`H2Reader` is sans-IO: the connection feeds it stream bytes per direction and
it calls back for headers, data, resets and settings. Every header block is
HPACK-decoded (RFC 7541), also on streams wscap does not report, because the
decoder's dynamic table depends on all of them. Frames are parsed as they
arrive; DATA on uninteresting streams is skipped without buffering.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wscap.model.anomaly import Anomaly, make
from wscap.judge.checks import check_negotiation, check_version

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"       # RFC 9113 §3.4
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH, PING, GOAWAY, WINDOW, CONTINUATION = range(10)
END_STREAM, END_HEADERS, PADDED, PRIO = 0x1, 0x4, 0x8, 0x20
ENABLE_CONNECT_PROTOCOL = 0x8                     # RFC 8441 §3
MAX_BLOCK = 256 * 1024                            # a header block larger than this is not decoded

ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR", 4: "SETTINGS_TIMEOUT",
          5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR",
          10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}


def error_name(code: int) -> str:
    return ERRORS.get(code, hex(code))


class H2Head:
    """An HTTP/2 header list shaped like `HttpHead`, so checks, diffs and renderers read both."""

    __slots__ = ("kind", "headers", "frame", "first_frame", "ts_ns", "anomalies", "complete", "end_stream")

    def __init__(self, kind: str, headers: list[tuple[bytes, bytes]], frame: int, ts_ns: int,
                 end_stream: bool = False) -> None:
        self.kind = kind
        self.headers = headers
        self.frame = self.first_frame = frame
        self.ts_ns = ts_ns
        self.anomalies: list[Anomaly] = []
        self.complete = True
        self.end_stream = end_stream

    def get_all(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name]

    def get(self, name: bytes) -> bytes | None:
        vals = self.get_all(name)
        return vals[0] if vals else None

    def has(self, name: bytes) -> bool:
        return any(n.lower() == name for n, _ in self.headers)

    def tokens(self, name: bytes) -> list[str]:
        out = []
        for v in self.get_all(name):
            out += [t.strip().lower() for t in v.decode("latin-1").split(",") if t.strip()]
        return out

    @property
    def method(self) -> bytes:
        return self.get(b":method") or b""

    @property
    def target(self) -> bytes:
        return self.get(b":path") or b""

    @property
    def status(self) -> int | None:
        s = self.get(b":status")
        return int(s) if s is not None and s.isdigit() else None

    @property
    def raw(self) -> bytes:
        return b"".join(n + b": " + v + b"\r\n" for n, v in self.headers)

    def to_json(self) -> dict:
        base = {"version": "HTTP/2", "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in self.headers],
                "frame": self.frame, "ts": round(self.ts_ns / 1e9, 6), "raw": self.raw.decode("latin-1"),
                "complete": self.complete}
        if self.kind == "request":
            return {"method": self.method.decode("latin-1"), "target": self.target.decode("latin-1"), **base}
        return {**base, "status": self.status, "reason": ""}


@dataclass(slots=True)
class _Block:
    stream: int
    end_stream: bool
    frame: int
    ts_ns: int
    data: bytearray = field(default_factory=bytearray)


class H2Reader:
    """Parse one direction pair of HTTP/2 frames; report to `sink` (the Connection).

    sink.h2_headers(direction, stream, headers, end_stream, frame, ts_ns)
    sink.h2_data(direction, stream, data, end_stream, frame, ts_ns) -> bool  (False: not wanted)
    sink.h2_reset(direction, stream, code, frame, ts_ns)
    sink.h2_settings(direction, settings: dict, frame)
    sink.h2_goaway(direction, last_stream, code, frame, ts_ns)
    sink.h2_anomaly(anomaly)
    """

    __slots__ = ("sink", "buf", "preface", "decoders", "blocks", "skip", "data_to", "broken", "table_cap",
                 "budget")

    def __init__(self, sink: Any, table_cap: int = 1 << 16, list_cap: int = 1 << 16, budget: int = 1 << 20) -> None:
        self.sink = sink
        self.buf = [bytearray(), bytearray()]
        self.preface = [len(PREFACE), 0]    # preface bytes still expected (the client's only)
        # One header list decodes to at most list_cap bytes (hpack raises past it: a block of
        # 1-byte references to one big entry), and the table never grows past table_cap.
        import hpack      # only once an HTTP/2 connection appears (a run's startup cost otherwise)
        self.decoders = [hpack.Decoder(max_header_list_size=list_cap), hpack.Decoder(max_header_list_size=list_cap)]
        self.table_cap = table_cap
        for d in self.decoders:
            d.max_allowed_table_size = min(1 << 16, table_cap)
        self.budget = budget               # decoded header bytes the connection may still keep in full
        self.blocks: list[_Block | None] = [None, None]
        self.skip = [0, 0]                 # DATA payload bytes to pass by (uninteresting stream)
        self.data_to: list[tuple | None] = [None, None]   # (stream, left, end_stream, pad) being delivered
        self.broken = [False, False]

    def feed(self, d: int, data: bytes, frame: int, ts_ns: int, limit: int) -> None:
        if self.broken[d] or not data:
            return
        if self.preface[d]:
            want = PREFACE[len(PREFACE) - self.preface[d]:]
            n = min(len(want), len(data))
            if data[:n] != want[:n]:
                self._break(d, "h2-malformed", "the client's bytes after the h2c switch are not the HTTP/2 "
                                               "connection preface", frame)
                return
            self.preface[d] -= n
            data = data[n:]
        pos = self._pass_at(d, data, 0, frame, ts_ns)     # DATA bytes still owed, before buffering
        if pos:
            data = data[pos:]
        buf = self.buf[d]
        buf += data
        pos = 0
        while not self.broken[d]:
            if self.skip[d] or self.data_to[d] is not None:
                # In place, by offset: copying the rest of the buffer per DATA frame made a segment
                # of 1-byte DATA frames quadratic.
                pos = self._pass_at(d, buf, pos, frame, ts_ns)
                if self.skip[d] or self.data_to[d] is not None:
                    break
            if len(buf) - pos < 9:
                break
            length = int.from_bytes(buf[pos:pos + 3], "big")
            ftype, flags = buf[pos + 3], buf[pos + 4]
            stream = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
            if ftype == DATA:
                pos += 9
                pad = 0
                if flags & PADDED:
                    if len(buf) - pos < 1:
                        pos -= 9
                        break
                    pad = buf[pos]
                    pos += 1
                    length -= 1
                body = max(0, length - pad)
                self.data_to[d] = (stream, body, bool(flags & END_STREAM), pad)
                if body == 0:
                    self._deliver(d, b"", frame, ts_ns)
                continue
            if len(buf) - pos - 9 < length:
                if length > limit:
                    self._break(d, "h2-frame-too-large", f"an HTTP/2 frame of {length} bytes exceeds the "
                                                         f"{limit}-byte buffer", frame)
                break
            payload = bytes(buf[pos + 9:pos + 9 + length])
            pos += 9 + length
            self._frame(d, ftype, flags, stream, payload, frame, ts_ns)
        del buf[:pos]

    def _pass_at(self, d: int, buf: bytes | bytearray, pos: int, frame: int, ts_ns: int) -> int:
        """Consume the DATA payload bytes owed at buf[pos:] (delivered or skipped), by offset without
        copying the rest; -> the position after them."""
        n_total = len(buf)
        while pos < n_total and (self.skip[d] or self.data_to[d] is not None):
            if self.skip[d]:
                n = min(self.skip[d], n_total - pos)
                self.skip[d] -= n
                pos += n
                continue
            stream, left, end, pad = self._data_to(d)
            n = min(left, n_total - pos)
            chunk = bytes(buf[pos:pos + n])
            pos += n
            left -= n
            self.data_to[d] = (stream, left, end, pad)
            if chunk:
                wanted = self.sink.h2_data(d, stream, chunk, False, frame, ts_ns)
                if not wanted:
                    self.skip[d] = left + pad
                    self.data_to[d] = None
                    continue
            if left == 0:
                self._deliver(d, b"", frame, ts_ns)
        return pos

    def _deliver(self, d: int, chunk: bytes, frame: int, ts_ns: int) -> None:
        stream, _left, end, pad = self._data_to(d)
        self.data_to[d] = None
        self.skip[d] = pad
        if end:
            self.sink.h2_data(d, stream, b"", True, frame, ts_ns)

    def _frame(self, d: int, ftype: int, flags: int, stream: int, p: bytes, frame: int, ts_ns: int) -> None:
        blk = self.blocks[d]
        if blk is not None and ftype != CONTINUATION:
            self._break(d, "h2-malformed", f"a header block on stream {blk.stream} was interrupted by a frame "
                                           f"of type {ftype} (RFC 9113 §6.10)", frame)
            return
        if ftype == HEADERS:
            off, end = 0, len(p)
            if flags & PADDED and p:
                end -= p[0]
                off = 1
            if flags & PRIO:
                off += 5
            blk = _Block(stream, bool(flags & END_STREAM), frame, ts_ns)
            blk.data += p[off:max(off, end)]
            self.blocks[d] = blk
            if flags & END_HEADERS:
                self._headers(d, frame)
        elif ftype == CONTINUATION:
            if blk is None or blk.stream != stream:
                self._break(d, "h2-malformed", f"CONTINUATION on stream {stream} without a header block", frame)
                return
            blk.data += p
            if len(blk.data) > MAX_BLOCK:
                self._break(d, "h2-malformed", f"a header block over {MAX_BLOCK} bytes", frame)
                return
            if flags & END_HEADERS:
                self._headers(d, frame)
        elif ftype == PUSH:
            # A pushed request's header block still changes the HPACK table: decode it, report nothing.
            end = len(p) - (p[0] if flags & PADDED and p else 0)
            off = (1 if flags & PADDED else 0) + 4
            self.blocks[d] = _Block(-1, False, frame, ts_ns, bytearray(p[off:max(off, end)]))
            if flags & END_HEADERS:
                self._headers(d, frame)
        elif ftype == RST_STREAM and len(p) >= 4:
            self.sink.h2_reset(d, stream, int.from_bytes(p[:4], "big"), frame, ts_ns)
        elif ftype == SETTINGS and not flags & 1:
            settings = {int.from_bytes(p[i:i + 2], "big"): int.from_bytes(p[i + 2:i + 6], "big")
                        for i in range(0, len(p) - 5, 6)}
            if 1 in settings:
                # SETTINGS_HEADER_TABLE_SIZE bounds the *other* side's encoder, i.e. our decoder of it.
                # Capped like nghttp2 caps its own table: a peer may allow 4 GiB, wscap keeps table_cap.
                want = max(settings[1], 1 << 16)
                self.decoders[1 - d].max_allowed_table_size = min(want, self.table_cap)
                if settings[1] > self.table_cap:
                    self.sink.h2_limit("hpack_table", make(
                        "h2-hpack-table-capped", f"the {'client' if d == 0 else 'server'} allowed an HPACK table "
                        f"of {settings[1]} bytes; wscap decodes with at most {self.table_cap} "
                        f"(--max-hpack-table)", frame))
            self.sink.h2_settings(d, settings, frame)
        elif ftype == GOAWAY and len(p) >= 8:
            self.sink.h2_goaway(d, int.from_bytes(p[:4], "big") & 0x7FFFFFFF, int.from_bytes(p[4:8], "big"),
                                frame, ts_ns)

    def _data_to(self, d: int) -> tuple[int, int, bool, int]:
        """The DATA frame being read in direction d (only called while one is)."""
        dt = self.data_to[d]
        assert dt is not None
        return dt

    def _headers(self, d: int, frame: int) -> None:
        blk = self.blocks[d]
        assert blk is not None      # only called when a header block is complete
        self.blocks[d] = None
        try:
            headers = self.decoders[d].decode(bytes(blk.data), raw=True)
        except Exception as e:  # noqa: BLE001 - hpack raises several types; all mean "cannot follow"
            self._break(d, "h2-hpack-error", f"HPACK cannot decode the header block on stream {blk.stream}: "
                                             f"{type(e).__name__}: {str(e)[:80]}", frame)
            return
        if blk.stream > 0:
            hs = [(bytes(n), bytes(v)) for n, v in headers]
            size = sum(len(n) + len(v) for n, v in hs)
            cut = cut_headers(hs) if size > self.budget else hs
            if cut != hs:
                full = size
                hs = cut
                size = sum(len(n) + len(v) for n, v in hs)
                self.sink.h2_limit("h2_header_bytes", make(
                    "h2-headers-cut", f"stream {blk.stream}'s header list decoded to {full} bytes, over what is left of "
                    f"the connection's --max-h2-header-bytes; kept cut to {size} bytes", frame))
            self.budget = max(0, self.budget - size)
            self.sink.h2_headers(d, blk.stream, hs, blk.end_stream, blk.frame if blk.frame == frame else frame,
                                 blk.ts_ns)

    def _break(self, d: int, code: str, message: str, frame: int) -> None:
        self.broken[d] = True
        self.buf[d].clear()
        self.sink.h2_anomaly(make(code, message, frame))


CUT_KEEP = 16          # headers kept from a cut list: pseudo-headers and the WebSocket ones first
CUT_NAME, CUT_VALUE = 64, 128


def cut_headers(hs: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """What a header list keeps once its connection spent its budget: the headers the checks read
    (pseudo-headers, Sec-WebSocket-*, Origin, Host), then the first others, each cut short."""
    def rank(nv: tuple[bytes, bytes]) -> int:
        n = nv[0].lower()
        return 0 if n.startswith(b":") else 1 if n.startswith(b"sec-websocket-") or n in (b"origin", b"host") else 2
    keep = sorted(range(len(hs)), key=lambda i: (rank(hs[i]), i))[:CUT_KEEP]
    out = []
    for i in sorted(keep):
        n, v = hs[i]
        out.append((n[:CUT_NAME], v if len(v) <= CUT_VALUE else v[:CUT_VALUE] + b"..."))
    return out


def check_extended_connect(req: H2Head, server_enabled: bool | None) -> list[Anomaly]:
    """RFC 8441 §4-5 (and RFC 9113 §8.2.2) on an extended CONNECT that asks for a WebSocket."""
    fr = req.frame
    out = []
    missing = [p for p in (b":scheme", b":path", b":authority") if not req.has(p)]
    if missing:
        out.append(make("h2-pseudo-header-missing", "extended CONNECT lacks " +
                        ", ".join(m.decode() for m in missing) + " (RFC 8441 §4)", fr))
    if server_enabled is not True:
        out.append(make("h2-connect-protocol-not-enabled",
                        "the client sent :protocol but the server had not sent SETTINGS_ENABLE_CONNECT_PROTOCOL = 1"
                        + (" (it sent 0)" if server_enabled is False else " (no SETTINGS from it seen)")
                        + " (RFC 8441 §3)", fr))
    hop = [n.decode("latin-1") for n, _ in req.headers if n.lower() in (b"connection", b"upgrade", b"keep-alive",
                                                                        b"transfer-encoding", b"proxy-connection")]
    if hop:
        out.append(make("h2-connection-header", f"connection-specific header(s) {', '.join(hop)} in an HTTP/2 "
                        f"request make it malformed (RFC 9113 §8.2.2)", fr))
    if req.has(b"sec-websocket-key"):
        out.append(make("h2-key-header", "Sec-WebSocket-Key is not used over HTTP/2 (RFC 8441 §5)", fr))
    out += check_version(req)
    return out


def check_connect_response(req: H2Head, resp: H2Head) -> list[Anomaly]:
    fr = resp.frame
    out = []
    st = resp.status
    if st is not None and 200 <= st < 300:
        if resp.end_stream:
            out.append(make("h2-stream-ended", "the 2xx that accepted the WebSocket also ended the stream", fr))
        hop = [n.decode("latin-1") for n, _ in resp.headers if n.lower() in (b"connection", b"upgrade")]
        if hop:
            out.append(make("h2-connection-header", f"connection-specific header(s) {', '.join(hop)} in an "
                            f"HTTP/2 response (RFC 9113 §8.2.2)", fr))
        if resp.has(b"sec-websocket-accept"):
            out.append(make("h2-key-header", "Sec-WebSocket-Accept is not used over HTTP/2 (RFC 8441 §5)", fr))
        out += check_negotiation(req, resp)
    return out

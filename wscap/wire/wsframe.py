"""WebSocket frames after a 101 (RFC 6455 §5): headers checked, a bounded few kept.

The scanner is fed the stream bytes of one direction after the handshake. It
parses every frame header (cheap: payloads are skipped by length, never
buffered) so that a close frame arriving long after the first messages is still
seen, but keeps summaries only for the first `keep` frames plus close frames.
Payload previews are unmasked and, when permessage-deflate was negotiated,
inflated with context takeover across the kept messages (RFC 7692 §7.2.2):
compressed payload is streamed through one inflater per direction as it
arrives (never buffered whole), so every message's full output passes through
the window the next message refers back into. Output is bounded per message
(`inflate_bytes`): past it the context is lost (counted; later compressed
messages get no preview rather than a wrong one), and once `keep` summaries
are kept nothing more is inflated (no later preview would be shown).
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

from wscap.model.anomaly import Anomaly, make

INFLATE_CHUNK = 64 * 1024     # inflater output per call: a bomb is stopped after one chunk past the bound
OPCODES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}
# RFC 6455 §7.4.1/§7.4.2: codes that must never appear on the wire.
_BAD_CLOSE = {1004, 1005, 1006, 1015}
# An HTTP/1 request line where a client frame should start (a masked client frame's second byte
# has the mask bit set, so text like 'GET /' can never be a valid client frame header).
_REQUEST_LINE = re.compile(rb"(?:GET|POST|PUT|HEAD|DELETE|OPTIONS|PATCH|CONNECT|TRACE) [\x21-\x7e]+ HTTP/\d")


def close_code_valid(code: int) -> bool:
    if code in _BAD_CLOSE:
        return False
    return 1000 <= code <= 1014 or 3000 <= code <= 4999


@dataclass(slots=True)
class FrameSummary:
    dir: str
    frame: int
    ts_ns: int
    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: int
    masked: bool
    length: int
    close_code: int | None = None
    close_reason: str | None = None
    preview: str | None = None
    order: int = 0          # position in stream-delivery order across both directions

    def to_json(self) -> dict:
        return {"dir": self.dir, "frame": self.frame, "ts": round(self.ts_ns / 1e9, 6), "fin": self.fin,
                "rsv1": self.rsv1, "rsv2": self.rsv2, "rsv3": self.rsv3, "opcode": self.opcode,
                "opcode_name": OPCODES.get(self.opcode, "reserved"), "masked": self.masked,
                "length": self.length, "close_code": self.close_code,
                "close_reason": self.close_reason, "preview": self.preview}


@dataclass(slots=True)
class FrameScanner:
    dir: str                          # "client" | "server"
    deflate: bool                     # permessage-deflate negotiated on this leg
    keep: int = 16
    preview_bytes: int = 64
    inflate_bytes: int = 1 << 20     # decompressed bytes followed per message (context lost past it)
    frames: list[FrameSummary] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    count: int = 0
    dropped: int = 0                  # frame summaries not kept (beyond `keep`): limits_hit["frames"]
    inflate_cut: int = 0              # messages past inflate_bytes (context lost): limits_hit["inflate_bytes"]
    close: FrameSummary | None = None
    first_data_ts: int | None = None
    desynced: bool = False
    _buf: bytearray = field(default_factory=bytearray)
    _skip: int = 0                     # payload bytes of the current frame still to skip
    _cur: FrameSummary | None = None
    _cur_mask: bytes = b""
    _cur_payload: bytearray = field(default_factory=bytearray)
    _cur_want: int = 0                 # payload bytes we still want to keep
    _msg_compressed: bool = False
    _msg_opcode: int = 1
    _msg_out: bytearray = field(default_factory=bytearray)   # first preview_bytes of the inflated message
    _msg_total: int = 0                # bytes the current message inflated to so far
    _cur_off: int = 0                  # payload bytes of the current frame seen (mask offset)
    _cur_inflate: bool = False         # the current frame's payload streams into the inflater
    _ctx_lost: bool = False            # inflater state no longer follows the sender's (no more previews)
    _inflater: object | None = None
    _seen_codes: set = field(default_factory=set)
    counter: list = field(default_factory=lambda: [0])   # shared by both directions of a connection

    def _anomaly(self, code: str, message: str, frame: int | None) -> Anomaly:
        """Every anomaly of this scanner is about what `dir` sent."""
        return make(code, message, frame, side=self.dir)

    def feed(self, data: bytes, frame: int, ts_ns: int) -> None:
        if self.desynced or not data:
            return
        if self.first_data_ts is None:
            self.first_data_ts = ts_ns
            if data.startswith(b"HTTP/1.") or data.startswith(b"HTTP/2"):
                # Bun's handler-returned 101 (oven-sh/bun#35972): HTTP text on the upgraded stream.
                line = data.split(b"\n", 1)[0][:60].decode("latin-1").strip()
                self.anomalies.append(self._anomaly("http-after-101", f"{self.dir} sent {line!r} where frames should be", frame))
                self.desynced = True
                return
        if self.dir == "client" and not self._skip and not self._buf and _REQUEST_LINE.match(data):
            # A client that reuses the upgraded socket for another request: 'G' would read as an
            # unmasked frame with RSV1 and opcode 7. Say what it is instead.
            line = data.split(b"\n", 1)[0][:60].decode("latin-1").strip()
            self.anomalies.append(self._anomaly("http-after-101", f"client sent HTTP after 101: {line!r} where frames "
                                       f"should be", frame))
            self.desynced = True
            return
        self._scan(data, frame, ts_ns)

    def _scan(self, data: bytes, frame: int, ts_ns: int) -> None:
        """The frames in `data` (after feed's checks of what a stream's first bytes are). The
        compiled loop (wire/_fastpath.c scan_frames_c) does this itself for the common frames and
        hands the rest of a segment here at a frame boundary."""
        # Only an incomplete frame header (< 14 bytes) is ever carried between calls.
        work = bytes(self._buf) + data if self._buf else data
        self._buf.clear()
        pos, n = 0, len(work)
        while pos < n:
            if self._skip:
                take = min(self._skip, n - pos)
                if self._cur_inflate:
                    self._inflate_chunk(work[pos:pos + take])
                elif self._cur_want:
                    keep = min(take, self._cur_want)
                    self._cur_payload += work[pos:pos + keep]
                    self._cur_want -= keep
                pos += take
                self._skip -= take
                if not self._skip:
                    self._end_frame()
                continue
            hdr = _parse_header(work, pos)
            if hdr is None:
                self._buf += work[pos:]
                return
            hlen, b0, b1, length, mask = hdr
            pos += hlen
            self._start_frame(b0, b1, length, mask, frame, ts_ns)
            if self.desynced:
                return
            if length == 0:
                self._end_frame()

    def _start_frame(self, b0: int, b1: int, length: int, mask: bytes, frame: int, ts_ns: int) -> None:
        self.count += 1
        opcode = b0 & 0x0F
        f = FrameSummary(self.dir, frame, ts_ns, bool(b0 & 0x80), bool(b0 & 0x40), bool(b0 & 0x20),
                         bool(b0 & 0x10), opcode, bool(b1 & 0x80), length)
        self.counter[0] += 1
        f.order = self.counter[0]
        control = opcode >= 8
        self._check(f, control, frame)
        self._cur, self._cur_mask = f, mask
        self._cur_payload = bytearray()
        self._cur_off = 0
        if opcode in (1, 2):
            self._msg_compressed = f.rsv1 and self.deflate
            self._msg_opcode = opcode
            self._msg_out = bytearray()
            self._msg_total = 0
        compressed = not control and opcode in (0, 1, 2) and self._msg_compressed
        # Inflate only while previews can still be kept: the context matters for nothing else.
        self._cur_inflate = compressed and not self._ctx_lost and len(self.frames) < self.keep
        want = 125 if control else 0 if compressed else self.preview_bytes
        self._cur_want = min(length, want)
        self._skip = length

    def _check(self, f: FrameSummary, control: bool, frame: int) -> None:
        def once(code: str, msg: str) -> None:
            if code not in self._seen_codes:        # one anomaly per kind per direction
                self._seen_codes.add(code)
                self.anomalies.append(self._anomaly(code, msg, frame))
        if self.dir == "client" and not f.masked:
            once("client-frame-unmasked", f"client {OPCODES.get(f.opcode, f.opcode)} frame is not masked")
        if self.dir == "server" and f.masked:
            once("server-frame-masked", f"server {OPCODES.get(f.opcode, f.opcode)} frame is masked")
        if f.rsv1 and not self.deflate:
            once("rsv1-without-extension", f"{self.dir} frame has RSV1 set but permessage-deflate was not negotiated")
        elif f.rsv1 and (control or f.opcode == 0):
            once("rsv1-on-control-frame", f"{self.dir} {OPCODES.get(f.opcode)} frame has RSV1 set")
        if f.rsv2 or f.rsv3:
            once("rsv-bits-set", f"{self.dir} frame has RSV2/RSV3 set")
        if f.opcode not in OPCODES:
            once("reserved-opcode", f"{self.dir} frame uses reserved opcode {f.opcode}")
            if self.count == 1:
                # The very first "frame" is nonsense: these are not WebSocket frames at all.
                self.anomalies.append(self._anomaly("frames-desync", f"{self.dir} bytes after the 101 do not parse as frames", frame))
                self.desynced = True
        if control and f.length > 125:
            once("control-frame-too-long", f"{self.dir} {OPCODES.get(f.opcode)} frame carries {f.length} bytes (> 125)")
        if control and not f.fin:
            once("control-frame-fragmented", f"{self.dir} {OPCODES.get(f.opcode)} frame has FIN clear")

    def _end_frame(self) -> None:
        f = self._cur
        if f is None:
            return
        self._cur = None
        payload = bytes(self._cur_payload)
        if self._cur_mask:
            m = self._cur_mask
            payload = _unmask(payload, m)
        if f.opcode == 8:
            if len(payload) == 1:
                self.anomalies.append(self._anomaly("invalid-close-payload", f"{self.dir} close frame has a 1-byte payload", f.frame))
            elif len(payload) >= 2:
                f.close_code = int.from_bytes(payload[:2], "big")
                f.close_reason = payload[2:].decode("utf-8", "replace")
                if not close_code_valid(f.close_code):
                    self.anomalies.append(self._anomaly("invalid-close-code", f"{self.dir} close code {f.close_code} is not valid on the wire", f.frame))
            if self.close is None:
                self.close = f
        elif f.opcode in (0, 1, 2) and self._msg_compressed:
            inflating = self._cur_inflate
            self._cur_inflate = False
            if f.fin and inflating:
                self._inflate_data(b"\x00\x00\xff\xff", f)      # RFC 7692 §7.2.2: the removed tail
            if f.fin and inflating and not (self._ctx_lost and self._msg_total <= self.inflate_bytes):
                f.preview = preview(bytes(self._msg_out), self._msg_opcode)
            if len(self.frames) < self.keep or (f.opcode == 8 and f is self.close):
                self.frames.append(f)
            else:
                self.dropped += 1
            return
        if f.opcode != 8:
            f.preview = preview(payload[:self.preview_bytes], f.opcode)
        if len(self.frames) < self.keep or (f.opcode == 8 and f is self.close):
            self.frames.append(f)
        else:
            self.dropped += 1

    def _inflate_chunk(self, chunk: bytes) -> None:
        if self._cur_mask:
            k = self._cur_off & 3
            chunk = _unmask(chunk, self._cur_mask[k:] + self._cur_mask[:k])
        self._cur_off += len(chunk)
        if self._cur is not None:
            self._inflate_data(chunk, self._cur)

    def _inflate_data(self, data: bytes, f: FrameSummary) -> None:
        """Stream compressed bytes through the direction's inflater; keep the first preview bytes
        of the message's output and count the rest, up to inflate_bytes per message."""
        if self._ctx_lost:
            return
        if self._inflater is None:
            self._inflater = zlib.decompressobj(-15)
        d = self._inflater
        try:
            out = d.decompress(data, INFLATE_CHUNK)  # type: ignore[attr-defined]
            while True:
                room = self.preview_bytes - len(self._msg_out)
                if room > 0:
                    self._msg_out += out[:room]
                self._msg_total += len(out)
                if self._msg_total > self.inflate_bytes:
                    self._lose_context(f, f"{self.dir} message inflates past {self.inflate_bytes} bytes "
                                          "(--max-inflate-bytes); later compressed messages are not previewed")
                    self.inflate_cut += 1
                    return
                tail = d.unconsumed_tail  # type: ignore[attr-defined]
                if not tail:
                    return
                out = d.decompress(tail, INFLATE_CHUNK)  # type: ignore[attr-defined]
        except zlib.error as e:
            self._lose_context(f, f"{self.dir} message did not inflate: {e}")

    def _lose_context(self, f: FrameSummary, message: str) -> None:
        self._ctx_lost = True
        self._inflater = None
        self.anomalies.append(self._anomaly("inflate-failed", message, f.frame))


def _parse_header(buf: bytes, pos: int) -> tuple[int, int, int, int, bytes] | None:
    """(header length, byte0, byte1, payload length, mask key) or None when incomplete."""
    n = len(buf) - pos
    if n < 2:
        return None
    b0, b1 = buf[pos], buf[pos + 1]
    ln = b1 & 0x7F
    h = 2
    if ln == 126:
        if n < 4:
            return None
        ln = int.from_bytes(buf[pos + 2:pos + 4], "big")
        h = 4
    elif ln == 127:
        if n < 10:
            return None
        ln = int.from_bytes(buf[pos + 2:pos + 10], "big") & 0x7FFFFFFFFFFFFFFF
        h = 10
    mask = b""
    if b1 & 0x80:
        if n < h + 4:
            return None
        mask = bytes(buf[pos + h:pos + h + 4])
        h += 4
    return h, b0, b1, ln, mask


def _unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask, as one big-integer operation (a per-byte loop costs ~5 ms per 64 KiB)."""
    n = len(payload)
    if not n:
        return payload
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def preview(payload: bytes, opcode: int) -> str:
    if opcode == 1:
        return payload.decode("utf-8", "replace")
    try:
        text = payload.decode("utf-8")
        if text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    return "0x" + payload.hex()

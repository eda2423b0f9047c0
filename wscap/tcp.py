"""Per-direction TCP reassembly: segments in, ordered bytes / gaps / conflicts out.

Sequence numbers are unwrapped to 64-bit stream offsets relative to the first
byte, so wrap-around is invisible downstream. Out-of-order data waits in a
bounded buffer; retransmissions are compared byte for byte against a short
window of recently delivered bytes so that "same offset, different bytes" is
reported with both frame numbers. Nothing is papered over: a hole that never
fills becomes an explicit gap.
"""
from __future__ import annotations

from typing import Protocol

RECENT = 4096            # delivered bytes kept to check retransmissions against


class StreamSink(Protocol):
    def on_data(self, direction: int, data: bytes, frame: int, ts_ns: int) -> None: ...
    def on_gap(self, direction: int, length: int, frame: int, ts_ns: int) -> None: ...
    def on_conflict(self, direction: int, offset: int, old_frame: int, new_frame: int) -> None: ...


class HalfStream:
    """One direction of a TCP connection."""

    __slots__ = ("direction", "base", "next", "ooo", "ooo_bytes", "limit", "recent",
                 "recent_start", "recent_frames", "fin_at", "delivered", "gaps", "overflowed")

    def __init__(self, direction: int, limit: int) -> None:
        self.direction = direction
        self.base: int | None = None     # sequence number of stream offset 0
        self.next = 0                    # next expected stream offset
        self.ooo: dict[int, tuple[bytes, int, int, int]] = {}  # offset -> (data, cut, frame, ts)
        self.ooo_bytes = 0
        self.limit = limit
        self.recent = bytearray()
        self.recent_start = 0
        self.recent_frames: list[tuple[int, int]] = []   # (start offset, frame)
        self.fin_at: int | None = None
        self.delivered = 0
        self.gaps = 0
        self.overflowed = False

    def set_isn(self, seq: int) -> None:
        if self.base is None:
            self.base = (seq + 1) & 0xFFFFFFFF

    def offset(self, seq: int) -> int:
        if self.base is None:                 # capture started mid-stream
            self.base = seq
        rel = (seq - self.base) & 0xFFFFFFFF
        d = (rel - (self.next & 0xFFFFFFFF)) & 0xFFFFFFFF
        if d >= 0x80000000:
            d -= 0x100000000
        return self.next + d

    def feed(self, seq: int, data: bytes, paylen: int, frame: int, ts_ns: int, sink: StreamSink) -> None:
        off = self.offset(seq)
        cut = paylen - len(data)              # bytes lost to the snap length
        end = off + paylen
        if end <= self.next:
            self._check_retransmission(off, data, frame, sink)
            return
        if off < self.next:
            self._check_retransmission(off, data[:self.next - off], frame, sink)
            skip = self.next - off
            if skip >= len(data):
                cut -= skip - len(data)
                data = b""
            else:
                data = data[skip:]
            off = self.next
        if off == self.next:
            self._deliver(data, cut, frame, ts_ns, sink)
            self._drain(sink)
            return
        old = self.ooo.get(off)
        if old is not None:
            n = min(len(old[0]), len(data))
            if old[0][:n] != data[:n]:
                sink.on_conflict(self.direction, off, old[2], frame)
            if len(old[0]) >= len(data):
                return
            self.ooo_bytes -= len(old[0])
        self.ooo[off] = (data, cut, frame, ts_ns)
        self.ooo_bytes += len(data)
        if self.ooo_bytes > self.limit:
            self.overflowed = True
            self.flush_gap(frame, ts_ns, sink)

    def fin(self, seq: int, paylen: int) -> None:
        self.fin_at = self.offset(seq) + paylen

    def _deliver(self, data: bytes, cut: int, frame: int, ts_ns: int, sink: StreamSink) -> None:
        if data:
            self.recent_frames.append((self.next, frame))
            if len(self.recent_frames) > 64:
                del self.recent_frames[:32]
            self.recent += data
            if len(self.recent) > RECENT:
                drop = len(self.recent) - RECENT
                del self.recent[:drop]
                self.recent_start += drop
            self.next += len(data)
            self.delivered += len(data)
            sink.on_data(self.direction, data, frame, ts_ns)
        if cut > 0:
            self.gaps += 1
            self.next += cut
            self.recent.clear()
            self.recent_start = self.next
            sink.on_gap(self.direction, cut, frame, ts_ns)

    def _drain(self, sink: StreamSink) -> None:
        while self.ooo:
            k = min(self.ooo)
            if k > self.next:
                return
            data, cut, frame, ts = self.ooo.pop(k)
            self.ooo_bytes -= len(data)
            end = k + len(data) + cut
            if end <= self.next:
                self._check_retransmission(k, data, frame, sink)
                continue
            skip = self.next - k
            if skip:
                self._check_retransmission(k, data[:skip], frame, sink)
            if skip >= len(data):
                cut -= skip - len(data)
                data = b""
            else:
                data = data[skip:]
            self._deliver(data, cut, frame, ts, sink)

    def flush_gap(self, frame: int, ts_ns: int, sink: StreamSink) -> None:
        """Give up waiting for a hole: report it as a gap and deliver what follows."""
        while self.ooo:
            k = min(self.ooo)
            if k > self.next:
                self.gaps += 1
                sink.on_gap(self.direction, k - self.next, self.ooo[k][2], self.ooo[k][3])
                self.next = k
                self.recent.clear()
                self.recent_start = k
            self._drain(sink)

    def _check_retransmission(self, off: int, data: bytes, frame: int, sink: StreamSink) -> None:
        lo = max(off, self.recent_start)
        hi = min(off + len(data), self.recent_start + len(self.recent))
        if lo >= hi:
            return
        old = self.recent[lo - self.recent_start:hi - self.recent_start]
        new = data[lo - off:hi - off]
        if old != new:
            first_diff = next(i for i in range(len(new)) if old[i] != new[i]) + lo
            old_frame = 0
            for start, fr in self.recent_frames:
                if start <= first_diff:
                    old_frame = fr
            sink.on_conflict(self.direction, first_diff, old_frame, frame)

"""Per-direction TCP reassembly: segments in, ordered bytes / gaps / conflicts out.

Sequence numbers are unwrapped to 64-bit stream offsets relative to the first
byte, so wrap-around is invisible downstream. Out-of-order data waits in a
bounded buffer; retransmissions are compared byte for byte against a short
window of recently delivered bytes so that "same offset, different bytes" is
reported with both frame numbers. Nothing is papered over: a hole that never
fills becomes an explicit gap.
"""
from __future__ import annotations

import heapq
from typing import Protocol

from wscap.model.anomaly import make

RECENT = 4096            # delivered bytes kept to check retransmissions against
SEGMENT_COST = 64        # bookkeeping charged per buffered segment, so tiny/empty segments are bounded too


class StreamSink(Protocol):
    def on_data(self, direction: int, data: bytes, frame: int, ts_ns: int) -> None: ...
    def on_gap(self, direction: int, length: int, frame: int, ts_ns: int) -> None: ...
    def on_conflict(self, direction: int, offset: int, old_frame: int, new_frame: int) -> None: ...
    def on_probe(self, direction: int, kind: str, offset: int, frame: int) -> None: ...


class HalfStream:
    """One direction of a TCP connection."""

    __slots__ = ("direction", "base", "next", "ooo", "ooo_bytes", "limit", "recent",
                 "recent_start", "recent_frames", "delivered", "gaps", "overflowed",
                 "keep_recent", "overflows", "heap", "probe")

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
        self.delivered = 0
        self.gaps = 0
        self.overflowed = False
        self.keep_recent = True          # only while heads are parsed: conflicts matter there
        self.overflows = 0               # times the out-of-order buffer hit `limit`
        self.heap: list[int] = []        # offsets in `ooo` (may hold stale ones), smallest first
        # A zero-window probe's byte, held until later data shows whether it was real (see feed).
        self.probe: tuple[int, bytes, int, int, int] | None = None

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

    def feed(self, seq: int, data: bytes, paylen: int, frame: int, ts_ns: int, sink: StreamSink,
             zero_window: bool = False) -> None:
        """One segment's payload. `zero_window`: the receiver's last advertised window was 0.

        TCP probes are recognised as Wireshark's tcp.analysis does, never as conflicts:
        a keep-alive is 1 byte at snd.nxt-1 (Windows fills it with a byte that differs from the
        original one, RFC 9293 §3.8.4 allows any); a zero-window probe is 1 byte at snd.nxt sent
        into a zero window — held aside, and superseded by whatever data later covers that offset.
        """
        off = self.offset(seq)
        cut = paylen - len(data)              # bytes lost to the snap length
        end = off + paylen
        if paylen == 1 and off + 1 == self.next and self.base is not None:
            probe = getattr(sink, "on_probe", None)
            if probe is not None:
                probe(self.direction, "keep-alive", off, frame)
            return
        if zero_window and paylen == 1 and off == self.next:
            if self.probe is None:
                probe = getattr(sink, "on_probe", None)
                if probe is not None:
                    probe(self.direction, "zero-window-probe", off, frame)
            self.probe = (off, data, cut, frame, ts_ns)
            return
        if self.probe is not None:
            p_off, p_data, p_cut, p_frame, p_ts = self.probe
            if off <= p_off < end:
                self.probe = None            # later data covers the probe's offset: it wins
            elif off > p_off:
                self.probe = None
                if p_off == self.next:
                    # Data continues after the probe's offset: the receiver took the probe's byte.
                    self._deliver(p_data, p_cut, p_frame, p_ts, sink)
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
            self.ooo_bytes -= len(old[0]) + SEGMENT_COST
        else:
            heapq.heappush(self.heap, off)
        self.ooo[off] = (data, cut, frame, ts_ns)
        self.ooo_bytes += len(data) + SEGMENT_COST
        if self.ooo_bytes > self.limit:
            self.overflowed = True
            self._overflow(frame, sink)
            self.flush_gap(frame, ts_ns, sink)

    def _overflow(self, frame: int, sink: StreamSink) -> None:
        """Count the hit (`stats.limits_hit["flow_buffer"]`) and flag it once per direction."""
        self.overflows += 1
        hit = getattr(sink, "_hit", None)
        if hit is not None:
            hit("flow_buffer")
        anomalies = getattr(sink, "anomalies", None)
        if self.overflows == 1 and anomalies is not None:
            who = "client" if self.direction == 0 else "server"
            anomalies.append(make("flow-buffer-full",
                                  f"{who} out-of-order bytes exceeded the {self.limit}-byte flow buffer "
                                  f"at frame {frame}; the hole before them was declared a gap", frame))

    def _first(self) -> int | None:
        """Smallest buffered offset (stale heap entries are dropped on the way)."""
        heap, ooo = self.heap, self.ooo
        while heap:
            k = heap[0]
            if k in ooo:
                return k
            heapq.heappop(heap)
        return None

    def release(self) -> None:
        """Drop buffers once the connection is over (bytes already delivered are accounted)."""
        self.ooo.clear()
        self.heap = []
        self.ooo_bytes = 0
        self.recent = bytearray()
        self.recent_frames = []
        self.keep_recent = False

    def _deliver(self, data: bytes, cut: int, frame: int, ts_ns: int, sink: StreamSink) -> None:
        if data:
            if self.keep_recent:
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
            k = self._first()
            if k is None or k > self.next:
                return
            heapq.heappop(self.heap)
            data, cut, frame, ts = self.ooo.pop(k)
            self.ooo_bytes -= len(data) + SEGMENT_COST
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
            k = self._first()
            if k is None:
                break
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

"""One direction of a tshark TCP stream -> ordered bytes and holes (the `--engine tshark` reassembly).

tshark's fields give each segment's raw sequence number, its payload and its `tcp.analysis`
labels; this puts the bytes in stream order the way tshark's reassembly does: the first copy of a
byte is kept (a retransmission is not compared, so no `retransmission-conflict`), out-of-order
segments wait in a buffer bounded by `--flow-buffer`, a hole that never fills becomes an explicit
gap, a segment tshark labels `keep_alive` is not data, and one it labels `zero_window_probe` is
held aside until later data shows whether the receiver took it (RFC 9293 §3.8.6.1; the data sent
at that offset afterwards wins). The output events are what the session stage consumes
(`Connection.on_data`, `on_gap`, `on_probe`).
"""
from __future__ import annotations

import heapq
from typing import NamedTuple, Union

SEGMENT_COST = 64        # bookkeeping charged per buffered segment, so tiny segments are bounded too


class Data(NamedTuple):
    data: bytes
    frame: int
    ts_ns: int


class Gap(NamedTuple):
    length: int
    frame: int
    ts_ns: int


class Probe(NamedTuple):
    kind: str            # "keep-alive" | "zero-window-probe"
    offset: int
    frame: int


class Overflow(NamedTuple):
    frame: int           # the out-of-order buffer went over its bound here (a gap follows)


Event = Union[Data, Gap, Probe, Overflow]


class Direction:
    """Bytes of one direction, in order, from segments in capture order."""

    __slots__ = ("base", "next", "pending", "heap", "pending_bytes", "limit", "probe")

    def __init__(self, limit: int) -> None:
        self.base: int | None = None       # sequence number of stream offset 0
        self.next = 0                      # next stream offset to hand on
        self.pending: dict[int, tuple[bytes, int, int, int]] = {}   # offset -> (data, cut, frame, ts)
        self.heap: list[int] = []          # offsets in `pending` (stale ones dropped lazily)
        self.pending_bytes = 0
        self.limit = limit
        self.probe: tuple[int, bytes, int, int, int] | None = None  # a held zero-window probe

    def set_isn(self, seq: int) -> None:
        if self.base is None:
            self.base = (seq + 1) & 0xFFFFFFFF

    def _offset(self, seq: int) -> int:
        if self.base is None:              # the capture started mid-stream
            self.base = seq
        d = ((seq - self.base) & 0xFFFFFFFF) - (self.next & 0xFFFFFFFF)
        d &= 0xFFFFFFFF
        return self.next + (d - 0x100000000 if d >= 0x80000000 else d)

    def feed(self, seq: int, data: bytes, paylen: int, frame: int, ts_ns: int, keep_alive: bool,
             zero_window_probe: bool, out: list[Event]) -> None:
        off = self._offset(seq)
        cut = paylen - len(data)           # bytes lost to the snap length
        end = off + paylen
        if keep_alive and paylen == 1:
            out.append(Probe("keep-alive", off, frame))
            return
        if zero_window_probe and paylen == 1 and off == self.next:
            if self.probe is None:
                out.append(Probe("zero-window-probe", off, frame))
            self.probe = (off, data, cut, frame, ts_ns)
            return
        if self.probe is not None:
            p_off, p_data, p_cut, p_frame, p_ts = self.probe
            if off <= p_off < end:
                self.probe = None          # later data covers the probe's offset: it wins
            elif off > p_off:
                self.probe = None
                if p_off == self.next:     # data continues after it: the receiver took the probe's byte
                    self._deliver(p_data, p_cut, p_frame, p_ts, out)
        if end <= self.next:
            return                         # all seen before: the first copy stays
        if off < self.next:
            skip = self.next - off
            cut -= max(0, skip - len(data))
            data = data[skip:]
            off = self.next
        if off == self.next:
            self._deliver(data, cut, frame, ts_ns, out)
            self._drain(out)
            return
        old = self.pending.get(off)
        if old is not None:
            if len(old[0]) + old[1] >= len(data) + cut:
                return                     # the first copy stays
            self.pending_bytes -= len(old[0]) + SEGMENT_COST
        else:
            heapq.heappush(self.heap, off)
        self.pending[off] = (data, cut, frame, ts_ns)
        self.pending_bytes += len(data) + SEGMENT_COST
        if self.pending_bytes > self.limit:
            out.append(Overflow(frame))
            self.flush(out)

    def _deliver(self, data: bytes, cut: int, frame: int, ts_ns: int, out: list[Event]) -> None:
        if data:
            self.next += len(data)
            out.append(Data(data, frame, ts_ns))
        if cut > 0:
            self.next += cut
            out.append(Gap(cut, frame, ts_ns))

    def _first(self) -> int | None:
        while self.heap:
            k = self.heap[0]
            if k in self.pending:
                return k
            heapq.heappop(self.heap)
        return None

    def _drain(self, out: list[Event]) -> None:
        while self.pending:
            k = self._first()
            if k is None or k > self.next:
                return
            heapq.heappop(self.heap)
            data, cut, frame, ts = self.pending.pop(k)
            self.pending_bytes -= len(data) + SEGMENT_COST
            if k + len(data) + cut <= self.next:
                continue
            skip = self.next - k
            cut -= max(0, skip - len(data))
            self._deliver(data[skip:], cut, frame, ts, out)

    def flush(self, out: list[Event]) -> None:
        """Stop waiting for holes: each becomes a gap (at the frame of the bytes after it)."""
        while self.pending:
            k = self._first()
            if k is None:
                break
            if k > self.next:
                out.append(Gap(k - self.next, self.pending[k][2], self.pending[k][3]))
                self.next = k
            self._drain(out)

    def release(self) -> None:
        self.pending.clear()
        self.heap = []
        self.pending_bytes = 0

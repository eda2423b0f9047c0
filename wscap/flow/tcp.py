"""TCP, sans-IO: one connection's segments in, typed stream events out.

`TcpFlow` owns everything TCP about a connection: the two `HalfStream`
reassemblers, the SYN/FIN/RST lifecycle (what the document's `tcp` object and
the outcome read), the advertised windows that tell a zero-window probe from
data, and its own limit counters (`limits_hit`, read by the owner). It never
calls into the session: `segment()` returns the events (`wscap.model.events`)
in the order they happened, and the owner hands them on.

Sequence numbers are unwrapped to 64-bit stream offsets relative to the first
byte, so wrap-around is invisible downstream. Out-of-order data waits in a
bounded buffer; retransmissions are compared byte for byte against a short
window of recently delivered bytes so that "same offset, different bytes" is
reported with both frame numbers. Nothing is papered over: a hole that never
fills becomes an explicit gap.
"""
from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import Generic, Hashable, TypeVar

from wscap.model.anomaly import Anomaly, make
from wscap.model.events import (C2S, S2C, Closed, Conflict, Data, EndKind, Gap, Opened, Overflow, Probe,
                                ProbeKind, TcpEvent)

RECENT = 4096            # delivered bytes kept to check retransmissions against
SEGMENT_COST = 64        # bookkeeping charged per buffered segment, so tiny/empty segments are bounded too

# TCP flag bits (the same values as wscap.wire.decode's TH_*; kept here so tcp depends on no codec).
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10


@dataclass(slots=True)
class TcpEnd:
    """A FIN or RST: who sent it and when."""

    kind: str          # "fin" | "rst" (EndKind values)
    by: str            # "client" | "server"
    frame: int
    ts_ns: int

    def to_json(self) -> dict:
        return {"kind": self.kind, "by": self.by, "frame": self.frame, "ts": round(self.ts_ns / 1e9, 6)}


class HalfStream:
    """One direction of a TCP connection. Every method appends its events to `out`.

    `first_copy=True` is the reassembly the tshark engine asks for (it reads tshark's fields,
    not packets): as tshark's own, the first copy of a byte is kept and retransmissions are
    not compared (no Conflict events), and probes are what tshark's `tcp.analysis` labels say
    (`feed`'s keep_alive / zero_window arguments) rather than what the offsets and windows show.
    """

    __slots__ = ("direction", "base", "next", "ooo", "ooo_bytes", "limit", "recent",
                 "recent_start", "recent_frames", "delivered", "gaps",
                 "keep_recent", "overflows", "heap", "probe", "first_copy")

    def __init__(self, direction: int, limit: int, first_copy: bool = False) -> None:
        self.direction = direction
        self.first_copy = first_copy
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
        # only while heads are parsed: conflicts matter there (never with first_copy: nothing to compare)
        self.keep_recent = not first_copy
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

    def feed(self, seq: int, data: bytes, paylen: int, frame: int, ts_ns: int, out: list[TcpEvent],
             zero_window: bool = False, keep_alive: bool | None = None) -> None:
        """One segment's payload. `zero_window`: the receiver's last advertised window was 0 (the
        tshark engine: tshark labels this segment a zero-window probe).

        TCP probes are recognised as Wireshark's tcp.analysis does, never as conflicts:
        a keep-alive is 1 byte at snd.nxt-1 (Windows fills it with a byte that differs from the
        original one, RFC 9293 §3.8.4 allows any; `keep_alive`, when not None, is tshark's label
        instead); a zero-window probe is 1 byte at snd.nxt sent into a zero window — held aside,
        and superseded by whatever data later covers that offset (RFC 9293 §3.8.6.1).
        """
        off = self.offset(seq)
        cut = paylen - len(data)              # bytes lost to the snap length
        end = off + paylen
        if paylen == 1 and (off + 1 == self.next if keep_alive is None else keep_alive):
            out.append(Probe(self.direction, ProbeKind.KEEP_ALIVE, off, frame))
            return
        if zero_window and paylen == 1 and off == self.next:
            if self.probe is None:
                out.append(Probe(self.direction, ProbeKind.ZERO_WINDOW, off, frame))
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
                    self._deliver(p_data, p_cut, p_frame, p_ts, out)
        if end <= self.next:
            self._check_retransmission(off, data, frame, out)
            return
        if off < self.next:
            self._check_retransmission(off, data[:self.next - off], frame, out)
            skip = self.next - off
            if skip >= len(data):
                cut -= skip - len(data)
                data = b""
            else:
                data = data[skip:]
            off = self.next
        if off == self.next:
            self._deliver(data, cut, frame, ts_ns, out)
            self._drain(out)
            return
        old = self.ooo.get(off)
        if old is not None:
            if self.first_copy:
                if len(old[0]) + old[1] >= len(data) + cut:
                    return                    # the first copy stays
            else:
                n = min(len(old[0]), len(data))
                if old[0][:n] != data[:n]:
                    out.append(Conflict(self.direction, off, old[2], frame))
                if len(old[0]) >= len(data):
                    return
            self.ooo_bytes -= len(old[0]) + SEGMENT_COST
        else:
            heapq.heappush(self.heap, off)
        self.ooo[off] = (data, cut, frame, ts_ns)
        self.ooo_bytes += len(data) + SEGMENT_COST
        if self.ooo_bytes > self.limit:
            self.overflows += 1
            out.append(Overflow(self.direction, self.limit, frame, self.overflows == 1))
            self.flush_gap(out)

    def advance(self, seq: int, paylen: int) -> bool:
        """Count `paylen` in-order bytes at `seq` as delivered without handing them on (the fast
        path: a body being skipped). False (nothing done) unless they are exactly next in order
        with nothing buffered."""
        base = self.base
        if self.ooo or base is None or (seq - base) & 0xFFFFFFFF != self.next & 0xFFFFFFFF:
            return False
        self.next += paylen
        self.delivered += paylen
        return True

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

    def _deliver(self, data: bytes, cut: int, frame: int, ts_ns: int, out: list[TcpEvent]) -> None:
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
            out.append(Data(self.direction, data, frame, ts_ns))
        if cut > 0:
            self.gaps += 1
            self.next += cut
            self.recent.clear()
            self.recent_start = self.next
            out.append(Gap(self.direction, cut, frame, ts_ns))

    def _drain(self, out: list[TcpEvent]) -> None:
        while self.ooo:
            k = self._first()
            if k is None or k > self.next:
                return
            heapq.heappop(self.heap)
            data, cut, frame, ts = self.ooo.pop(k)
            self.ooo_bytes -= len(data) + SEGMENT_COST
            end = k + len(data) + cut
            if end <= self.next:
                self._check_retransmission(k, data, frame, out)
                continue
            skip = self.next - k
            if skip:
                self._check_retransmission(k, data[:skip], frame, out)
            if skip >= len(data):
                cut -= skip - len(data)
                data = b""
            else:
                data = data[skip:]
            self._deliver(data, cut, frame, ts, out)

    def flush_gap(self, out: list[TcpEvent]) -> None:
        """Give up waiting for a hole: report it as a gap and deliver what follows."""
        while self.ooo:
            k = self._first()
            if k is None:
                break
            if k > self.next:
                self.gaps += 1
                out.append(Gap(self.direction, k - self.next, self.ooo[k][2], self.ooo[k][3]))
                self.next = k
                self.recent.clear()
                self.recent_start = k
            self._drain(out)

    def _check_retransmission(self, off: int, data: bytes, frame: int, out: list[TcpEvent]) -> None:
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
            out.append(Conflict(self.direction, first_diff, old_frame, frame))


_BY = ("client", "server")

V = TypeVar("V")


class FlowTable(Generic[V]):
    """Flow key -> the owner's value for a tracked flow, or None for a flow proven uninteresting
    (so its packets are dropped cheaply). At most `max_flows` of either; the oldest goes first.

    `flows` is a plain dict on purpose: the capture reader's fast path looks keys up in it.
    """

    __slots__ = ("flows", "order", "max_flows")

    def __init__(self, max_flows: int) -> None:
        self.flows: dict[Hashable, V | None] = {}
        self.order: deque[Hashable] = deque()   # keys in creation order (may hold gone ones), for eviction
        self.max_flows = max_flows

    def admit(self, key: Hashable) -> tuple[Hashable, V | None] | None:
        """Make room for the new flow `key` and queue it for eviction (the owner then sets
        `flows[key]`); -> the (key, value) evicted to make room, for the owner to retire."""
        flows = self.flows
        gone = self._evict() if len(flows) >= self.max_flows else None
        order = self.order
        order.append(key)
        if len(order) > 2 * len(flows) + 4096:
            # Keys of flows that closed stay in the deque until eviction reaches them; compact it
            # (amortised linear) so the order itself stays bounded by the flows tracked.
            seen: set[Hashable] = set()
            kept: deque[Hashable] = deque()
            for k in order:
                if k in flows and k not in seen:
                    seen.add(k)
                    kept.append(k)
            kept.append(key)
            self.order = kept
        return gone

    def _evict(self) -> tuple[Hashable, V | None] | None:
        """Drop the oldest tracked flow. A deque of keys in creation order, not dict iteration:
        iterating a dict from the front re-walks every deleted slot, which made a SYN flood quadratic."""
        order, flows = self.order, self.flows
        while order:
            key = order.popleft()
            if key in flows:                  # else already gone (closed, or a newer flow reused the key)
                return key, flows.pop(key)
        return None


class TcpFlow:
    """Both directions of one TCP connection, its lifecycle and its counters.

    Directions are C2S / S2C, decided by the owner (who knows which side is the client).
    """

    __slots__ = ("halves", "syn_frame", "synack_frame", "end", "fins", "window", "zw", "limits_hit", "closed")

    def __init__(self, flow_buffer: int) -> None:
        self.halves = (HalfStream(C2S, flow_buffer), HalfStream(S2C, flow_buffer))
        self.syn_frame: int | None = None
        self.synack_frame: int | None = None
        self.end: TcpEnd | None = None      # the FIN/RST that describes how the connection ended
        self.fins: list[TcpEnd] = []        # every FIN and RST seen
        self.window = [1, 1]                # last advertised receive window per direction
        self.zw = False                     # a zero window was seen: the fast path steps aside
        self.limits_hit: dict[str, int] = {}
        # Both sides are done (a RST ended it, or both sides sent a FIN or RST): the state can go.
        self.closed = False

    # -- the segment path --------------------------------------------------------
    def segment(self, direction: int, flags: int, seq: int, payload: bytes, paylen: int, window: int,
                frame: int, ts_ns: int) -> list[TcpEvent]:
        """One segment of this connection -> its events, in order. A `Closed` event comes last,
        before any gap `flush()` would still report (the owner decides when to flush)."""
        out: list[TcpEvent] = []
        stream = self.halves[direction]
        if flags & SYN:
            if direction == C2S and not flags & ACK:
                stream.set_isn(seq)
                if self.syn_frame is None:
                    self.syn_frame = frame
                    out.append(Opened(C2S, frame, ts_ns))
            elif direction == S2C and flags & ACK:
                stream.set_isn(seq)
                if self.synack_frame is None:
                    self.synack_frame = frame
                    out.append(Opened(S2C, frame, ts_ns))
        if not flags & (SYN | RST):
            win = self.window
            win[direction] = window
            if window == 0:
                self.zw = True
            elif self.zw and win[1 - direction] and not (self.halves[0].probe or self.halves[1].probe):
                self.zw = False
        if paylen:
            overflows = stream.overflows
            stream.feed(seq, payload, paylen, frame, ts_ns, out, self.zw and self.window[1 - direction] == 0)
            if stream.overflows != overflows:
                hits = self.limits_hit
                hits["flow_buffer"] = hits.get("flow_buffer", 0) + stream.overflows - overflows
        if flags & (FIN | RST):
            kind = EndKind.RST if flags & RST else EndKind.FIN
            if self.note_end(kind.value, _BY[direction], frame, ts_ns):
                out.append(Closed(kind, direction, frame, ts_ns))
        return out

    def note_end(self, kind: str, by: str, frame: int, ts_ns: int) -> bool:
        """Record a FIN or RST; -> True when no more stream bytes will come (a RST, or FINs from
        both sides). The first end describes the connection, except that a RST replaces a FIN
        when no payload was ever seen (a refused or aborted attempt)."""
        end = TcpEnd(kind, by, frame, ts_ns)
        if self.end is None or (kind == "rst" and self.end.kind == "fin" and not self.saw_payload):
            self.end = end
        self.fins.append(end)
        self.closed = self.end.kind == "rst" or len({e.by for e in self.fins}) == 2
        return kind == "rst" or len({e.by for e in self.fins if e.kind == "fin"}) == 2

    def advance(self, direction: int, seq: int, paylen: int) -> bool:
        """The fast path: count `paylen` in-order bytes as seen without events (see HalfStream.advance)."""
        return self.halves[direction].advance(seq, paylen)

    def flush(self) -> list[TcpEvent]:
        """Stop waiting for holes: the buffered bytes are delivered after explicit gaps."""
        out: list[TcpEvent] = []
        for s in self.halves:
            if s.ooo:
                s.flush_gap(out)
        return out

    def release(self) -> None:
        for s in self.halves:
            s.release()

    def keep_recent(self, direction: int, keep: bool) -> None:
        """Whether retransmissions of this direction are still compared (only while heads are read)."""
        self.halves[direction].keep_recent = keep

    # -- facts -------------------------------------------------------------------
    @property
    def saw_payload(self) -> bool:
        return bool(self.halves[0].delivered or self.halves[1].delivered)

    @property
    def buffering(self) -> bool:
        return bool(self.halves[0].ooo or self.halves[1].ooo)

    def gaps(self) -> int:
        return self.halves[C2S].gaps + self.halves[S2C].gaps

    def delivered(self, direction: int) -> int:
        return self.halves[direction].delivered

    def seen(self, direction: int, n: int) -> None:
        """Count `n` bytes handed to the session by someone else (the tshark engine)."""
        self.halves[direction].delivered += n


def tcp_anomaly(ev: Conflict | Probe | Overflow) -> Anomaly:
    """The connection-level anomaly a TCP event is worth (the session lists it, bounded)."""
    who = _BY[ev.direction]
    if isinstance(ev, Conflict):
        return make("retransmission-conflict",
                    f"{who} bytes at stream offset {ev.offset} differ between frame {ev.old_frame} and frame "
                    f"{ev.new_frame}; kept frame {ev.old_frame}'s", ev.new_frame)
    if isinstance(ev, Probe):
        if ev.kind is ProbeKind.KEEP_ALIVE:
            return make("tcp-keep-alive", f"{who} keep-alive probe at stream offset {ev.offset} (snd.nxt-1); "
                        f"not data, not a conflict", ev.frame)
        return make("tcp-zero-window-probe", f"{who} probed a zero window with 1 byte at stream offset "
                    f"{ev.offset}; later data at that offset is kept", ev.frame)
    return make("flow-buffer-full", f"{who} out-of-order bytes exceeded the {ev.limit}-byte flow buffer "
                f"at frame {ev.frame}; the hole before them was declared a gap", ev.frame)

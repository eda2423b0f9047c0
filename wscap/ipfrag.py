"""Bounded IP fragment reassembly (IPv4 and IPv6 share it).

A datagram is keyed by (src, dst, id, version). Holes are tracked as a sorted
list of received (start, end) ranges; the datagram is released when the last
fragment (MF clear) is in and no hole is left. At most `capacity` datagrams are
held; the oldest is dropped (and counted) when a new one would exceed it.
"""
from __future__ import annotations

from collections import OrderedDict

MAX_DATAGRAM = 65535 + 8


class _Pending:
    __slots__ = ("parts", "total", "first_frame", "ts_ns")

    def __init__(self, frame: int, ts_ns: int) -> None:
        self.parts: dict[int, bytes] = {}
        self.total: int | None = None
        self.first_frame = frame
        self.ts_ns = ts_ns


class FragmentCache:
    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self.pending: OrderedDict[tuple, _Pending] = OrderedDict()
        self.dropped = 0

    def add(self, key: tuple, offset: int, more: bool, body: bytes, frame: int, ts_ns: int) -> bytes | None:
        if offset + len(body) > MAX_DATAGRAM:
            return None
        p = self.pending.get(key)
        if p is None:
            if len(self.pending) >= self.capacity:
                self.pending.popitem(last=False)
                self.dropped += 1
            p = self.pending[key] = _Pending(frame, ts_ns)
        p.parts.setdefault(offset, body)     # first copy wins, like most stacks
        if not more:
            p.total = offset + len(body)
        if p.total is None:
            return None
        out = bytearray()
        for off in sorted(p.parts):
            part = p.parts[off]
            if off > len(out):
                return None                  # a hole remains
            out[off:off + len(part)] = part
        if len(out) < p.total:
            return None
        del self.pending[key]
        return bytes(out[:p.total])

"""RawFrame -> Segment: link layer, IPv4/IPv6 (+ fragments), TCP, with struct at fixed offsets.

This is the per-packet hot path, so it builds no per-layer objects: one
function walks the headers by offset and returns a `Segment` (a NamedTuple) or
None for anything that is not TCP. dpkt's classes would cost ~30 s per million
packets here; the layouts below are the same ones dpkt declares.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from .ipfrag import FragmentCache
from .model import (DLT_RAW_ALT, DLT_RAW_ALT2, LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6,
                    LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_LOOP, LINKTYPE_NULL,
                    LINKTYPE_RAW, RawFrame)

TH_FIN, TH_SYN, TH_RST, TH_PSH, TH_ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_ETH_IP4, _ETH_IP6 = 0x0800, 0x86DD
_VLAN_TYPES = (0x8100, 0x88A8, 0x9100, 0x9200)
_IP6_EXT = (0, 43, 60, 51, 135, 139, 140)   # extension headers that we walk past
_u16 = struct.Struct("!H").unpack_from
_tcp = struct.Struct("!HHIIBB").unpack_from
_null_le = struct.Struct("<I").unpack_from
_null_be = struct.Struct(">I").unpack_from
_DOCKER_DNS = bytes([127, 0, 0, 11])      # Docker's embedded resolver (random ports behind DNAT)


class Segment(NamedTuple):
    frame: int
    ts_ns: int
    src: bytes          # 4 or 16 address bytes
    sport: int
    dst: bytes
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes      # captured payload bytes
    paylen: int         # payload length on the wire (> len(payload) when cut by the snap length)
    source: int


class DecodeStats:
    __slots__ = ("packets", "tcp", "truncated", "other")

    def __init__(self) -> None:
        self.packets = 0
        self.tcp = 0
        self.truncated = 0
        self.other = 0


def ip_offset(frame: RawFrame) -> tuple[int, int] | None:
    """(offset of the IP header, IP version hint 0/4/6) for the frame's link type, or None."""
    lt = frame.linktype
    data = frame.data
    if lt == LINKTYPE_ETHERNET:
        if len(data) < 14:
            return None
        off = 12
        etype = _u16(data, off)[0]
        while etype in _VLAN_TYPES:          # 802.1Q / 802.1ad, possibly stacked (QinQ)
            off += 4
            if len(data) < off + 2:
                return None
            etype = _u16(data, off)[0]
        if etype == _ETH_IP4:
            return off + 2, 4
        if etype == _ETH_IP6:
            return off + 2, 6
        return None
    if lt == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            return None
        etype = _u16(data, 14)[0]
        return (16, 4) if etype == _ETH_IP4 else (16, 6) if etype == _ETH_IP6 else None
    if lt == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            return None
        etype = _u16(data, 0)[0]
        return (20, 4) if etype == _ETH_IP4 else (20, 6) if etype == _ETH_IP6 else None
    if lt in (LINKTYPE_RAW, DLT_RAW_ALT, DLT_RAW_ALT2, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return 0, 0
    if lt in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 4:
            return None
        fam = (_null_be if lt == LINKTYPE_LOOP else _null_le)(data, 0)[0]
        if fam not in (2, 24, 28, 30):   # AF_INET, AF_INET6 on BSDs/macOS
            fam = _null_be(data, 0)[0]   # some writers use network order for DLT_NULL
        return (4, 4) if fam == 2 else (4, 6) if fam in (24, 28, 30) else None
    return None


class Decoder:
    """Turns frames into TCP segments; owns the (bounded) IP fragment cache."""

    def __init__(self, max_fragments: int = 4096) -> None:
        self.stats = DecodeStats()
        self.frags = FragmentCache(max_fragments)
        # UDP DNS goes to this callable (wscap.dns.DnsTracker.udp); every other UDP is dropped.
        self.udp_sink = None

    def decode(self, frame: RawFrame) -> Segment | None:
        self.stats.packets += 1
        loc = ip_offset(frame)
        if loc is None:
            self.stats.other += 1
            return None
        off, _hint = loc
        data = frame.data
        if len(data) < off + 1:
            self.stats.truncated += 1
            return None
        ver = data[off] >> 4
        if ver == 4:
            return self._ipv4(frame, data, off)
        if ver == 6:
            return self._ipv6(frame, data, off)
        self.stats.other += 1
        return None

    def _ipv4(self, frame: RawFrame, data: bytes, off: int) -> Segment | None:
        if len(data) < off + 20:
            self.stats.truncated += 1
            return None
        ihl = (data[off] & 0x0F) * 4
        total = _u16(data, off + 2)[0]
        frag = _u16(data, off + 6)[0]
        proto = data[off + 9]
        if proto == 17 and self.udp_sink is not None and ihl >= 20 and not frag & 0x3FFF:
            return self._udp(frame, data, off + ihl, off + (total or frame.wirelen - off),
                             data[off + 12:off + 16], data[off + 16:off + 20])
        if proto != 6 or ihl < 20:
            self.stats.other += 1
            return None
        src = data[off + 12:off + 16]
        dst = data[off + 16:off + 20]
        if total == 0:            # TSO: length left 0 by the NIC; trust the capture
            total = frame.wirelen - off
        if frag & 0x3FFF:         # MF set or offset != 0: a fragment
            body = data[off + ihl:off + total]
            whole = self.frags.add((src, dst, _u16(data, off + 4)[0], 4), (frag & 0x1FFF) * 8,
                                   bool(frag & 0x2000), body, frame.no, frame.ts_ns)
            if whole is None:
                return None
            return self._tcp(frame, whole, 0, len(whole), src, dst)
        return self._tcp(frame, data, off + ihl, off + total, src, dst)

    def _ipv6(self, frame: RawFrame, data: bytes, off: int) -> Segment | None:
        if len(data) < off + 40:
            self.stats.truncated += 1
            return None
        plen = _u16(data, off + 4)[0]
        nxt = data[off + 6]
        src = data[off + 8:off + 24]
        dst = data[off + 24:off + 40]
        end = off + 40 + plen if plen else len(data)
        p = off + 40
        while nxt in _IP6_EXT or nxt == 44:
            if len(data) < p + 8:
                self.stats.truncated += 1
                return None
            if nxt == 44:   # Fragment header
                fo = _u16(data, p + 2)[0]
                ident = struct.unpack_from("!I", data, p + 4)[0]
                nxt2 = data[p]
                body = data[p + 8:end]
                if fo & 0xFFF9 == 0:      # offset 0 and M clear: atomic fragment
                    p += 8
                    nxt = nxt2
                    continue
                whole = self.frags.add((src, dst, ident, 6), fo & 0xFFF8, bool(fo & 1), body,
                                       frame.no, frame.ts_ns)
                if whole is None or nxt2 != 6:
                    return None
                return self._tcp(frame, whole, 0, len(whole), src, dst)
            hl = (data[p + 1] + 2) * 4 if nxt == 51 else (data[p + 1] + 1) * 8
            nxt = data[p]
            p += hl
        if nxt == 17 and self.udp_sink is not None:
            return self._udp(frame, data, p, end, src, dst)
        if nxt != 6:
            self.stats.other += 1
            return None
        return self._tcp(frame, data, p, end, src, dst)

    def _udp(self, frame: RawFrame, data: bytes, p: int, end: int, src: bytes, dst: bytes) -> None:
        """A UDP datagram: handed to `udp_sink` when it is DNS (port 53, or Docker's 127.0.0.11)."""
        self.stats.other += 1
        if len(data) < p + 8:
            return None
        sport, dport = struct.unpack_from("!HH", data, p)
        if sport == 53 or dport == 53 or src == _DOCKER_DNS or dst == _DOCKER_DNS:
            self.udp_sink(frame.source, frame.no, frame.ts_ns, src, sport, dst, dport, data[p + 8:end])
        return None

    def _tcp(self, frame: RawFrame, data: bytes, p: int, end: int, src: bytes, dst: bytes) -> Segment | None:
        if len(data) < p + 20:
            self.stats.truncated += 1
            return None
        sport, dport, seq, ack, offx, flags = _tcp(data, p)
        hl = (offx >> 4) * 4
        if hl < 20:
            self.stats.other += 1
            return None
        self.stats.tcp += 1
        start = p + hl
        paylen = max(0, end - start)
        payload = data[start:end]
        if len(payload) < paylen:
            self.stats.truncated += 1
        return Segment(frame.no, frame.ts_ns, src, sport, dst, dport, seq, ack, flags,
                       payload, paylen, frame.source)

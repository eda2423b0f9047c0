"""Cut the packets of one chain out of a capture (``wscap slice``).

``slice_capture(in_path, out_path, legs)`` copies every packet whose TCP
4-tuple belongs to one of ``legs`` (either direction) into a new classic pcap
file, keeping each packet's bytes, original length and timestamp exactly and
the capture's link type, so the slice opens in Wireshark like the original.

Input: pcap (µs or ns, either byte order), pcapng (any number of sections and
interfaces; each interface's link type and timestamp resolution are honoured)
and gzip-compressed versions of both. The containers are parsed with dpkt's
header and block classes; the packet headers are decoded here (Ethernet with
802.1Q/802.1ad tags, Linux SLL and SLL2, raw IPv4/IPv6, BSD NULL and OpenBSD
LOOP loopback), tolerating packets cut by the snap length.

A pcap file has one link type. If the matching packets come from interfaces
with different link types (a pcapng with ``-i any`` and ``-i eth0``), this
raises ``ValueError`` rather than writing a file Wireshark would misread.
"""
from __future__ import annotations

import gzip
import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable, Iterator

import dpkt

__all__ = ["slice_capture", "chain_legs", "SliceResult", "tcp_key"]

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", False), b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True), b"\xa1\xb2\x3c\x4d": (">", True),
}
_PCAPNG_SHB = 0x0A0D0D0A
_BT_IDB, _BT_PB, _BT_SPB, _BT_EPB = 1, 2, 3, 6
_MAX_BLOCK = 1 << 26   # larger is corruption


@dataclass
class SliceResult:
    packets_read: int = 0
    packets_written: int = 0
    linktype: int | None = None
    nanosecond: bool = False
    undecoded: int = 0                       # packets whose link type/headers wscap cannot decode
    errors: list[str] = field(default_factory=list)


@dataclass
class _Pkt:
    ts_ns: int
    linktype: int
    data: bytes
    wirelen: int
    ns_res: bool          # the source had sub-microsecond resolution


# ---- addresses -------------------------------------------------------------

def _endpoint(addr: str) -> tuple[bytes, int]:
    addr = addr.strip()
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = addr.rpartition(":")
    return ipaddress.ip_address(host).packed, int(port)


def tcp_key(a: tuple[bytes, int], b: tuple[bytes, int]) -> tuple[tuple[bytes, int], tuple[bytes, int]]:
    """Direction-free key of a TCP connection."""
    return (a, b) if a <= b else (b, a)


def chain_legs(doc: dict[str, Any], chain_id: Any) -> list[tuple[str, str]]:
    """(client, server) of every hop of chain ``chain_id`` in a wscap document."""
    want = int(chain_id) if isinstance(chain_id, str) and chain_id.strip().isdigit() else chain_id
    hss = {h.get("id"): h for h in doc.get("handshakes") or []}
    for ch in doc.get("chains") or []:
        if ch.get("id") == want:
            return [(str(hss[h]["client"]), str(hss[h]["server"])) for h in ch.get("hops") or [] if h in hss]
    raise KeyError(f"no chain {chain_id!r} in the document")


# ---- link and network layer ------------------------------------------------

def _ip_from_link(linktype: int, d: bytes) -> tuple[int, int] | None:
    """(offset of the IP header, IP version) or None."""
    if linktype == 1:  # Ethernet, possibly VLAN-tagged (802.1Q, 802.1ad, old QinQ)
        if len(d) < 14:
            return None
        off, et = 14, struct.unpack_from("!H", d, 12)[0]
        while et in (0x8100, 0x88A8, 0x9100) and len(d) >= off + 4:
            et = struct.unpack_from("!H", d, off + 2)[0]
            off += 4
        return (off, 4) if et == 0x0800 else (off, 6) if et == 0x86DD else None
    if linktype == 113:  # Linux cooked v1: protocol at 14
        if len(d) < 16:
            return None
        et = struct.unpack_from("!H", d, 14)[0]
        return (16, 4) if et == 0x0800 else (16, 6) if et == 0x86DD else None
    if linktype == 276:  # Linux cooked v2: protocol at 0
        if len(d) < 20:
            return None
        et = struct.unpack_from("!H", d, 0)[0]
        return (20, 4) if et == 0x0800 else (20, 6) if et == 0x86DD else None
    if linktype in (0, 108):  # BSD NULL (host order) / OpenBSD LOOP (network order)
        if len(d) < 4:
            return None
        fam = struct.unpack_from("!I" if linktype == 108 else "<I", d, 0)[0]
        if linktype == 0 and fam > 0xFFFF:  # written on a big-endian host
            fam = struct.unpack_from(">I", d, 0)[0]
        if fam == 2:
            return (4, 4)
        if fam in (10, 24, 28, 30):  # AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, macOS
            return (4, 6)
        return None
    if linktype in (101, 12, 14, 228, 229):  # raw IP
        if not d:
            return None
        v = d[0] >> 4
        return (0, v) if v in (4, 6) else None
    return None


def _tcp_tuple(linktype: int, d: bytes) -> tuple[tuple[bytes, int], tuple[bytes, int]] | None:
    loc = _ip_from_link(linktype, d)
    if loc is None:
        return None
    off, ver = loc
    if ver == 4:
        if len(d) < off + 20 or d[off] >> 4 != 4:
            return None
        ihl = (d[off] & 0x0F) * 4
        if d[off + 9] != 6 or struct.unpack_from("!H", d, off + 6)[0] & 0x1FFF:
            return None  # not TCP, or a non-first fragment (no TCP header)
        src, dst = d[off + 12:off + 16], d[off + 16:off + 20]
        t = off + ihl
    else:
        if len(d) < off + 40 or d[off] >> 4 != 6:
            return None
        nh = d[off + 6]
        src, dst = d[off + 8:off + 24], d[off + 24:off + 40]
        t = off + 40
        while nh != 6:
            if nh in (0, 43, 60) and len(d) >= t + 2:
                nh, t = d[t], t + (d[t + 1] + 1) * 8
            elif nh == 44 and len(d) >= t + 8:  # fragment header
                if struct.unpack_from("!H", d, t + 2)[0] & 0xFFF8:
                    return None
                nh, t = d[t], t + 8
            elif nh == 51 and len(d) >= t + 2:  # AH
                nh, t = d[t], t + (d[t + 1] + 2) * 4
            else:
                return None
    if len(d) < t + 4:
        return None
    sp, dp = struct.unpack_from("!HH", d, t)
    return (bytes(src), sp), (bytes(dst), dp)


# ---- containers --------------------------------------------------------------

def _open(path: str) -> BinaryIO:
    f = open(path, "rb")
    if f.read(2) == b"\x1f\x8b":
        f.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    f.seek(0)
    return f


def _read_pcap(f: BinaryIO, magic: bytes, res: SliceResult, name: str) -> Iterator[_Pkt]:
    order, nano = _PCAP_MAGICS[magic]
    rest = f.read(20)
    if len(rest) < 20:
        res.errors.append(f"{name}: truncated pcap header")
        return
    fh_cls = dpkt.pcap.LEFileHdr if order == "<" else dpkt.pcap.FileHdr
    ph_cls = dpkt.pcap.LEPktHdr if order == "<" else dpkt.pcap.PktHdr
    fh = fh_cls(magic + rest)
    linktype = fh.linktype & 0x0FFFFFFF  # upper bits may carry FCS info
    no = 0
    while True:
        hb = f.read(16)
        if not hb:
            return
        no += 1
        if len(hb) < 16:
            res.errors.append(f"{name}: frame {no}: record header truncated")
            return
        ph = ph_cls(hb)
        if ph.caplen > _MAX_BLOCK:
            res.errors.append(f"{name}: frame {no}: absurd record length {ph.caplen}")
            return
        data = f.read(ph.caplen)
        if len(data) < ph.caplen:
            res.errors.append(f"{name}: frame {no}: record truncated (header says {ph.caplen} bytes, "
                              f"{len(data)} left)")
            return
        ts = ph.tv_sec * 1_000_000_000 + ph.tv_usec * (1 if nano else 1000)
        yield _Pkt(ts, linktype, data, ph.len, nano)


def _tsres(opt: bytes) -> tuple[int, int, bool]:
    """(numerator, denominator) turning ticks into ns, and 'finer than µs'."""
    v = opt[0]
    if v & 0x80:
        return 1_000_000_000, 1 << (v & 0x7F), (1 << (v & 0x7F)) > 1_000_000
    exp = v & 0x7F
    return 1_000_000_000, 10 ** exp, exp > 6


def _read_pcapng(f: BinaryIO, first: bytes, res: SliceResult, name: str) -> Iterator[_Pkt]:
    ifaces: list[tuple[int, int, int, int, bool]] = []  # linktype, num, den, offset_s, fine
    le = True
    no = 0
    pending: bytes | None = first
    while True:
        head = pending if pending is not None else f.read(8)
        pending = None
        if not head:
            return
        if len(head) < 8:
            res.errors.append(f"{name}: truncated block header after frame {no}")
            return
        if head[:4] == b"\x0a\x0d\x0d\x0a":  # section header: byte order may change
            bom = f.read(4)
            if len(bom) < 4:
                res.errors.append(f"{name}: truncated section header after frame {no}")
                return
            le = bom == b"\x4d\x3c\x2b\x1a"
            head += bom
            ifaces = []  # interface ids restart in every section
        fmt = "<I" if le else ">I"
        btype = struct.unpack_from(fmt, head, 0)[0]
        blen = struct.unpack_from(fmt, head, 4)[0]
        if blen < 12 or blen > _MAX_BLOCK or blen % 4 or blen < len(head):
            res.errors.append(f"{name}: corrupt block length {blen} after frame {no}")
            return
        body = f.read(blen - len(head))
        if len(body) < blen - len(head):
            res.errors.append(f"{name}: block truncated after frame {no}")
            return
        block = head + body
        if btype == _BT_IDB:
            idb = (dpkt.pcapng.InterfaceDescriptionBlockLE if le else dpkt.pcapng.InterfaceDescriptionBlock)(block)
            num, den, fine, off = 1_000_000_000, 1_000_000, False, 0
            for opt in idb.opts:
                if opt.code == 9 and opt.data:
                    num, den, fine = _tsres(opt.data)
                elif opt.code == 14 and len(opt.data) >= 8:
                    off = struct.unpack("<q" if le else ">q", opt.data[:8])[0]
            ifaces.append((idb.linktype, num, den, off, fine))
        elif btype in (_BT_EPB, _BT_PB):
            no += 1
            cls = ((dpkt.pcapng.EnhancedPacketBlockLE if le else dpkt.pcapng.EnhancedPacketBlock)
                   if btype == _BT_EPB else
                   (dpkt.pcapng.PacketBlockLE if le else dpkt.pcapng.PacketBlock))
            b = cls(block)
            if b.iface_id >= len(ifaces):
                res.errors.append(f"{name}: frame {no}: unknown interface {b.iface_id}")
                continue
            lt, num, den, off, fine = ifaces[b.iface_id]
            ticks = (b.ts_high << 32) | b.ts_low
            yield _Pkt(off * 1_000_000_000 + ticks * num // den, lt, bytes(b.pkt_data[:b.caplen]),
                       b.pkt_len, fine)
        elif btype == _BT_SPB and ifaces:
            no += 1
            wirelen = struct.unpack_from(fmt, block, 8)[0]
            # A simple packet block has no timestamp and belongs to interface 0.
            yield _Pkt(0, ifaces[0][0], bytes(block[12:blen - 4][:wirelen]), wirelen, False)


def _packets(path: str, res: SliceResult) -> Iterator[_Pkt]:
    with _open(path) as f:
        magic = f.read(4)
        if magic in _PCAP_MAGICS:
            yield from _read_pcap(f, magic, res, path)
        elif len(magic) == 4 and struct.unpack("<I", magic)[0] == _PCAPNG_SHB:
            yield from _read_pcapng(f, magic + f.read(4), res, path)
        else:
            raise ValueError(f"{path}: not a pcap or pcapng file")


# ---- the slice ---------------------------------------------------------------

def slice_capture(in_path: str, out_path: str, legs: Iterable[tuple[str, str]]) -> SliceResult:
    """Write the packets of ``legs`` from ``in_path`` to ``out_path`` (classic pcap).

    ``legs`` are ``(client, server)`` address strings as in the JSON document
    (``"172.18.0.1:51234"``, ``"[::1]:5173"``). Matching is on the TCP
    4-tuple in either direction. The output is nanosecond pcap when the input
    had sub-microsecond timestamps, else microsecond pcap; its snap length is
    262144. Returns counts and any read errors (reading stops at the first
    corrupt record; packets before it are written).
    """
    keys = {tcp_key(_endpoint(c), _endpoint(s)) for c, s in legs}
    res = SliceResult()
    picked: list[_Pkt] = []
    first_lt: int | None = None
    for p in _packets(in_path, res):
        res.packets_read += 1
        if first_lt is None:
            first_lt = p.linktype
        t = _tcp_tuple(p.linktype, p.data)
        if t is None:
            res.undecoded += 1
            continue
        if tcp_key(*t) in keys:
            picked.append(p)
    linktypes = {p.linktype for p in picked}
    if len(linktypes) > 1:
        raise ValueError(f"{in_path}: the matching packets have several link types "
                         f"({', '.join(map(str, sorted(linktypes)))}); a pcap file holds one")
    nano = any(p.ns_res for p in picked)
    if not picked:
        # An empty slice still gets a valid file, in the capture's first link type.
        linktypes = {first_lt if first_lt is not None else 1}
    linktype = linktypes.pop()
    res.linktype, res.nanosecond = linktype, nano
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    with open(out_path, "wb") as out:
        out.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 262144, linktype))
        for p in picked:
            sec, frac = divmod(p.ts_ns, 1_000_000_000)
            sub = frac if nano else frac // 1000
            out.write(struct.pack("<IIII", sec, sub, len(p.data), p.wirelen))
            out.write(p.data)
            res.packets_written += 1
    return res

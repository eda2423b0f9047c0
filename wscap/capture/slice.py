"""Cut the packets of one chain out of a capture (``wscap slice``).

``slice_capture(in_path, out_path, legs)`` copies every packet whose TCP
4-tuple belongs to one of ``legs`` (either direction) into a new classic pcap
file, keeping each packet's bytes, original length and timestamp exactly and
the capture's link type, so the slice opens in Wireshark like the original.

Input: pcap (µs or ns, either byte order), pcapng (any number of sections and
interfaces; each interface's link type and timestamp resolution are honoured)
and gzip-compressed versions of both, read by wscap's own capture reader
(capture/files.py, so damage is handled the same way everywhere); the link layer
is found with the decoder's own table (wire/linklayer.py: Ethernet with VLAN/QinQ
tags, Linux SLL and SLL2, raw IPv4/IPv6, BSD NULL and OpenBSD LOOP loopback), the
output is written with wire/pcapio.py's records, and packets cut by the snap length
are tolerated.

A pcap file has one link type. If the matching packets come from interfaces
with different link types (a pcapng with ``-i any`` and ``-i eth0``), this
raises ``ValueError`` rather than writing a file Wireshark would misread.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, Callable, Iterable, Iterator, cast

from wscap.wire import pcapbuild, pcapio
from wscap.wire.linklayer import ip_version, locate
from wscap.model.endpoint import split_endpoint

__all__ = ["slice_capture", "chain_legs", "SliceResult", "tcp_key", "output_format"]

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
    """A document's `ip:port` as the packed address and port the packets carry (raises ValueError
    for text that is not an address with a port: the caller says which leg)."""
    host, port = split_endpoint(addr.strip())
    if port is None:
        raise ValueError(f"no port in {addr!r}")
    return ipaddress.ip_address(host).packed, port


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
    """(offset of the IP header, IP version) or None: wire/linklayer.py's table (the decoder's)."""
    loc = locate(linktype, d)
    if loc is None:
        return None
    ver = ip_version(loc[0], d, loc[1])
    return (loc[1], ver) if ver else None


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


# ---- reading -------------------------------------------------------------------

def _packets(path: str, res: SliceResult) -> Iterator[_Pkt]:
    """Every frame, through wscap's own capture reader: the same formats, the same tolerance of
    damage (reading stops at the first corrupt record, with one line naming file and frame)."""
    from wscap.capture.files import ReadResult, read_frames
    rr = ReadResult(path=path)
    for f in read_frames(path, rr):
        # Sub-microsecond digits mean the source had ns resolution: keep them in the output.
        yield _Pkt(f.ts_ns, f.linktype, f.data, f.wirelen, f.ts_ns % 1000 != 0)
    res.errors.extend(rr.errors)


def output_format(out_path: str, input_format: str) -> str:
    """The slice's format: the output's extension decides (.pcapng -> pcapng, .pcap/.cap ->
    pcap); any other name (and `-`, stdout) keeps the input's format."""
    low = out_path.lower()
    if low.endswith((".pcapng", ".pcapng.gz")):
        return "pcapng"
    if low.endswith((".pcap", ".cap", ".pcap.gz")):
        return "pcap"
    return "pcapng" if input_format == "pcapng" else "pcap"


def _write_pcapng(out: IO[Any], picked: Iterable[_Pkt], linktypes: list[int]) -> int:
    """SHB, one IDB per link type (nanosecond resolution: timestamps kept exactly), EPBs.
    `picked` is streamed (the second pass of slice_capture): nothing is held."""
    out.write(pcapbuild.pcapng_shb("wscap slice"))
    ifaces: dict[int, int] = {}
    for lt in linktypes:
        ifaces[lt] = len(ifaces)
        out.write(pcapbuild.pcapng_idb(lt, 262144, tsresol=9))     # if_tsresol = 10^-9
    n = 0
    for p in picked:
        ts = max(p.ts_ns, 0) & 0xFFFFFFFFFFFFFFFF
        out.write(pcapbuild.pcapng_epb(ifaces[p.linktype], ts, p.data, min(max(p.wirelen, len(p.data)), 0xFFFFFFFF)))
        n += 1
    return n


def slice_capture(in_path: str, out_path: "str | BinaryIO", legs: Iterable[tuple[str, str]],
                  fmt: str = "pcap") -> SliceResult:
    """Write the packets of ``legs`` from ``in_path`` to ``out_path`` (a path, or an open binary
    stream such as stdout), as classic pcap or, with ``fmt="pcapng"``, pcapng (one interface per
    link type, nanosecond timestamps).

    ``legs`` are ``(client, server)`` address strings as in the JSON document
    (``"172.18.0.1:51234"``, ``"[::1]:5173"``). Matching is on the TCP
    4-tuple in either direction. The output is nanosecond pcap when the input
    had sub-microsecond timestamps, else microsecond pcap; its snap length is
    262144. Returns counts and any read errors (reading stops at the first
    corrupt record; packets before it are written).
    """
    keys = {tcp_key(_endpoint(c), _endpoint(s)) for c, s in legs}
    res = SliceResult()
    from wscap.wire.decode import Decoder
    from wscap.model.raw import RawFrame

    def matcher() -> Callable[[_Pkt], bool | None]:
        tunnels = Decoder(max_fragments=64)
        n = [0]

        def match(p: _Pkt) -> bool | None:
            """True/False: the packet is/is not one of the legs'; None: no TCP 4-tuple in it."""
            n[0] += 1
            t = _tcp_tuple(p.linktype, p.data)
            if t is None:
                # Inside a tunnel (VXLAN, GENEVE, GRE, IP-in-IP, MPLS, GTP-U): match on the inner
                # 4-tuple, keep the packet whole (outer headers and all), as analyze found it.
                seg = tunnels.decode(RawFrame(n[0], p.ts_ns, p.linktype, p.data, p.wirelen))
                if seg is not None and seg.tunnel is not None:
                    t = (seg.src, seg.sport), (seg.dst, seg.dport)
            if t is None:
                return None
            return tcp_key(*t) in keys
        return match

    # Two passes, nothing held: the first learns the output's link type and resolution (the pcap
    # header comes first), the second copies the matching packets straight to the file. A slice
    # of a huge chain costs constant memory (it once kept every matching packet in a list).
    first_lt: int | None = None
    linktypes: set[int] = set()
    nano = False
    matched = 0
    match = matcher()
    for p in _packets(in_path, res):
        res.packets_read += 1
        if first_lt is None:
            first_lt = p.linktype
        m = match(p)
        if m is None:
            res.undecoded += 1
        elif m:
            matched += 1
            linktypes.add(p.linktype)
            nano = nano or p.ns_res
    if len(linktypes) > 1 and fmt != "pcapng":   # pcapng: one interface block per link type
        raise ValueError(f"{in_path}: the matching packets have several link types "
                         f"({', '.join(map(str, sorted(linktypes)))}); a pcap file holds one")
    if not matched:
        # An empty slice still gets a valid file, in the capture's first link type.
        linktypes = {first_lt if first_lt is not None else 1}
    all_lts = sorted(linktypes)
    linktype = linktypes.pop()
    res.linktype, res.nanosecond = linktype, nano
    own = isinstance(out_path, (str, bytes))
    if own:
        from wscap.capture.outpath import open_output
        out = open_output(cast(str, out_path), binary=True)     # never through a symlink (see wscap.capture.outpath)
    else:
        out = cast(IO[Any], out_path)
    try:
        if fmt == "pcapng":
            # Every link type gets its interface block: one slice may hold legs of several.
            lts = all_lts
            res.linktype, res.nanosecond = lts[0], True
            again = SliceResult()
            match = matcher()
            res.packets_written = _write_pcapng(
                out, (p for p in (_packets(in_path, again) if matched else ()) if match(p)), lts)
            return res
        out.write(pcapbuild.pcap_header(linktype, 262144, nano))
        again = SliceResult()          # the second pass meets the same errors: said once
        match = matcher()
        for p in (_packets(in_path, again) if matched else ()):
            if not match(p):
                continue
            sec, frac = divmod(p.ts_ns, 1_000_000_000)
            if not 0 <= sec <= 0xFFFFFFFF:
                # A (hostile or broken) pcapng timestamp a classic pcap cannot hold: clamp, and say so.
                res.errors.append(f"{in_path}: a timestamp outside pcap's range was clamped in the slice")
                sec, frac = min(max(sec, 0), 0xFFFFFFFF), 0
            sub = frac if nano else frac // 1000
            out.write(pcapbuild.pcap_record(sec, sub, p.data, min(max(p.wirelen, len(p.data)), 0xFFFFFFFF)))
            res.packets_written += 1
    finally:
        if own:
            out.close()
    return res

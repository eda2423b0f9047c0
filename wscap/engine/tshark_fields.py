"""tshark's dissection of a capture, as typed per-packet values (the `--engine tshark` reader).

One `tshark -T fields` run per file; each output line becomes a `TsharkPacket`: what Wireshark
decoded below the session stage (link layers, tunnels, IP fragment reassembly, the TCP stream it
belongs to, flags, raw sequence number, the segment's payload bytes, its `tcp.analysis` probe
labels: keep-alive, zero-window probe) and, for DNS messages, the arguments of `DnsTracker.record`. TCP desegmentation is off
(`tcp.desegment_tcp_streams:FALSE`), so every segment's bytes arrive as its own `tcp.payload`;
the HTTP, WebSocket and HTTP/2 dissectors above TCP are turned off: wscap's session stage reads
those bytes. Nothing here raises for bad input: errors are collected as one-line messages.
"""
from __future__ import annotations

import binascii
import ipaddress
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import IO, Iterator, NamedTuple

from wscap.engine.tshark_locate import tshark_path
from wscap.flow.dns import MAX_ADDRESSES, QTYPES, safe_name

TCP_FIELDS = ("frame.number", "frame.time_epoch", "frame.cap_len", "frame.encap_type", "frame.protocols",
              "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.stream", "tcp.srcport", "tcp.dstport",
              "tcp.flags", "tcp.len", "tcp.seq_raw", "tcp.payload", "tcp.analysis.keep_alive",
              "tcp.analysis.zero_window_probe",
              # the tunnels a packet came out of (see _tunnel): the same layers the core decoder opens
              "eth.type", "udp.dstport", "vxlan.vni", "geneve.vni", "gtp.teid", "gre.key", "gre.proto",
              "erspan.version", "erspan.spanid", "mpls.label", "mpls.bottom")
# DNS as tshark dissects it (UDP/TCP port 53): the same transactions the core reads with dpkt.
# (udp.dstport is in TCP_FIELDS: tshark fills only the last column of a field asked for twice.)
DNS_FIELDS = ("udp.srcport", "dns.id", "dns.flags.response", "dns.flags.rcode", "dns.qry.name",
              "dns.qry.type", "dns.a", "dns.aaaa", "dns.count.answers")
_TUNNEL_AT = TCP_FIELDS.index("eth.type")
_DNS_ID = len(TCP_FIELDS) + DNS_FIELDS.index("dns.id")
PREFS = {
    # Each segment's own bytes as tcp.payload (a reassembled PDU would hide them in tcp.segment_data).
    "tcp.desegment_tcp_streams": "FALSE",
    "tcp.analyze_sequence_numbers": "TRUE",      # for tcp.analysis.zero_window_probe
}
# Dissectors above TCP whose work wscap's session stage does itself (faster without them).
DISABLED = ("http", "http2", "websocket")
# tshark decodes VXLAN only on its IANA port 4789; Linux's (and flannel's) default is 8472.
DECODE_AS = {"udp.port==8472": "vxlan"}
# tshark's frame.encap_type (WTAP_ENCAP_*) -> pcap LINKTYPE_*
ENCAP_TO_LINKTYPE = {1: 1, 7: 101, 15: 0, 25: 113, 129: 228, 130: 229, 210: 276}
_NESTING = {"icmp", "icmpv6"}      # protocols whose payload quotes an IP/TCP header inside their own item
TH_FIN, TH_SYN, TH_RST, TH_ACK = 0x01, 0x02, 0x04, 0x10


class TsharkPacket(NamedTuple):
    """One TCP segment as tshark decoded it (the innermost TCP header of a tunnelled packet)."""
    frame: int
    ts_ns: int
    stream: int                  # tshark's tcp.stream: its idea of one connection
    src: bytes                   # 4 or 16 address bytes
    sport: int
    dst: bytes
    dport: int
    flags: int
    seq: int                     # raw sequence number
    payload: bytes               # captured payload bytes
    paylen: int                  # tcp.len (> len(payload) when cut by the snap length)
    keep_alive: bool             # tshark's tcp.analysis.keep_alive
    zero_window_probe: bool      # tshark's tcp.analysis.zero_window_probe
    tunnel: list[dict] | None    # encapsulation layers, outermost first (decode.tunnel_json's shape)


class DnsRecord(NamedTuple):
    """The arguments of `DnsTracker.record` after the source index."""
    frame: int
    ts_ns: int
    src: bytes
    sport: int
    dst: bytes
    dport: int
    transport: str
    txid: int
    response: bool
    rcode: int
    name: str
    qtype: str
    addresses: list[str]
    answers: int


@dataclass
class FileStats:
    """What the read learned about the file (the source object of the document)."""
    path: str
    packets: int = 0
    bytes: int = 0
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    encaps: list[int] = field(default_factory=list)
    tcp_packets: int = 0
    errors: list[str] = field(default_factory=list)

    def linktypes(self) -> list[int]:
        return [ENCAP_TO_LINKTYPE.get(e, e) for e in self.encaps]


def file_format(path: str) -> str:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        return "unknown"
    if magic == b"\x0a\x0d\x0d\x0a":
        return "pcapng"
    if magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        return "pcap"
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    return "unknown"


def _ns(epoch: str) -> int:
    if not epoch:
        return 0
    s, _, frac = epoch.partition(".")
    return int(s) * 1_000_000_000 + int((frac + "000000000")[:9])


def _last(v: str) -> str:
    return v.rpartition(",")[2]


def _addr(v: str) -> bytes:
    return ipaddress.ip_address(v).packed


def command(path: str) -> list[str]:
    cmd = [tshark_path() or "tshark", "-n", "-r", path, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
           "-E", "separator=\t", "-E", "quote=n"]
    for k, v in PREFS.items():
        cmd += ["-o", f"{k}:{v}"]
    for k, v in DECODE_AS.items():
        cmd += ["-d", f"{k},{v}"]
    for proto in DISABLED:
        cmd += ["--disable-protocol", proto]
    for name in TCP_FIELDS + DNS_FIELDS:
        cmd += ["-e", name]
    return cmd


def read(path: str, stats: FileStats) -> Iterator[TsharkPacket | DnsRecord | int]:
    """tshark's packets of `path`, in capture order: a TsharkPacket for a TCP segment, a DnsRecord
    for a DNS message, else the packet's timestamp (the capture's clock still moves). Counts and
    errors go to `stats`."""
    err: IO[bytes] = tempfile.TemporaryFile()
    try:
        proc = subprocess.Popen(command(path), stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    except OSError as e:
        err.close()
        stats.errors.append(f"{path}: cannot run tshark: {e}")
        return
    assert proc.stdout is not None
    width = len(TCP_FIELDS) + len(DNS_FIELDS)
    try:
        for raw in proc.stdout:
            cols = raw.decode("utf-8", "replace").rstrip("\n").split("\t")
            if len(cols) != width:
                continue
            stats.packets += 1
            try:
                ts = _ns(cols[1])
                stats.bytes += int(cols[2] or 0)
                if stats.first_ts_ns is None:
                    stats.first_ts_ns = ts
                stats.last_ts_ns = ts
                enc = int(cols[3]) if cols[3] else None
                if enc is not None and enc not in stats.encaps:
                    stats.encaps.append(enc)
                item: TsharkPacket | DnsRecord | int | None = _dns_record(cols) if cols[_DNS_ID] else None
                if item is None:
                    item = _tcp_packet(cols)
                    if item is not None:
                        stats.tcp_packets += 1
            except (ValueError, IndexError, KeyError) as e:   # one odd packet must not lose the file
                stats.errors.append(f"{path}: frame {cols[0]}: cannot read tshark's fields: {e}")
                continue
            yield item if item is not None else ts
    finally:
        proc.stdout.close()
        code = proc.wait()
        if code != 0:
            err.seek(0)
            lines = [ln.strip() for ln in err.read().decode("utf-8", "replace").splitlines()
                     if ln.strip() and "could be dangerous" not in ln]
            msg = " ".join(lines) or f"exit status {code}"
            stats.errors.append(f"{path}: tshark failed after {stats.packets} packets: {msg[:300]}")
        err.close()


def _tcp_packet(cols: list[str]) -> TsharkPacket | None:
    """A line of the fields pass -> its TCP segment. With several occurrences (a tunnel), the
    innermost header's; None for a packet without a TCP header of its own."""
    (no, epoch, _caplen, _encap, protos, ip_src, ip_dst, ip6_src, ip6_dst, stream, sport, dport, flags, tcplen,
     seq, payload, keep_alive, zwp) = cols[:_TUNNEL_AT]
    names = protos.split(":")
    if not stream or "tcp" not in names or _NESTING.intersection(names[:names.index("tcp")]):
        return None        # no TCP header of its own (an ICMP error quotes one inside its item)
    above = names[:names.index("tcp")]
    inner6 = next((n for n in reversed(above) if n in ("ip", "ipv6")), "ipv6" if ip6_src else "ip") == "ipv6"
    src, dst = (ip6_src, ip6_dst) if inner6 else (ip_src, ip_dst)
    return TsharkPacket(
        frame=int(no), ts_ns=_ns(epoch), stream=int(_last(stream)), src=_addr(_last(src)),
        sport=int(_last(sport) or 0), dst=_addr(_last(dst)), dport=int(_last(dport) or 0),
        flags=int(_last(flags) or "0", 0), seq=int(_last(seq) or 0), paylen=int(_last(tcplen) or 0),
        payload=binascii.unhexlify(_last(payload)) if payload else b"", keep_alive=bool(keep_alive),
        zero_window_probe=bool(zwp),
        tunnel=_tunnel(above, ip_src, ip_dst, ip6_src, ip6_dst, cols[_TUNNEL_AT:len(TCP_FIELDS)]))


def _dns_record(cols: list[str]) -> DnsRecord | None:
    """A DNS message -> DnsTracker.record() arguments (first question only, as the core reads it).
    Over TCP the ports come from the TCP fields."""
    t = dict(zip(TCP_FIELDS, cols))
    d = dict(zip(DNS_FIELDS, cols[len(TCP_FIELDS):]))
    if not _last(t["frame.protocols"]).endswith("dns") and ":dns" not in t["frame.protocols"]:
        return None
    src = _last(t["ipv6.src"] or t["ip.src"])
    dst = _last(t["ipv6.dst"] or t["ip.dst"])
    if not src or not dst:
        return None
    if d["udp.srcport"]:
        sport, dport, transport = int(_last(d["udp.srcport"])), int(_last(t["udp.dstport"])), "udp"
    else:
        sport, dport, transport = int(_last(t["tcp.srcport"]) or 0), int(_last(t["tcp.dstport"]) or 0), "tcp"

    def first(v: str) -> str:
        return v.split(",", 1)[0]
    qtype = first(d["dns.qry.type"])
    addrs = (d["dns.a"].split(",") if d["dns.a"] else []) + (d["dns.aaaa"].split(",") if d["dns.aaaa"] else [])
    return DnsRecord(int(t["frame.number"]), _ns(t["frame.time_epoch"]), _addr(src), sport, _addr(dst), dport,
                     transport, int(first(d["dns.id"]), 0), first(d["dns.flags.response"]) in ("1", "True"),
                     int(first(d["dns.flags.rcode"]) or 0), safe_name(first(d["dns.qry.name"])),
                     QTYPES.get(int(qtype), qtype) if qtype.isdigit() else qtype, addrs[:MAX_ADDRESSES],
                     int(first(d["dns.count.answers"]) or 0))


def _tunnel(names: list[str], ip_src: str, ip_dst: str, ip6_src: str, ip6_dst: str,
            tun: list[str]) -> list[dict] | None:
    """The encapsulation layers above the TCP header, from tshark's protocol path and fields, in the
    core's JSON shape (decode.tunnel_json, without "direction"): outermost first; None outside any tunnel."""
    eth_type, udp_dport, vni, gvni, teid, gkey, gproto, ever, espan, labels, bottoms = (
        v.split(",") if v else [] for v in tun)
    idx = dict.fromkeys(("eth", "ip", "ipv6", "udp", "vxlan", "geneve", "gtp", "gre", "erspan", "mpls"), 0)
    addrs = {"ip": (ip_src.split(",") if ip_src else [], ip_dst.split(",") if ip_dst else []),
             "ipv6": (ip6_src.split(",") if ip6_src else [], ip6_dst.split(",") if ip6_dst else [])}
    label_at = 0
    last: tuple[str | None, str | None] = (None, None)
    out: list[dict] = []

    def at(v: list[str], i: int) -> str:
        return v[i] if 0 <= i < len(v) else ""

    def num(v: str) -> int | None:
        return int(v, 0) if v else None

    for k, name in enumerate(names):
        nxt = names[k + 1] if k + 1 < len(names) else ""
        if name in ("ip", "ipv6"):
            i = idx[name]
            last = (at(addrs[name][0], i), at(addrs[name][1], i))
            if nxt in ("ip", "ipv6"):
                kind = {("ip", "ip"): "ipip", ("ip", "ipv6"): "6in4", ("ipv6", "ip"): "4in6",
                        ("ipv6", "ipv6"): "ip6ip6"}[(name, nxt)]
                out.append({"type": kind, "outer_src": last[0], "outer_dst": last[1]})
        elif name in ("vxlan", "geneve"):
            out.append({"type": name, "outer_src": last[0], "outer_dst": last[1],
                        "vni": num(at(vni if name == "vxlan" else gvni, idx[name])),
                        "port": num(at(udp_dport, idx["udp"] - 1))})
        elif name == "gtp":
            out.append({"type": "gtp-u", "outer_src": last[0], "outer_dst": last[1], "teid": num(at(teid, idx[name]))})
        elif name == "gre" and nxt != "erspan":
            d: dict = {"type": "gre", "outer_src": last[0], "outer_dst": last[1]}
            key = num(at(gkey, idx[name]))
            if key is not None:
                d["key"] = key
            d["protocol"] = f"0x{num(at(gproto, idx[name])) or 0:04x}"
            out.append(d)
        elif name == "erspan":
            v = num(at(ever, idx[name]))
            d = {"type": "erspan", "outer_src": last[0], "outer_dst": last[1], "version": 1 if v is None else v + 1}
            if v is not None:
                d["session"] = num(at(espan, idx[name]))
            out.append(d)
        elif name == "mpls":
            stack = []
            while label_at < len(labels):
                stack.append(int(labels[label_at]))
                label_at += 1
                if at(bottoms, label_at - 1) in ("1", "True"):
                    break
            et = num(at(eth_type, idx["eth"] - 1)) if idx["eth"] else None
            out.append({"type": "mpls", "outer_src": None, "outer_dst": None, "labels": stack,
                        "multicast": et == 0x8848})
            last = (None, None)
        if name in idx:
            idx[name] += 1
    return out or None

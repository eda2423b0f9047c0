"""Tiny, dependency-free reader for the lab's own captures.

Used by `scripts/lab/run` to check a fresh recording against the scenario's
expectations *without* wscap (the expected files must never be derived from
the tool under test). It understands exactly what the lab writes: classic
pcap, Ethernet (or Linux cooked v1), IPv4, TCP, no loss.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field


@dataclass
class Conn:
    client: tuple
    server: tuple
    syn_ts: float
    synack: bool = False
    rst_to_syn: bool = False
    data: dict = field(default_factory=lambda: {"c": {}, "s": {}})  # seq -> bytes
    isn: dict = field(default_factory=dict)

    def stream(self, d: str) -> bytes:
        segs = self.data[d]
        if not segs:
            return b""
        base = self.isn.get(d)
        if base is None:
            base = min(segs)
        out = b""
        pos = base
        for seq in sorted(segs):
            seg = segs[seq]
            rel = (seq - pos) & 0xFFFFFFFF
            if rel > 0x7FFFFFFF:  # overlap / retransmission
                over = (pos - seq) & 0xFFFFFFFF
                seg = seg[over:]
                rel = 0
            if rel != 0:
                break  # gap
            out += seg
            pos = (pos + len(seg)) & 0xFFFFFFFF
        return out

    @property
    def request(self) -> bytes:
        return self.stream("c")

    @property
    def response(self) -> bytes:
        return self.stream("s")

    def request_target(self):
        m = re.match(rb"([A-Z]+) (\S+) HTTP/1\.[01]\r?\n", self.request)
        return m.group(2).decode("latin-1") if m else None

    def request_head(self) -> bytes:
        r = self.request
        i = r.find(b"\r\n\r\n")
        return r[:i] if i >= 0 else r

    def response_status(self):
        """Status of a *complete* response head (CRLF CRLF or LF LF), else None."""
        r = self.response
        m = re.match(rb"HTTP/1\.[01] (\d{3})[^\n]*\n", r)
        if not m:
            return None
        if b"\r\n\r\n" not in r and b"\n\n" not in r:
            return None
        return int(m.group(1))


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        e, nano = "<", False
    elif magic == b"\xa1\xb2\xc3\xd4":
        e, nano = ">", False
    elif magic == b"\x4d\x3c\xb2\xa1":
        e, nano = "<", True
    elif magic == b"\xa1\xb2\x3c\x4d":
        e, nano = ">", True
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    linktype = struct.unpack(e + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        ts_s, ts_f, incl, _orig = struct.unpack(e + "IIII", data[off : off + 16])
        off += 16
        pkt = data[off : off + incl]
        off += incl
        ts = ts_s + ts_f / (1e9 if nano else 1e6)
        if linktype == 1:
            l3, etype = pkt[14:], struct.unpack("!H", pkt[12:14])[0]
            if etype == 0x8100:
                etype, l3 = struct.unpack("!H", pkt[16:18])[0], pkt[18:]
        elif linktype == 113:
            l3, etype = pkt[16:], struct.unpack("!H", pkt[14:16])[0]
        else:
            continue
        if etype != 0x0800 or len(l3) < 20 or l3[9] != 6:
            continue
        ihl = (l3[0] & 0x0F) * 4
        total = struct.unpack("!H", l3[2:4])[0]
        src, dst = ".".join(map(str, l3[12:16])), ".".join(map(str, l3[16:20]))
        tcp = l3[ihl:total]
        sport, dport, seq, _ack = struct.unpack("!HHII", tcp[:12])
        doff = (tcp[12] >> 4) * 4
        flags = tcp[13]
        yield ts, (src, sport), (dst, dport), seq, flags, tcp[doff:]


def connections(path):
    conns: dict = {}
    order = []
    for ts, a, b, seq, flags, payload in read_pcap(path):
        syn, ack, rst = flags & 0x02, flags & 0x10, flags & 0x04
        if syn and not ack:
            key = (a, b)
            if key not in conns or conns[key].synack or conns[key].rst_to_syn:
                if key in conns and (conns[key].synack or conns[key].rst_to_syn):
                    order.remove(conns[key])
                c = Conn(client=a, server=b, syn_ts=ts)
                conns[key] = c
                order.append(c)
            conns[key].isn["c"] = (seq + 1) & 0xFFFFFFFF
            continue
        if (a, b) in conns:
            c, d = conns[(a, b)], "c"
        elif (b, a) in conns:
            c, d = conns[(b, a)], "s"
        else:
            continue
        if syn and ack and d == "s":
            c.synack = True
            c.isn["s"] = (seq + 1) & 0xFFFFFFFF
            continue
        if rst and d == "s" and not c.synack:
            c.rst_to_syn = True
        if payload:
            c.data[d].setdefault(seq, payload)
    return order


def legs(path, ws_path: str, upstream_ports=(5000,)):
    """Legs of the app's WebSocket chain in SYN order: every connection whose
    request targets ws_path, plus every connection to an upstream port (in the
    lab only the app's socket goes there: rewritten targets, refused and
    unanswered SYNs included)."""
    out = []
    for c in connections(path):
        t = c.request_target()
        if (
            c.server[1] in upstream_ports
            or t is not None
            and t.split("?")[0] == ws_path
        ):
            out.append(c)
    return out


def hmr_legs(path):
    return [c for c in connections(path) if b"vite-hmr" in c.request_head()]


def leg_status(c: Conn):
    return c.response_status()

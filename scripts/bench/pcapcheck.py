#!/usr/bin/env python3
"""Self-check of a generated capture (independent of wscap): checksums, and
that every TCP byte stream reassembles without holes or conflicting
retransmissions.  Uses dpkt; meant for the tiny/small presets.

    python3 scripts/bench/pcapcheck.py FILE.pcap
"""
from __future__ import annotations

import socket
import struct
import sys

import dpkt


def _csum16(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def check(path: str) -> dict:
    """Return {"packets", "tcp", "streams", "errors": [...]}."""
    errors: list[str] = []
    streams: dict[tuple, dict] = {}
    packets = tcp_n = 0
    with open(path, "rb") as f:
        for no, (ts, buf) in enumerate(dpkt.pcap.Reader(f), 1):
            packets += 1
            eth = dpkt.ethernet.Ethernet(buf)
            if eth.type != dpkt.ethernet.ETH_TYPE_IP:
                continue
            ip = eth.data
            raw_ip = buf[14:14 + ip.hl * 4]
            if _csum16(raw_ip) != 0xFFFF:
                errors.append(f"frame {no}: bad IPv4 header checksum")
            if ip.p != dpkt.ip.IP_PROTO_TCP:
                continue
            tcp_n += 1
            seg = buf[14 + ip.hl * 4:14 + ip.len]
            pseudo = ip.src + ip.dst + struct.pack("!BBH", 0, 6, len(seg))
            if _csum16(pseudo + seg) != 0xFFFF:
                errors.append(f"frame {no}: bad TCP checksum")
            t = ip.data
            key = (ip.src, t.sport, ip.dst, t.dport)
            st = streams.get(key)
            if t.flags & dpkt.tcp.TH_SYN:
                if st is None:
                    streams[key] = {"isn": t.seq, "data": {}, "name": _name(key)}
                continue
            if t.flags & dpkt.tcp.TH_RST or st is None:
                continue
            if t.data:
                off = (t.seq - st["isn"] - 1) & 0xFFFFFFFF
                d = st["data"]
                old = d.get(off)
                if old is not None and old[:len(t.data)] != t.data[:len(old)]:
                    errors.append(f"frame {no}: retransmission differs at {st['name']}+{off}")
                if old is None or len(t.data) > len(old):
                    d[off] = bytes(t.data)
    for st in streams.values():
        end = 0
        buf = bytearray()
        for off in sorted(st["data"]):
            chunk = st["data"][off]
            if off > end:
                errors.append(f"{st['name']}: hole at {end}..{off}")
                break
            if off + len(chunk) > end:
                if buf[off:end] != chunk[:end - off]:
                    errors.append(f"{st['name']}: overlap differs at {off}")
                buf += chunk[end - off:]
                end = off + len(chunk)
        st["bytes"] = bytes(buf)
    return {"packets": packets, "tcp": tcp_n, "streams": streams, "errors": errors}


def _name(key) -> str:
    return f"{socket.inet_ntoa(key[0])}:{key[1]}->{socket.inet_ntoa(key[2])}:{key[3]}"


def main(argv=None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    bad = 0
    for path in argv:
        r = check(path)
        print(f"{path}: {r['packets']} packets, {r['tcp']} TCP, {len(r['streams'])} directed streams, "
              f"{len(r['errors'])} errors")
        for e in r["errors"][:20]:
            print("  " + e)
        bad += bool(r["errors"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

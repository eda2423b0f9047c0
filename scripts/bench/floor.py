#!/usr/bin/env python3
"""The pure-Python floor: read every pcap record and slice the 5-tuple and TCP
flags with `struct` at fixed offsets (Ethernet + IPv4 without options assumed),
touching no payload.  Whatever a Python analyzer does per packet costs at least
this much.  Prints one JSON line of counts.

    python3 scripts/bench/floor.py FILE.pcap
"""
from __future__ import annotations

import json
import struct
import sys

CHUNK = 4 << 20


def floor(path: str) -> dict:
    rec_le = struct.Struct("<IIII").unpack_from
    rec_be = struct.Struct(">IIII").unpack_from
    # from offset 12: ethertype, (skip) proto, (skip) src, dst, sport, dport, (skip) flags
    tup = struct.Struct("!H9xB2x4s4sHH9xB").unpack_from
    packets = tcp = syn = 0
    flows = set()
    with open(path, "rb", buffering=0) as f:
        hdr = f.read(24)
        magic = hdr[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            rec = rec_le
            linktype = struct.unpack("<I", hdr[20:24])[0]
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            rec = rec_be
            linktype = struct.unpack(">I", hdr[20:24])[0]
        else:
            raise SystemExit(f"{path}: not a classic pcap file")
        if linktype & 0xFFFF != 1:
            raise SystemExit(f"{path}: linktype {linktype}, the floor only reads Ethernet")
        buf = b""
        nbytes = 24
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            buf = buf + chunk if buf else chunk
            p = 0
            end = len(buf)
            while p + 16 <= end:
                incl = rec(buf, p)[2]
                q = p + 16 + incl
                if q > end:
                    break
                packets += 1
                if incl >= 48:
                    et, proto, src, dst, sport, dport, flags = tup(buf, p + 28)
                    if et == 0x0800 and proto == 6:
                        tcp += 1
                        if flags & 0x02:
                            syn += 1
                            flows.add((src, sport, dst, dport))
                p = q
            nbytes += p
            buf = buf[p:]
    return {"packets": packets, "tcp": tcp, "syn": syn, "syn_flows": len(flows), "bytes": nbytes}


if __name__ == "__main__":
    print(json.dumps(floor(sys.argv[1])))

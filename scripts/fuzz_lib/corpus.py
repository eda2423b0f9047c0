"""Seed captures for the mutation fuzzer: load, split into records, re-serialise.

A seed is held as a *structure* (pcap: global header + records; pcapng: blocks)
so that mutations can act on whole records (duplicate, drop, reorder) as well
as on bytes. Every pcap seed is also offered as pcapng, big-endian pcap and
nanosecond pcap, so both readers and both byte orders get fuzzed even though
the bundled corpus is nearly all little-endian microsecond pcap.
"""
from __future__ import annotations

import glob
import os
import struct
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", False), b"\xa1\xb2\xc3\xd4": (">", False),
              b"\x4d\x3c\xb2\xa1": ("<", True), b"\xa1\xb2\x3c\x4d": (">", True)}


@dataclass
class Record:
    sec: int
    frac: int          # µs, or ns when the seed is a nanosecond pcap
    data: bytes
    wirelen: int


@dataclass
class Seed:
    name: str
    kind: str                      # "pcap" | "pcapng"
    linktype: int = 1
    endian: str = "<"
    nanos: bool = False
    records: list[Record] | None = None       # pcap, and pcapng converted from it
    blocks: list[tuple[int, bytes]] | None = None   # native pcapng: (type, body without trailing length)


def default_paths() -> list[str]:
    """Every capture in pcaps/ and ../shared/pcaps/peer/ (skipped when absent)."""
    out: list[str] = []
    for root in (os.path.join(REPO, "pcaps"), os.path.join(os.path.dirname(REPO), "shared", "pcaps", "peer")):
        if not os.path.isdir(root):
            continue
        for pat in ("*.pcap", "*.pcapng", "*.pcap.gz", "*.pcapng.gz"):
            out += glob.glob(os.path.join(root, "**", pat), recursive=True)
    return sorted(set(out))


def parse_pcap(name: str, raw: bytes) -> Seed | None:
    m = PCAP_MAGIC.get(raw[:4])
    if m is None or len(raw) < 24:
        return None
    endian, nanos = m
    linktype = struct.unpack_from(endian + "I", raw, 20)[0] & 0x0FFFFFFF
    recs = []
    pos = 24
    while pos + 16 <= len(raw):
        sec, frac, cap, wire = struct.unpack_from(endian + "IIII", raw, pos)
        if pos + 16 + cap > len(raw):
            break
        recs.append(Record(sec, frac, raw[pos + 16:pos + 16 + cap], wire))
        pos += 16 + cap
    return Seed(name, "pcap", linktype, endian, nanos, records=recs)


def parse_pcapng(name: str, raw: bytes) -> Seed | None:
    if raw[:4] != b"\x0a\x0d\x0d\x0a" or len(raw) < 28:
        return None
    endian = "<" if raw[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    blocks = []
    pos = 0
    while pos + 12 <= len(raw):
        btype, blen = struct.unpack_from(endian + "II", raw, pos)
        if blen < 12 or pos + blen > len(raw):
            break
        blocks.append((btype, raw[pos + 8:pos + blen - 4]))
        pos += blen
    return Seed(name, "pcapng", endian=endian, blocks=blocks)


def load(paths: list[str]) -> list[Seed]:
    import gzip
    seeds: list[Seed] = []
    for p in paths:
        with open(p, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        name = os.path.relpath(p, os.path.dirname(REPO))
        s = parse_pcap(name, raw) or parse_pcapng(name, raw)
        if s is None:
            continue
        seeds.append(s)
        if s.kind == "pcap" and s.records:
            # Variants: the same packets through the other reader / byte order / resolution.
            seeds.append(Seed(name + "#pcapng", "pcapng-from-pcap", s.linktype, "<", s.nanos, records=s.records))
            seeds.append(Seed(name + "#be", "pcap", s.linktype, ">", s.nanos, records=s.records))
            ns = [Record(r.sec, r.frac * (1 if s.nanos else 1000), r.data, r.wirelen) for r in s.records]
            seeds.append(Seed(name + "#ns", "pcap", s.linktype, "<", True, records=ns))
    return seeds


# -- serialisation ---------------------------------------------------------------

def pcap_header(endian: str, nanos: bool, linktype: int, snaplen: int = 262144,
                major: int = 2, minor: int = 4) -> bytes:
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    return struct.pack(endian + "IHHiIII", magic, major, minor, 0, 0, snaplen, linktype)


def pcap_record(endian: str, r: Record, caplen: int | None = None, wirelen: int | None = None) -> bytes:
    return struct.pack(endian + "IIII", r.sec & 0xFFFFFFFF, r.frac & 0xFFFFFFFF,
                       len(r.data) if caplen is None else caplen,
                       r.wirelen if wirelen is None else wirelen) + r.data


def block(endian: str, btype: int, body: bytes, blen: int | None = None) -> bytes:
    pad = (-len(body)) % 4
    n = 12 + len(body) + pad if blen is None else blen
    return struct.pack(endian + "II", btype, n) + body + b"\0" * pad + struct.pack(endian + "I", n)


def shb_body(endian: str) -> bytes:
    return struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1)


def idb_body(endian: str, linktype: int, snaplen: int = 262144, tsresol: int | None = None) -> bytes:
    body = struct.pack(endian + "HHI", linktype & 0xFFFF, 0, snaplen & 0xFFFFFFFF)
    if tsresol is not None:
        body += struct.pack(endian + "HHB3x", 9, 1, tsresol) + struct.pack(endian + "HH", 0, 0)
    return body


def epb_body(endian: str, r: Record, nanos: bool, ifid: int = 0) -> bytes:
    ts = r.sec * (1_000_000_000 if nanos else 1_000_000) + r.frac
    return struct.pack(endian + "IIIII", ifid, (ts >> 32) & 0xFFFFFFFF, ts & 0xFFFFFFFF,
                       len(r.data), r.wirelen) + r.data


def seed_blocks(s: Seed) -> list[tuple[int, bytes]]:
    """pcapng view of a seed: (block type, body)."""
    if s.blocks is not None:
        return list(s.blocks)
    e = s.endian
    out = [(0x0A0D0D0A, shb_body(e)), (1, idb_body(e, s.linktype, tsresol=9 if s.nanos else None))]
    out += [(6, epb_body(e, r, s.nanos)) for r in s.records or []]
    return out


def serialise(s: Seed) -> bytes:
    if s.kind == "pcap":
        return pcap_header(s.endian, s.nanos, s.linktype) + b"".join(pcap_record(s.endian, r) for r in s.records or [])
    return b"".join(block(s.endian, t, b) for t, b in seed_blocks(s))

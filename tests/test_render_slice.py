"""`wscap slice`: packets of the chosen legs only, bytes/timestamps/link type kept.

Captures are built here byte by byte (struct), then the slice is read back
with dpkt's and scapy's own readers, so the test does not trust the slicer's
reading code to check its writing code.
"""
from __future__ import annotations

import glob
import gzip
import ipaddress
import os
import struct

import dpkt
import pytest

from wscap.capture.slice import chain_legs, slice_capture


# ---- packet builders -----------------------------------------------------------

def tcp(sport: int, dport: int, payload: bytes = b"", flags: int = 0x18) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, flags, 65535, 0, 0) + payload


def ipv4(src: str, dst: str, l4: bytes, proto: int = 6, frag: int = 0) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, frag, 64, proto, 0,
                       ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed) + l4


def ipv6(src: str, dst: str, l4: bytes, hop_by_hop: bool = False) -> bytes:
    nh, ext = 6, b""
    if hop_by_hop:
        nh, ext = 0, bytes([6, 0]) + b"\x01\x04\x00\x00\x00\x00"   # HBH: next=TCP, len 0 (8 bytes), PadN
    return (struct.pack("!IHBB", 0x60000000, len(ext) + len(l4), nh, 64)
            + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + ext + l4)


def eth(ip: bytes, vlans: tuple[int, ...] = ()) -> bytes:
    et = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    tags = b"".join(struct.pack("!HH", 0x8100, v) for v in vlans)   # TPID + TCI per tag
    return b"\x02" * 6 + b"\x04" * 6 + tags + struct.pack("!H", et) + ip


def sll(ip: bytes) -> bytes:
    et = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, et) + ip


def sll2(ip: bytes) -> bytes:
    et = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHIHBB8s", et, 0, 2, 1, 0, 6, b"\x02" * 8) + ip


def null(ip: bytes) -> bytes:
    return struct.pack("<I", 2 if ip[0] >> 4 == 4 else 30) + ip


def loop(ip: bytes) -> bytes:
    return struct.pack("!I", 2 if ip[0] >> 4 == 4 else 24) + ip


def write_pcap(path, linktype: int, records, nano: bool = False, order: str = "<") -> None:
    """records: (ts_ns, data[, wirelen])"""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    with open(path, "wb") as f:
        f.write(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype))
        for rec in records:
            ts, data = rec[0], rec[1]
            wl = rec[2] if len(rec) > 2 else len(data)
            sec, frac = divmod(ts, 1_000_000_000)
            f.write(struct.pack(order + "IIII", sec, frac if nano else frac // 1000, len(data), wl) + data)


def _opt(code: int, data: bytes) -> bytes:
    pad = (-len(data)) % 4
    return struct.pack("<HH", code, len(data)) + data + b"\0" * pad


def write_pcapng(path, interfaces, packets) -> None:
    """interfaces: [(linktype, tsresol_byte|None)]; packets: [(iface, ticks, data)]"""
    def block(btype: int, body: bytes) -> bytes:
        n = 12 + len(body)
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    for lt, res in interfaces:
        opts = (_opt(9, bytes([res])) + _opt(0, b"")) if res is not None else b""
        out += block(1, struct.pack("<HHI", lt, 0, 65535) + opts)
    for iface, ticks, data in packets:
        pad = (-len(data)) % 4
        out += block(6, struct.pack("<IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
                     + data + b"\0" * pad)
    with open(path, "wb") as f:
        f.write(out)


def read_back(path) -> tuple[int, list[tuple[float, bytes]]]:
    with open(path, "rb") as f:
        r = dpkt.pcap.Reader(f)
        return r.datalink(), list(r)


A = ("10.0.0.1", 40000, "10.0.0.2", 5173)      # leg 1: client -> proxy
B = ("10.0.0.2", 40001, "10.0.0.3", 5000)      # leg 2: proxy -> backend
C = ("10.0.0.1", 40002, "10.0.0.2", 5173)      # another connection (not wanted)
LEGS = [("10.0.0.1:40000", "10.0.0.2:5173"), ("10.0.0.2:40001", "10.0.0.3:5000")]


def conv(wrap, t0: int = 1_700_000_000_123_456_000):
    """Packets of A, B, C in both directions, interleaved; returns records + the wanted ones."""
    recs, want = [], []
    for k, (s, sp, d, dp) in enumerate([A, B, C, A, B, C]):
        for rev in (False, True):
            ip = ipv4(d, s, tcp(dp, sp, b"x" * k)) if rev else ipv4(s, d, tcp(sp, dp, b"y" * k))
            data = wrap(ip)
            rec = (t0 + len(recs) * 1_000_000, data)
            recs.append(rec)
            if (s, sp, d, dp) != C:
                want.append(rec)
    return recs, want


# ---- tests ----------------------------------------------------------------------

@pytest.mark.parametrize("linktype,wrap", [
    (1, eth), (1, lambda ip: eth(ip, (10,))), (1, lambda ip: eth(ip, (10, 20))),
    (113, sll), (276, sll2), (0, null), (108, loop), (101, lambda ip: ip), (228, lambda ip: ip),
])
def test_each_link_type(tmp_path, linktype, wrap):
    recs, want = conv(wrap)
    src, out = tmp_path / "in.pcap", tmp_path / "out.pcap"
    write_pcap(src, linktype, recs)
    res = slice_capture(str(src), str(out), LEGS)
    assert res.packets_read == len(recs) and res.packets_written == len(want) and res.undecoded == 0
    lt, pkts = read_back(out)
    assert lt == linktype
    assert [p[1] for p in pkts] == [r[1] for r in want]
    assert [round(p[0] * 1e6) for p in pkts] == [r[0] // 1000 for r in want]


def test_ipv6_with_extension_header(tmp_path):
    c, p, b = "2001:db8::1", "2001:db8::2", "2001:db8::3"
    recs = [
        (1_000_000_000, eth(ipv6(c, p, tcp(50000, 5173), hop_by_hop=True))),
        (2_000_000_000, eth(ipv6(p, c, tcp(5173, 50000)))),
        (3_000_000_000, eth(ipv6(p, b, tcp(41000, 5000)))),
        (4_000_000_000, eth(ipv4("10.0.0.1", "10.0.0.2", tcp(50000, 5173)))),
    ]
    write_pcap(tmp_path / "in.pcap", 1, recs)
    res = slice_capture(str(tmp_path / "in.pcap"), str(tmp_path / "out.pcap"),
                        [(f"[{c}]:50000", f"[{p}]:5173")])
    assert res.packets_written == 2
    assert [x[1] for x in read_back(tmp_path / "out.pcap")[1]] == [recs[0][1], recs[1][1]]


def test_nanosecond_big_endian_gzip_and_wirelen(tmp_path):
    recs, want = conv(eth, t0=1_700_000_000_123_456_789)
    recs = [(ts, data, len(data) + 100) for ts, data in recs]        # as if cut by a snap length
    want_set = {d for _, d in want}
    write_pcap(tmp_path / "in.pcap", 1, recs, nano=True, order=">")
    with open(tmp_path / "in.pcap", "rb") as f, gzip.open(tmp_path / "in.pcap.gz", "wb") as g:
        g.write(f.read())
    res = slice_capture(str(tmp_path / "in.pcap.gz"), str(tmp_path / "out.pcap"), LEGS)
    assert res.nanosecond and res.packets_written == len(want)
    raw = (tmp_path / "out.pcap").read_bytes()
    assert struct.unpack("<I", raw[:4])[0] == 0xA1B23C4D
    pos, got = 24, []
    while pos < len(raw):
        sec, ns, cap, wl = struct.unpack("<IIII", raw[pos:pos + 16])
        got.append((sec * 1_000_000_000 + ns, raw[pos + 16:pos + 16 + cap], wl))
        pos += 16 + cap
    assert got == [r for r in recs if r[1] in want_set]


def test_pcapng_interfaces_and_resolutions(tmp_path):
    # iface 0: Ethernet, µs; iface 1: Ethernet, ns; iface 2: SLL2 (only unwanted traffic)
    a = eth(ipv4(A[0], A[2], tcp(A[1], A[3])))
    b = eth(ipv4(B[0], B[2], tcp(B[1], B[3])))
    other = sll2(ipv4(C[0], C[2], tcp(C[1], C[3])))
    write_pcapng(tmp_path / "in.pcapng", [(1, 6), (1, 9), (276, None)],
                 [(0, 1_700_000_000_000_001, a), (2, 1_700_000_000_000_002, other),
                  (1, 1_700_000_000_000_003_007, b)])
    res = slice_capture(str(tmp_path / "in.pcapng"), str(tmp_path / "out.pcap"), LEGS)
    assert res.packets_written == 2 and res.linktype == 1 and res.nanosecond
    raw = (tmp_path / "out.pcap").read_bytes()
    s1, ns1 = struct.unpack("<II", raw[24:32])
    assert s1 * 10**9 + ns1 == 1_700_000_000_000_001_000
    s2, ns2 = struct.unpack("<II", raw[24 + 16 + len(a):24 + 16 + len(a) + 8])
    assert s2 * 10**9 + ns2 == 1_700_000_000_000_003_007


def test_mixed_link_types_refused(tmp_path):
    a = eth(ipv4(A[0], A[2], tcp(A[1], A[3])))
    b = sll2(ipv4(B[0], B[2], tcp(B[1], B[3])))
    write_pcapng(tmp_path / "in.pcapng", [(1, None), (276, None)], [(0, 1, a), (1, 2, b)])
    with pytest.raises(ValueError, match="several link types"):
        slice_capture(str(tmp_path / "in.pcapng"), str(tmp_path / "out.pcap"), LEGS)


def test_truncated_capture_keeps_what_came_before(tmp_path):
    recs, want = conv(eth)
    write_pcap(tmp_path / "in.pcap", 1, recs)
    data = (tmp_path / "in.pcap").read_bytes()
    (tmp_path / "cut.pcap").write_bytes(data[:-10])
    res = slice_capture(str(tmp_path / "cut.pcap"), str(tmp_path / "out.pcap"), LEGS)
    assert res.errors and "truncated" in res.errors[0]
    assert res.packets_read == len(recs) - 1
    assert res.packets_written == len([r for r in want if r in recs[:-1]])


def test_fragments_short_packets_and_other_protocols_are_skipped(tmp_path):
    recs = [
        (1, eth(ipv4(A[0], A[2], tcp(A[1], A[3])))),
        (2, eth(ipv4(A[0], A[2], b"\x00" * 8, frag=100))),          # non-first fragment
        (3, eth(ipv4(A[0], A[2], tcp(A[1], A[3]))[:22])),           # cut inside the TCP header
        (4, eth(ipv4(A[0], A[2], b"\x00" * 8, proto=17))),          # UDP
        (5, b"\x00" * 10),                                          # runt frame
    ]
    write_pcap(tmp_path / "in.pcap", 1, recs)
    res = slice_capture(str(tmp_path / "in.pcap"), str(tmp_path / "out.pcap"), LEGS)
    assert res.packets_written == 1 and res.undecoded == 4


def test_empty_slice_is_a_valid_file(tmp_path):
    recs, _ = conv(sll2)
    write_pcap(tmp_path / "in.pcap", 276, recs)
    res = slice_capture(str(tmp_path / "in.pcap"), str(tmp_path / "out.pcap"), [("1.2.3.4:1", "5.6.7.8:2")])
    assert res.packets_written == 0
    assert read_back(tmp_path / "out.pcap") == (276, [])


def test_chain_legs_from_document():
    doc = {"handshakes": [{"id": 1, "client": "1.1.1.1:1", "server": "2.2.2.2:2"},
                          {"id": 2, "client": "2.2.2.2:3", "server": "[::1]:4"}],
           "chains": [{"id": 7, "hops": [1, 2]}]}
    assert chain_legs(doc, 7) == [("1.1.1.1:1", "2.2.2.2:2"), ("2.2.2.2:3", "[::1]:4")]
    assert chain_legs(doc, "7") == chain_legs(doc, 7)
    with pytest.raises(KeyError):
        chain_legs(doc, 8)


REAL = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "pcaps", "*.pcap")))


@pytest.mark.skipif(not REAL, reason="no recorded captures in pcaps/")
def test_slice_of_a_real_capture_analyzes_the_same(tmp_path):
    from wscap import analyze_paths

    scapy_all = pytest.importorskip("scapy.all")
    for path in REAL:
        doc = analyze_paths([path])
        for ch in doc["chains"]:
            out = tmp_path / f"{os.path.basename(path)}-{ch['id']}.pcap"
            res = slice_capture(path, str(out), chain_legs(doc, ch["id"]))
            assert res.packets_written > 0 and not res.errors
            again = analyze_paths([str(out)])
            same = [c for c in again["chains"] if len(c["hops"]) == len(ch["hops"])
                    and c["verdict"]["cause"] == ch["verdict"]["cause"]]
            assert same, (path, ch["id"], [c["verdict"]["cause"] for c in again["chains"]])
            # an independent reader agrees on the packet count
            assert len(scapy_all.rdpcap(str(out))) == res.packets_written

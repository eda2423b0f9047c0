"""wire/linklayer.py: every link type × IPv4/IPv6 × VLAN stacks, through the one table that the
decoder, the fast path, live shedding and `wscap slice` share.

Frames are built with struct (and cross-checked with scapy where it knows the layer); the
expected offsets are the sizes of the headers each frame was built with.
"""
from __future__ import annotations

import struct

import pytest

from wscap.capture.follow import worth_at
from wscap.capture.slice import _tcp_tuple
from wscap.model.raw import RawFrame
from wscap.wire import linklayer
from wscap.wire.decode import Decoder
from wscap.wire.linklayer import ETH_IP4, ETH_IP6, RAW_IP, locate

SRC4, DST4 = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
SRC6, DST6 = bytes(15) + b"\x01", bytes(15) + b"\x02"


def tcp(sport: int = 40000, dport: int = 80, flags: int = 0x18, payload: bytes = b"GET / HTTP/1.1\r\n") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1000, 2000, 5 << 4, flags, 65535, 0, 0) + payload


def ipv4(seg: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0, 64, 6, 0, SRC4, DST4) + seg


def ipv6(seg: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(seg), 6, 64, SRC6, DST6) + seg


IP = {4: (ipv4, ETH_IP4, SRC4, DST4), 6: (ipv6, ETH_IP6, SRC6, DST6)}
VLAN_STACKS = [(), (0x8100,), (0x88A8, 0x8100), (0x9100, 0x8100), (0x9200,), (0x88A8, 0x9100, 0x9200, 0x8100)]


def ethernet(etype: int, payload: bytes, tags: tuple[int, ...] = ()) -> bytes:
    out = b"\x02" * 6 + b"\x04" * 6
    for i, t in enumerate(tags):
        out += struct.pack("!H", t) + struct.pack("!H", 100 + i)      # TPID, then TCI (VLAN id)
    return out + struct.pack("!H", etype) + payload


def sll(etype: int, payload: bytes) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 6 + b"\0\0", etype) + payload


def sll2(etype: int, payload: bytes) -> bytes:
    return struct.pack("!HHIHBB8s", etype, 0, 3, 1, 0, 6, b"\x02" * 6 + b"\0\0") + payload


# (name, linktype, builder(version) -> frame bytes, expected network-header offset)
CASES = []
for tags in VLAN_STACKS:
    CASES.append((f"ethernet-{'-'.join(hex(t) for t in tags) or 'untagged'}", 1,
                  lambda v, tags=tags: ethernet(IP[v][1], IP[v][0](tcp()), tags), 14 + 4 * len(tags)))
CASES += [
    ("sll", 113, lambda v: sll(IP[v][1], IP[v][0](tcp())), 16),
    ("sll2", 276, lambda v: sll2(IP[v][1], IP[v][0](tcp())), 20),
]
for lt in (101, 12, 14):
    CASES.append((f"raw-{lt}", lt, lambda v: IP[v][0](tcp()), 0))


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("name,linktype,build,l3", CASES, ids=[c[0] for c in CASES])
def test_every_link_type_finds_the_ip_header(name, linktype, build, l3, version):
    data = build(version)
    etype, off = locate(linktype, data)
    assert off == l3
    assert etype == (RAW_IP if l3 == 0 else IP[version][1])
    assert data[off] >> 4 == version
    # The decoder, slice and live shedding agree on the TCP segment inside.
    seg = Decoder().decode(RawFrame(1, 5, linktype, data, len(data)))
    _, _, src, dst = IP[version]
    assert seg is not None and (seg.src, seg.sport, seg.dst, seg.dport) == (src, 40000, dst, 80)
    assert seg.payload == b"GET / HTTP/1.1\r\n"
    assert _tcp_tuple(linktype, data) == ((src, 40000), (dst, 80))
    assert worth_at(data, 0, len(data), linktype) is True             # starts like an HTTP head
    # The same frame in the middle of a reader's buffer: offsets are absolute.
    buf = b"\xee" * 37 + data + b"\xee" * 5
    assert locate(linktype, buf, 37, 37 + len(data)) == (etype, 37 + l3)


@pytest.mark.parametrize("linktype,order", [(0, "<"), (0, ">"), (108, ">")])
@pytest.mark.parametrize("fam,version", [(2, 4), (10, 6), (24, 6), (28, 6), (30, 6)])
def test_null_and_loop_every_af_inet6_value(linktype, order, fam, version):
    """BSD NULL (host order, either) and OpenBSD LOOP (network order), with AF_INET6 as Linux (10),
    NetBSD/OpenBSD (24), FreeBSD (28) and macOS (30) number it."""
    data = struct.pack(order + "I", fam) + IP[version][0](tcp())
    assert locate(linktype, data) == (IP[version][1], 4)
    seg = Decoder().decode(RawFrame(1, 5, linktype, data, len(data)))
    assert seg is not None and seg.sport == 40000 and len(seg.src) == (4 if version == 4 else 16)
    assert _tcp_tuple(linktype, data) is not None


def test_unknown_family_and_link_type_and_cut_headers():
    assert locate(0, struct.pack("<I", 17) + ipv4(tcp())) is None     # AF_* that is not IP
    assert locate(147, ipv4(tcp())) is None                           # a USER link type
    eth = ethernet(ETH_IP4, ipv4(tcp()), (0x8100, 0x88A8))
    assert locate(1, eth[:13]) is None                                # Ethernet header cut
    assert locate(1, eth[:19]) is None                                # cut inside the tag stack
    assert locate(1, eth[:22]) == (ETH_IP4, 22)                       # header whole, IP cut: the caller checks
    assert locate(113, sll(ETH_IP4, b"")[:15]) is None
    assert locate(276, sll2(ETH_IP4, b"")[:19]) is None
    assert locate(0, b"\x02\0\0") is None
    assert worth_at(eth[:19], 0, 19, 1) is True                       # cannot tell: keep


def test_non_ip_ethertype_is_returned_for_the_caller():
    arp = ethernet(0x0806, b"\0" * 28)
    assert locate(1, arp) == (0x0806, 14)
    mpls = ethernet(0x8847, b"\0" * 8, (0x9200,))
    assert locate(1, mpls) == (0x8847, 18)
    assert linklayer.ip_version(0x0806, arp, 14) == 0
    assert _tcp_tuple(1, arp) is None and worth_at(arp, 0, len(arp), 1) is True


def test_ethertype_and_version_must_agree_for_slice():
    """An IPv4 ethertype with an IPv6 header: not a TCP 4-tuple slice can trust."""
    bad = ethernet(ETH_IP4, ipv6(tcp()))
    assert linklayer.ip_version(ETH_IP4, bad, 14) == 0 and _tcp_tuple(1, bad) is None
    assert linklayer.ip_version(RAW_IP, ipv6(tcp()), 0) == 6


def test_fixed_headers_match_locate():
    """The fast path's fixed offsets (FIXED_HEADER) are what locate() finds for untagged frames."""
    builders = {1: lambda et, p: ethernet(et, p), 113: sll, 276: sll2}
    for lt, (l3, eoff) in linklayer.FIXED_HEADER.items():
        data = builders[lt](ETH_IP4, ipv4(tcp()))
        assert locate(lt, data) == (ETH_IP4, l3)
        assert struct.unpack_from("!H", data, eoff)[0] == ETH_IP4


def test_scapy_built_frames_agree():
    scapy = pytest.importorskip("scapy.all")
    pkt = (scapy.Ether() / scapy.Dot1AD(vlan=5) / scapy.Dot1Q(vlan=6) / scapy.IPv6(src="::1", dst="::2")
           / scapy.TCP(sport=1234, dport=5173, flags="S"))
    data = bytes(pkt)
    assert locate(1, data) == (ETH_IP6, 14 + 8)
    assert _tcp_tuple(1, data) == ((SRC6, 1234), (DST6, 5173))
    cooked = bytes(scapy.CookedLinux(proto=0x0800) / scapy.IP(src="10.0.0.1", dst="10.0.0.2") / scapy.TCP())
    assert locate(113, cooked) == (ETH_IP4, 16)
    loop = bytes(scapy.Loopback(type=30) / scapy.IPv6() / scapy.TCP())   # macOS AF_INET6, host order
    assert locate(0, loop) == (ETH_IP6, 4)

"""Reading captures: formats, byte orders, timestamps, link types, IP versions, damage."""
from __future__ import annotations

import gzip

import pytest
from scapy.all import IP, TCP, Ether, IPv6, Raw  # type: ignore[attr-defined]
from scapy.layers.inet6 import IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Loopback

import wscap
from builders import (Capture, accept_for, frames_of, pcap_bytes, pcapng_bytes, ws_frame, ws_request,
                      ws_response)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def exchange(client=("10.1.0.1", 41000), server=("10.1.0.2", 8080), step: float = 0.001) -> Capture:
    cap = Capture(ether=False, step=step)
    c = cap.conn(client, server).open()
    c.send(True, ws_request("/chat", host="example.org", key=KEY))
    c.send(False, ws_response(KEY))
    c.send(False, ws_frame(b"hi"))
    return cap


def analyze_bytes(tmp_path, data: bytes, name: str = "c.pcap") -> dict:
    p = tmp_path / name
    p.write_bytes(data)
    return wscap.analyze_paths([str(p)])


def assert_one_upgrade(doc: dict, client="10.1.0.1:41000", server="10.1.0.2:8080") -> dict:
    assert len(doc["handshakes"]) == 1, doc["handshakes"]
    h = doc["handshakes"][0]
    assert (h["client"], h["server"]) == (client, server)
    assert h["request"]["target"] == "/chat"
    assert h["outcome"] == "upgraded" and h["status"] == 101
    hdr = dict(h["response"]["headers"])
    assert hdr["Sec-WebSocket-Accept"] == accept_for(KEY)
    assert [f["preview"] for f in h["frames"]] == ["hi"]
    return h


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanos", [False, True])
def test_pcap_byte_orders_and_timestamp_resolutions(tmp_path, big_endian, nanos):
    cap = exchange()
    frames = [(1_700_000_000.123456789 + i, bytes(Ether() / p)) for i, p in enumerate(cap.packets)]
    doc = analyze_bytes(tmp_path, pcap_bytes(frames, big_endian=big_endian, nanos=nanos))
    h = assert_one_upgrade(doc)
    # first frame is the SYN at the first timestamp; µs files keep 6 digits, ns files round to 6
    assert h["first_ts"] == pytest.approx(1_700_000_000.123457, abs=2e-6)
    assert doc["source"][0]["format"] == "pcap" and doc["source"][0]["packets"] == len(frames)


LINK_LAYERS = {
    "ethernet": (1, lambda p: Ether() / p),
    "vlan-802.1q": (1, lambda p: Ether() / Dot1Q(vlan=42) / p),
    "qinq-802.1ad": (1, lambda p: Ether(type=0x88A8) / Dot1AD(vlan=7) / Dot1Q(vlan=42) / p),
    "sll": (113, lambda p: CookedLinux(proto=0x0800) / p),
    "sll2": (276, lambda p: CookedLinuxV2(proto=0x0800) / p),
    "null-loopback": (0, lambda p: Loopback(type=2) / p),
    "raw-ip": (101, lambda p: p),
}


@pytest.mark.parametrize("name", sorted(LINK_LAYERS))
def test_link_types(tmp_path, name):
    linktype, wrap = LINK_LAYERS[name]
    cap = exchange()
    frames = [(float(p.time), bytes(wrap(p))) for p in cap.packets]
    assert_one_upgrade(analyze_bytes(tmp_path, pcap_bytes(frames, linktype=linktype)))


def test_ipv6_with_extension_headers(tmp_path):
    cap = exchange(client=("fd00::1", 41000), server=("fd00::2", 8080))
    frames = []
    for p in cap.packets:
        ip6 = p[IPv6]
        tcp = ip6[TCP]
        q = IPv6(src=ip6.src, dst=ip6.dst) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / tcp
        frames.append((float(p.time), bytes(Ether() / q)))
    doc = analyze_bytes(tmp_path, pcap_bytes(frames))
    assert_one_upgrade(doc, client="[fd00::1]:41000", server="[fd00::2]:8080")


def test_ipv4_fragments_reassembled(tmp_path):
    cap = exchange()
    frames = []
    from scapy.all import fragment  # type: ignore[attr-defined]
    for p in cap.packets:
        if p.haslayer(Raw) and len(p[Raw].load) > 100:
            for i, frag in enumerate(reversed(fragment(p, fragsize=48))):   # out of order, too
                frames.append((float(p.time) + i * 1e-6, bytes(Ether() / frag)))
        else:
            frames.append((float(p.time), bytes(Ether() / p)))
    assert len(frames) > len(cap.packets) + 2
    assert_one_upgrade(analyze_bytes(tmp_path, pcap_bytes(frames)))


def test_pcapng_two_interfaces_of_different_link_types(tmp_path):
    """Client leg captured on an Ethernet interface, server leg on `any` (SLL2), nanosecond resolution."""
    cap = exchange()
    pkts = []
    for i, p in enumerate(cap.packets):
        if i % 2:
            pkts.append((1, float(p.time), bytes(CookedLinuxV2(proto=0x0800) / p)))
        else:
            pkts.append((0, float(p.time), bytes(Ether() / p)))
    doc = analyze_bytes(tmp_path, pcapng_bytes([1, 276], pkts, tsresol=9), "c.pcapng")
    assert_one_upgrade(doc)
    assert doc["source"][0]["format"] == "pcapng"
    assert doc["source"][0]["linktypes"] == [1, 276]


def test_gzip_capture(tmp_path):
    cap = exchange()
    frames = [(float(p.time), bytes(Ether() / p)) for p in cap.packets]
    assert_one_upgrade(analyze_bytes(tmp_path, gzip.compress(pcap_bytes(frames)), "c.pcap.gz"))


def test_truncated_final_record_keeps_everything_before_it(tmp_path):
    cap = exchange()
    frames = [(float(p.time), bytes(Ether() / p)) for p in cap.packets]
    data = pcap_bytes(frames)
    doc = analyze_bytes(tmp_path, data[:-5])
    src = doc["source"][0]
    assert not src["complete"]
    assert src["packets"] == len(frames) - 1
    assert f"frame {len(frames)}" in src["errors"][0] and "truncated" in src["errors"][0]
    h = doc["handshakes"][0]
    assert h["status"] == 101          # the 101 came before the cut


def test_corrupt_record_header_reported_with_frame_number(tmp_path):
    cap = exchange()
    frames = [(float(p.time), bytes(Ether() / p)) for p in cap.packets]
    data = bytearray(pcap_bytes(frames))
    # corrupt the 6th record's captured length
    off = 24
    for _ in range(5):
        caplen = int.from_bytes(data[off + 8:off + 12], "little")
        off += 16 + caplen
    data[off + 8:off + 12] = (0x7FFFFFFF).to_bytes(4, "little")
    doc = analyze_bytes(tmp_path, bytes(data))
    assert doc["source"][0]["packets"] == 5
    assert "frame 6" in doc["source"][0]["errors"][0]


def test_snaplen_cut_packets_are_reported_not_crashed(tmp_path):
    cap = exchange()
    frames, wirelens = [], []
    for p in cap.packets:
        raw = bytes(Ether() / p)
        frames.append((float(p.time), raw[:96]))
        wirelens.append(len(raw))
    doc = analyze_bytes(tmp_path, pcap_bytes(frames, snaplen=96, wirelens=wirelens))
    assert doc["stats"]["truncated_packets"] > 0
    for h in doc["handshakes"]:
        assert any(a["code"] == "tcp-gap" for a in h["anomalies"])


def test_not_a_capture(tmp_path):
    doc = analyze_bytes(tmp_path, b"hello world, not a pcap")
    assert doc["handshakes"] == [] and "not a pcap" in doc["source"][0]["errors"][0]


def test_frame_numbers_count_from_one_like_wireshark(tmp_path):
    cap = exchange()
    # frame 1 is a non-IP frame; the SYN is frame 2
    frames = [(1.0, bytes(Ether(type=0x0806) / Raw(b"\0" * 28)))] + frames_of(
        _ether(cap))
    doc = analyze_bytes(tmp_path, pcap_bytes(frames))
    h = doc["handshakes"][0]
    assert h["first_frame"] == 2 and h["tcp"]["syn_frame"] == 2 and h["tcp"]["synack_frame"] == 3
    assert h["request"]["frame"] == 5


def _ether(cap: Capture) -> Capture:
    cap.packets = [Ether() / p for p in cap.packets]
    return cap


def test_pcapng_timestamps_are_exact_integers(tmp_path):
    """if_tsresol scaling in integers: a float product drifts by hundreds of ns at today's epoch."""
    import struct
    from wscap.capture.files import ReadResult, read_frames
    ts_ns = 1_763_884_833_123_456_789
    def block(btype, body):
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    for resol, raw in ((9, ts_ns), (6, ts_ns // 1000), (0x80 | 30, (ts_ns << 30) // 10**9)):
        opts = struct.pack("<HH", 9, 1) + bytes([resol]) + b"\0\0\0" + struct.pack("<HH", 0, 0)
        out += block(1, struct.pack("<HHI", 1, 0, 65535) + opts)
    for ifid, raw in enumerate((ts_ns, ts_ns // 1000, (ts_ns << 30) // 10**9)):
        out += block(6, struct.pack("<IIIII", ifid, raw >> 32, raw & 0xFFFFFFFF, 4, 4) + b"abcd")
    p = tmp_path / "ts.pcapng"
    p.write_bytes(out)
    got = [f.ts_ns for f in read_frames(str(p), ReadResult(str(p)))]
    assert got[0] == ts_ns
    assert got[1] == ts_ns // 1000 * 1000
    assert abs(got[2] - ts_ns) <= 1

"""Tunnels (issue 14, part 2): a capture taken on a host NIC of an overlay network.

Every capture here is a healthy WebSocket handshake built with builders.py, then each packet is
wrapped by scapy's own layers (scapy.layers.vxlan, scapy.contrib.geneve/gtp/mpls/erspan, GRE,
IP-in-IP), so the tests do not share wscap's parser. The expectation follows from the wrapping:
the same chain as without the tunnel, plus the outer endpoints and identifiers per handshake.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from scapy.all import IP, TCP, UDP, Ether, IPv6, Raw, wrpcap  # type: ignore[attr-defined]
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.geneve import GENEVE
from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
from scapy.contrib.mpls import MPLS
from scapy.layers.l2 import GRE
from scapy.layers.vxlan import VXLAN

import wscap
from builders import Capture, new_key, ws_frame, ws_request, ws_response
from engines import engines_differ
from wscap.cli.main import main

CLIENT, SERVER = ("10.0.1.5", 43210), ("10.0.2.7", 8080)
VTEP_A, VTEP_B = "192.0.2.10", "192.0.2.20"          # the hosts' NIC addresses (outer)
VTEP6_A, VTEP6_B = "2001:db8::a", "2001:db8::b"
MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def healthy(key_seed: int = 1) -> Capture:
    cap = Capture()
    key = new_key(key_seed)
    c = cap.conn(CLIENT, SERVER).open()
    c.send(True, ws_request("/ws", host="app:8080", key=key))
    c.send(False, ws_response(key))
    c.send(True, ws_frame(b"hello", mask=True))
    c.send(False, ws_frame(b"hello"))
    c.fin(True)
    c.fin(False)
    return cap


def outer_ends(inner, v6: bool = False) -> tuple[str, str]:
    """Client-to-server packets travel VTEP A -> B, replies B -> A (as an overlay does)."""
    c2s = inner[IP].src == CLIENT[0] if IP in inner else True
    a, b = (VTEP6_A, VTEP6_B) if v6 else (VTEP_A, VTEP_B)
    return (a, b) if c2s else (b, a)


def outer_ip(inner, proto: int | None = None, v6: bool = False):
    s, d = outer_ends(inner, v6)
    if v6:
        return IPv6(src=s, dst=d) if proto is None else IPv6(src=s, dst=d, nh=proto)
    return IP(src=s, dst=d) if proto is None else IP(src=s, dst=d, proto=proto)


# kind -> (wrapper of the inner IP packet, expected tunnel list for the client's packets)
def _l2(inner):
    return Ether(**MAC) / inner


WRAPS = {
    "vxlan": (lambda ip: Ether(**MAC) / outer_ip(ip) / UDP(sport=50123, dport=4789) / VXLAN(vni=4242) / _l2(ip),
              [{"type": "vxlan", "outer_src": VTEP_A, "outer_dst": VTEP_B, "vni": 4242, "port": 4789}]),
    "vxlan-8472": (lambda ip: Ether(**MAC) / outer_ip(ip) / UDP(sport=50123, dport=8472) / VXLAN(vni=1) / _l2(ip),
                   [{"type": "vxlan", "outer_src": VTEP_A, "outer_dst": VTEP_B, "vni": 1, "port": 8472}]),
    "geneve": (lambda ip: Ether(**MAC) / outer_ip(ip) / UDP(sport=50123, dport=6081) / GENEVE(vni=77, proto=0x6558)
               / _l2(ip),
               [{"type": "geneve", "outer_src": VTEP_A, "outer_dst": VTEP_B, "vni": 77, "port": 6081}]),
    "geneve-ip": (lambda ip: Ether(**MAC) / outer_ip(ip) / UDP(sport=50123, dport=6081) / GENEVE(vni=78, proto=0x0800)
                  / ip,
                  [{"type": "geneve", "outer_src": VTEP_A, "outer_dst": VTEP_B, "vni": 78, "port": 6081}]),
    "gtp-u": (lambda ip: Ether(**MAC) / outer_ip(ip) / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=0xBEEF, gtp_type=255)
              / ip,
              [{"type": "gtp-u", "outer_src": VTEP_A, "outer_dst": VTEP_B, "teid": 0xBEEF}]),
    "gtp-u-5g": (lambda ip: Ether(**MAC) / outer_ip(ip) / UDP(sport=2152, dport=2152)
                 / GTP_U_Header(teid=7, gtp_type=255, E=1, next_ex=0x85) / GTPPDUSessionContainer(QFI=9) / ip,
                 [{"type": "gtp-u", "outer_src": VTEP_A, "outer_dst": VTEP_B, "teid": 7}]),
    "gre": (lambda ip: Ether(**MAC) / outer_ip(ip) / GRE(proto=0x0800) / ip,
            [{"type": "gre", "outer_src": VTEP_A, "outer_dst": VTEP_B, "protocol": "0x0800"}]),
    "gre-key": (lambda ip: Ether(**MAC) / outer_ip(ip) / GRE(key_present=1, key=99, seqnum_present=1, sequence_number=5,
                                                               chksum_present=1, proto=0x0800) / ip,
                [{"type": "gre", "outer_src": VTEP_A, "outer_dst": VTEP_B, "key": 99, "protocol": "0x0800"}]),
    "gretap": (lambda ip: Ether(**MAC) / outer_ip(ip) / GRE(proto=0x6558) / _l2(ip),
               [{"type": "gre", "outer_src": VTEP_A, "outer_dst": VTEP_B, "protocol": "0x6558"}]),
    "gre-ipv6-outer": (lambda ip: Ether(**MAC) / outer_ip(ip, v6=True) / GRE(proto=0x0800) / ip,
                       [{"type": "gre", "outer_src": VTEP6_A, "outer_dst": VTEP6_B, "protocol": "0x0800"}]),
    "erspan-1": (lambda ip: Ether(**MAC) / outer_ip(ip) / GRE(proto=0x88BE) / _l2(ip),
                 [{"type": "erspan", "outer_src": VTEP_A, "outer_dst": VTEP_B, "version": 1}]),
    "erspan-2": (lambda ip: Ether(**MAC) / outer_ip(ip) / GRE(seqnum_present=1, proto=0x88BE) / ERSPAN_II(session_id=12)
                 / _l2(ip),
                 [{"type": "erspan", "outer_src": VTEP_A, "outer_dst": VTEP_B, "version": 2, "session": 12}]),
    "erspan-3": (lambda ip: Ether(**MAC) / outer_ip(ip) / GRE(seqnum_present=1, proto=0x22EB) / ERSPAN_III(session_id=13)
                 / _l2(ip),
                 [{"type": "erspan", "outer_src": VTEP_A, "outer_dst": VTEP_B, "version": 3, "session": 13}]),
    "erspan-3-platform": (lambda ip: Ether(**MAC) / outer_ip(ip) / GRE(seqnum_present=1, proto=0x22EB)
                          / ERSPAN_III(session_id=14, o=1) / ERSPAN_PlatformSpecific() / _l2(ip),
                          [{"type": "erspan", "outer_src": VTEP_A, "outer_dst": VTEP_B, "version": 3, "session": 14}]),
    "ipip": (lambda ip: Ether(**MAC) / outer_ip(ip, proto=4) / ip,
             [{"type": "ipip", "outer_src": VTEP_A, "outer_dst": VTEP_B}]),
    "mpls": (lambda ip: Ether(**MAC, type=0x8847) / MPLS(label=100, s=0, ttl=64) / MPLS(label=200, s=1, ttl=64) / ip,
             [{"type": "mpls", "outer_src": None, "outer_dst": None, "labels": [100, 200], "multicast": False}]),
    "mpls-multicast": (lambda ip: Ether(**MAC, type=0x8848) / MPLS(label=300, s=1, ttl=64) / ip,
                       [{"type": "mpls", "outer_src": None, "outer_dst": None, "labels": [300], "multicast": True}]),
}


def wrapped(cap: Capture, wrap) -> list:
    out = []
    for p in cap.packets:
        w = wrap(p[IP] if IP in p else p[IPv6])
        w.time = p.time
        out.append(w)
    return out


def expect(tunnel: list[dict], direction: str = "c2s") -> list[dict]:
    return [{**t, "direction": direction} for t in tunnel]


@pytest.mark.parametrize("kind", sorted(WRAPS))
def test_handshake_inside_a_tunnel_is_found_with_its_outer_endpoints(tmp_path, kind):
    wrap, tunnel = WRAPS[kind]
    cap = healthy()
    path = tmp_path / f"{kind}.pcap"
    wrpcap(str(path), wrapped(cap, wrap))
    doc = wscap.analyze_paths([str(path)])
    assert [c["verdict"]["cause"] for c in doc["chains"]] == ["ok"]
    h = doc["handshakes"][0]
    assert (h["client"], h["server"]) == (f"{CLIENT[0]}:{CLIENT[1]}", f"{SERVER[0]}:{SERVER[1]}")
    assert h["tunnel"] == expect(tunnel)
    assert doc["stats"]["tunnelled_packets"] == len(cap.packets)
    assert doc["stats"]["unsupported_encapsulation"] == {}
    diff = engines_differ(str(path))        # tshark decodes them all (8472 with -d udp.port==8472,vxlan)
    assert not diff, f"--engine tshark differs: {diff}"


def test_ipv6_overlay_6in4_and_ip6ip6():
    # IPv6 inner connection: 6in4 (IPv4 protocol 41) and IPv6-in-IPv6.
    import tempfile
    from pathlib import Path
    tmp = Path(tempfile.mkdtemp())
    cap = Capture()
    key = new_key(5)
    c = cap.conn(("fd00::5", 40000), ("fd00::7", 8080)).open()
    c.send(True, ws_request("/ws", host="app", key=key))
    c.send(False, ws_response(key))
    for name, outer, expected in (
            ("6in4", lambda s, d: IP(src=s, dst=d, proto=41), {"type": "6in4", "outer_src": VTEP_A, "outer_dst": VTEP_B}),
            ("ip6ip6", lambda s, d: IPv6(src=s, dst=d, nh=41),
             {"type": "ip6ip6", "outer_src": VTEP6_A, "outer_dst": VTEP6_B})):
        pkts = []
        for p in cap.packets:
            inner = p[IPv6]
            fwd = inner.src == "fd00::5"
            a, b = (VTEP_A, VTEP_B) if name == "6in4" else (VTEP6_A, VTEP6_B)
            w = Ether(**MAC) / outer(*((a, b) if fwd else (b, a))) / inner
            w.time = p.time
            pkts.append(w)
        path = tmp / f"{name}.pcap"
        wrpcap(str(path), pkts)
        doc = wscap.analyze_paths([str(path)])
        assert doc["handshakes"][0]["tunnel"] == [{**expected, "direction": "c2s"}]
        assert doc["handshakes"][0]["outcome"] == "upgraded"


def test_nested_vxlan_in_gre_in_mpls_lists_every_layer_outermost_first(tmp_path):
    def wrap(ip):
        s, d = outer_ends(ip)
        inner_vxlan = IP(src=s, dst=d) / UDP(sport=50000, dport=4789) / VXLAN(vni=9) / _l2(ip)
        gre = IP(src="198.51.100.1", dst="198.51.100.2") / GRE(key_present=1, key=5, proto=0x0800) / inner_vxlan
        return Ether(**MAC, type=0x8847) / MPLS(label=16, s=1) / gre
    cap = healthy(6)
    path = tmp_path / "nested.pcap"
    wrpcap(str(path), wrapped(cap, wrap))
    doc = wscap.analyze_paths([str(path)])
    assert [t["type"] for t in doc["handshakes"][0]["tunnel"]] == ["mpls", "gre", "vxlan"]
    assert doc["handshakes"][0]["tunnel"][1]["outer_src"] == "198.51.100.1"
    assert doc["handshakes"][0]["tunnel"][2]["vni"] == 9
    assert doc["chains"][0]["verdict"]["cause"] == "ok"
    diff = engines_differ(str(path))
    assert not diff, f"--engine tshark differs: {diff}"


def test_nesting_deeper_than_the_limit_is_counted_not_followed(tmp_path):
    def wrap(ip, depth=5):
        pkt = ip
        for i in range(depth):
            pkt = IP(src=f"192.0.2.{i + 1}", dst=f"192.0.2.{i + 101}", proto=4) / pkt
        return Ether(**MAC) / pkt
    cap = healthy(7)
    path = tmp_path / "deep.pcap"
    wrpcap(str(path), wrapped(cap, wrap))
    deep = wscap.analyze_paths([str(path)], wscap.engine.core.Options(
        stream=False, limits=wscap.model.limits.Limits(tunnel_depth=4)))
    assert deep["handshakes"] == []
    assert deep["stats"]["limits_hit"]["tunnel_depth"] == len(cap.packets)
    ok = wscap.analyze_paths([str(path)])                 # default depth 8 opens all 5
    assert len(ok["handshakes"][0]["tunnel"]) == 5


def test_unsupported_encapsulation_is_named_never_a_silent_zero(tmp_path):
    # L2TPv2 over UDP 1701 carrying PPP: recognised, not read.
    cap = healthy(8)
    pkts = []
    for p in cap.packets:
        s, d = outer_ends(p[IP])
        w = Ether(**MAC) / IP(src=s, dst=d) / UDP(sport=1701, dport=1701) / Raw(b"\x00\x02\x00\x01\x00\x01\xff\x03\x00\x21")
        w = w / p[IP]
        w.time = p.time
        pkts.append(w)
    path = tmp_path / "l2tp.pcap"
    wrpcap(str(path), pkts)
    res = CliRunner().invoke(main, ["analyze", str(path)])
    assert res.exit_code == 0
    assert f"l2tp {len(pkts)} packet(s) in encapsulations wscap does not read" in res.output
    err = [line for line in res.stderr.splitlines() if "encapsulations wscap does not read" in line]
    assert len(err) == 1 and f"l2tp {len(pkts)}" in err[0]
    js = CliRunner().invoke(main, ["analyze", "--format", "json", str(path)])
    doc = json.loads(js.stdout)
    assert doc["stats"]["unsupported_encapsulation"] == {"l2tp": len(pkts)}
    assert doc["stats"]["tcp_packets"] == 0


def test_verbose_table_shows_the_tunnel(tmp_path):
    wrap, _ = WRAPS["vxlan-8472"]
    path = tmp_path / "v.pcap"
    wrpcap(str(path), wrapped(healthy(9), wrap))
    res = CliRunner().invoke(main, ["analyze", "-v", str(path)])
    assert f"tunnel: vxlan vni 1 port 8472 {VTEP_A} → {VTEP_B}" in res.output


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark not installed")
def test_tshark_reads_the_same_inner_connection_on_4789(tmp_path):
    """Cross-check with Wireshark's dissectors (VXLAN on its IANA port): same inner 4-tuple."""
    wrap, _ = WRAPS["vxlan"]
    path = tmp_path / "x.pcap"
    wrpcap(str(path), wrapped(healthy(10), wrap))
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "http.request", "-T", "fields",
                          "-e", "ip.src", "-e", "tcp.srcport", "-e", "vxlan.vni"],
                         capture_output=True, text=True, timeout=120).stdout.split()
    doc = wscap.analyze_paths([str(path)])
    h = doc["handshakes"][0]
    assert out[0].split(",")[-1] == CLIENT[0] and int(out[1]) == CLIENT[1] and int(out[2]) == 4242
    assert h["tunnel"][0]["vni"] == int(out[2])


def test_slice_keeps_the_tunnelled_packets_of_a_chain_whole(tmp_path):
    from wscap.capture.slice import chain_legs, slice_capture
    from scapy.all import rdpcap  # type: ignore[attr-defined]
    wrap, _ = WRAPS["vxlan-8472"]
    cap = healthy(11)
    pkts = wrapped(cap, wrap)
    other = healthy(12)                      # a second, plain connection that must stay out
    for p in other.packets:
        p[TCP].sport = 43999
    path = tmp_path / "in.pcap"
    wrpcap(str(path), pkts + other.packets)
    doc = wscap.analyze_paths([str(path)])
    tunnelled = next(c for c in doc["chains"]
                     if next(h for h in doc["handshakes"] if h["id"] == c["hops"][0]).get("tunnel"))
    res = slice_capture(str(path), str(tmp_path / "out.pcap"), chain_legs(doc, tunnelled["id"]))
    out = rdpcap(str(tmp_path / "out.pcap"))
    assert res.packets_written == len(pkts) == len(out)
    assert [bytes(p) for p in out] == [bytes(p) for p in pkts]


def test_unsupported_names_are_bounded(tmp_path):
    """GRE protocol types come from the packet: a hostile capture naming 200 of them keeps 32 names."""
    pkts = []
    for i in range(200):
        p = Ether(**MAC) / IP(src=VTEP_A, dst=VTEP_B) / GRE(proto=0x9000 + i) / Raw(b"x" * 20)
        p.time = 1_700_000_000 + i
        pkts.append(p)
    path = tmp_path / "gre-types.pcap"
    wrpcap(str(path), pkts)
    doc = wscap.analyze_paths([str(path)])
    u = doc["stats"]["unsupported_encapsulation"]
    assert len(u) == 33 and u["other"] == 200 - 32 and sum(u.values()) == 200
    res = CliRunner().invoke(main, ["analyze", str(path)])
    line = [ln for ln in res.stderr.splitlines() if "does not read" in ln]
    assert len(line) == 1 and "200 packet(s)" in line[0] and "more kinds" in line[0] and len(line[0]) < 300

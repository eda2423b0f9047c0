"""The per-leg Wireshark display filters, checked with tshark itself.

For recorded captures (and a synthetic IPv6 one), each leg's filter must be
accepted by Wireshark's filter compiler and select exactly the packets the
slicer selects for that leg's TCP 4-tuple: two independent readings of the
same capture agree.
"""
from __future__ import annotations

import glob
import ipaddress
import os
import shutil
import struct
import subprocess

import pytest

from wscap.render.mermaid import wireshark_filter
from wscap.capture.slice import chain_legs, slice_capture

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (apt-get install tshark)")
ROOT = os.path.join(os.path.dirname(__file__), "..")
# A few scenarios with different shapes: healthy, refused upstream, rejected, multi-chain.
SAMPLE = ["healthy.pcap", "backend-down-refused.pcap", "origin-rewrite.pcap", "sample-proxy.pcap"]


def tshark_count(path: str, flt: str) -> int:
    r = subprocess.run([TSHARK, "-n", "-r", path, "-Y", flt, "-T", "fields", "-e", "frame.number"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return len([ln for ln in r.stdout.splitlines() if ln.strip()])


@pytest.mark.parametrize("name", SAMPLE)
def test_leg_filters_select_the_same_packets_as_the_slicer(name, tmp_path):
    from wscap import analyze_paths

    path = os.path.join(ROOT, "pcaps", name)
    if not os.path.exists(path):
        pytest.skip(f"pcaps/{name} not recorded")
    doc = analyze_paths([path])
    legs = {leg for ch in doc["chains"] for leg in chain_legs(doc, ch["id"])}
    assert legs
    for client, server in sorted(legs):
        flt = wireshark_filter(client, server)
        res = slice_capture(path, str(tmp_path / "leg.pcap"), [(client, server)])
        assert tshark_count(path, flt) == res.packets_written > 0, (client, server, flt)


def _tcp6(src: str, dst: str, sport: int, dport: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    return (b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + struct.pack("!IHBB", 0x60000000, len(tcp), 6, 64)
            + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + tcp)


def test_ipv6_filter(tmp_path):
    pkts = [_tcp6("2001:db8::1", "2001:db8::2", 50000, 5173), _tcp6("2001:db8::2", "2001:db8::1", 5173, 50000),
            _tcp6("2001:db8::1", "2001:db8::2", 50001, 5173), _tcp6("::1", "::1", 50000, 5173)]
    path = tmp_path / "v6.pcap"
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, p in enumerate(pkts):
            f.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(p), len(p)) + p)
    flt = wireshark_filter("[2001:db8::1]:50000", "[2001:db8::2]:5173")
    assert flt == "ipv6.addr==2001:db8::1 && tcp.port==50000 && ipv6.addr==2001:db8::2 && tcp.port==5173"
    assert tshark_count(str(path), flt) == 2
    assert tshark_count(str(path), wireshark_filter("[::1]:50000", "[::1]:5173")) == 1

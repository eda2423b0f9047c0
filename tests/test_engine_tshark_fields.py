"""wscap.engine.tshark_fields: tshark's decoding of a built capture, as typed values.

Values in (a capture built segment by segment with tests/builders.py), values out (TsharkPacket
and DnsRecord), the expected values taken from how the capture was built.
"""
from __future__ import annotations

import shutil

import pytest
from scapy.all import DNS, DNSQR, IP, UDP  # type: ignore[attr-defined]

from builders import Capture, ws_request, ws_response
from wscap.engine.tshark_fields import TH_ACK, TH_FIN, TH_SYN, DnsRecord, FileStats, TsharkPacket, read

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (scripts/test installs it)")

A, B = ("10.0.0.1", 40000), ("10.0.0.2", 5000)


def _read(path: str) -> tuple[list, FileStats]:
    stats = FileStats(path)
    return list(read(path, stats)), stats


def test_segments_of_two_connections(tmp_path):
    cap = Capture()
    c = cap.conn(A, B, cseq=1000, sseq=5000).open()                     # frames 1-3
    req = ws_request("/chat")
    c.send(True, req, split=[10])                                       # frames 4, 5
    c.send(False, ws_response())                                        # frame 6
    c.fin(True)                                                         # frame 7
    d = cap.conn(("10.0.0.1", 40001), B).open()                         # frames 8-10: a second stream
    items, stats = _read(cap.write(tmp_path / "x.pcap"))
    pkts = [p for p in items if isinstance(p, TsharkPacket)]
    assert [p.frame for p in pkts] == list(range(1, 11)) and stats.packets == stats.tcp_packets == 10
    assert [p.stream for p in pkts] == [0] * 7 + [1] * 3
    syn = pkts[0]
    assert (syn.src, syn.sport, syn.dst, syn.dport) == (bytes([10, 0, 0, 1]), 40000, bytes([10, 0, 0, 2]), 5000)
    assert syn.flags & (TH_SYN | TH_ACK) == TH_SYN and syn.seq == 1000 and syn.paylen == 0
    assert pkts[1].flags & (TH_SYN | TH_ACK) == TH_SYN | TH_ACK and pkts[1].seq == 5000
    assert (pkts[3].seq, pkts[4].seq) == (1001, 1011)                  # raw sequence numbers
    assert pkts[3].payload + pkts[4].payload == req and (pkts[3].paylen, pkts[4].paylen) == (10, len(req) - 10)
    assert pkts[5].payload == ws_response() and pkts[6].flags & TH_FIN
    assert all(p.tunnel is None and not p.zero_window_probe for p in pkts)
    assert pkts[3].ts_ns - pkts[0].ts_ns == 3_000_000                  # the builder's 1 ms steps
    assert stats.first_ts_ns == pkts[0].ts_ns and stats.last_ts_ns == pkts[-1].ts_ns and stats.linktypes() == [1]
    assert d.client == ("10.0.0.1", 40001) and not stats.errors


def test_dns_query_and_answer(tmp_path):
    cap = Capture()
    cap.add(IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=33333, dport=53) /
            DNS(id=77, rd=1, qd=DNSQR(qname="backend", qtype="A")))
    cap.add(IP(src="10.0.0.53", dst="10.0.0.1") / UDP(sport=53, dport=33333) /
            DNS(id=77, qr=1, rcode=3, qd=DNSQR(qname="backend", qtype="A")))
    items, stats = _read(cap.write(tmp_path / "dns.pcap"))
    q, a = items
    assert isinstance(q, DnsRecord) and isinstance(a, DnsRecord)
    assert (q.frame, q.sport, q.dport, q.transport, q.txid, q.response, q.name, q.qtype) == \
        (1, 33333, 53, "udp", 77, False, "backend", "A")
    assert (a.frame, a.response, a.rcode, a.addresses, a.answers) == (2, True, 3, [], 0)
    assert stats.tcp_packets == 0 and stats.packets == 2


def test_a_cut_file_keeps_its_packets_and_says_so(tmp_path):
    cap = Capture()
    cap.conn(A, B).open()
    path = cap.write(tmp_path / "cut.pcap")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-10])
    items, stats = _read(path)
    assert [p.frame for p in items] == [1, 2]
    assert len(stats.errors) == 1 and "tshark failed after 2 packets" in stats.errors[0]

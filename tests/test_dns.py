"""DNS as evidence: the proxy's lookups explain a chain that stopped at the proxy.

Captures are built with scapy (the spec is the truth): the proxy 172.18.0.2 receives the
browser's upgrade, asks a resolver for `meetsonar-backend`, and what the resolver says
(SERVFAIL, NXDOMAIN, nothing, an address) is what the verdict must cite, with its frame.
"""
from __future__ import annotations

import json
import struct

import pytest
from scapy.all import IP, TCP, UDP, Raw  # type: ignore[attr-defined]
from scapy.layers.dns import DNS, DNSQR, DNSRR

from builders import Capture, new_key, ws_request, ws_response
from wscap.engine.analyze import analyze_paths
from wscap.model.limits import Limits
from wscap.engine.core import Options

CLIENT = ("172.18.0.1", 50000)
PROXY = ("172.18.0.2", 5173)
BACKEND = ("172.18.0.3", 5000)
RESOLVER = "172.18.0.1"          # a resolver on the bridge (Docker forwards names it does not own)


def _frame_no(cap: Capture, pkt) -> int:
    return next(i for i, p in enumerate(cap.packets, start=1) if p is pkt)


def dns_query(cap: Capture, name: str = "meetsonar-backend", qtype: str = "A", txid: int = 0x1234,
              client=("172.18.0.2", 40053), server=(RESOLVER, 53)):
    return cap.add(IP(src=client[0], dst=server[0]) / UDP(sport=client[1], dport=server[1])
                   / DNS(id=txid, rd=1, qd=DNSQR(qname=name, qtype=qtype)))


def dns_answer(cap: Capture, name: str = "meetsonar-backend", qtype: str = "A", txid: int = 0x1234,
               rcode: int = 0, addr: str | None = None, client=("172.18.0.2", 40053), server=(RESOLVER, 53)):
    an = [DNSRR(rrname=name, type=qtype, rdata=addr, ttl=600)] if addr else []
    return cap.add(IP(src=server[0], dst=client[0]) / UDP(sport=server[1], dport=client[1])
                   / DNS(id=txid, qr=1, ra=1, rcode=rcode, qd=DNSQR(qname=name, qtype=qtype), an=an))


def browser_leg(cap: Capture, n: int = 0):
    down = cap.conn((CLIENT[0], CLIENT[1] + n), PROXY).open()
    down.send(True, ws_request("/ws", key=new_key(n)))
    return down


def analyze(cap: Capture, tmp_path, name: str = "c.pcap", **opts) -> dict:
    path = cap.write(tmp_path / name)
    return analyze_paths([path], Options(**opts))


def only_chain(doc: dict) -> dict:
    assert len(doc["chains"]) == 1, doc["chains"]
    return doc["chains"][0]


def test_servfail_then_502(tmp_path):
    cap = Capture()
    down = browser_leg(cap)
    q = dns_query(cap)
    a = dns_answer(cap, rcode=2)
    down.send(False, ws_response(status=502, reason="Bad Gateway"))
    down.fin(False)
    doc = analyze(cap, tmp_path)
    v = only_chain(doc)["verdict"]
    assert v["cause"] == "no-upstream-connection"
    assert f"lookup of `meetsonar-backend` failed (SERVFAIL, frame {_frame_no(cap, a)})" in v["summary"]
    assert v["dns"]["visible"] is True and v["dns"]["host"] == PROXY[0]
    assert v["dns"]["lookups"][0]["outcome"] == "servfail"
    assert any(e["frame"] == _frame_no(cap, a) and "SERVFAIL" in e["what"] for e in v["evidence"])
    lk = doc["dns"]["lookups"]
    assert len(lk) == 1 and lk[0]["query_frame"] == _frame_no(cap, q) and lk[0]["answer_frame"] == _frame_no(cap, a)
    assert lk[0]["rcode"] == "SERVFAIL" and lk[0]["name"] == "meetsonar-backend" and lk[0]["type"] == "A"
    assert lk[0]["client"] == "172.18.0.2:40053" and lk[0]["server"] == "172.18.0.1:53"
    assert doc["dns"]["names"] == [{"name": "meetsonar-backend", "queries": 1, "answers": {"SERVFAIL": 1},
                                    "no_answer": 0, "addresses": []}]


def test_nxdomain_and_browser_timeout(tmp_path):
    """getaddrinfo asks A and AAAA; both NXDOMAIN; the proxy never answers, the browser gives up."""
    cap = Capture()
    down = browser_leg(cap)
    dns_query(cap, txid=1)
    dns_query(cap, qtype="AAAA", txid=2, client=("172.18.0.2", 40054))
    a1 = dns_answer(cap, txid=1, rcode=3)
    dns_answer(cap, qtype="AAAA", txid=2, rcode=3, client=("172.18.0.2", 40054))
    cap.wait(1.5)
    down.fin(True)
    doc = analyze(cap, tmp_path)
    v = only_chain(doc)["verdict"]
    assert v["cause"] in ("timeout", "no-upstream-connection")
    assert f"lookup of `meetsonar-backend` failed (NXDOMAIN, frame {_frame_no(cap, a1)})" in v["summary"]
    assert [x["rcode"] for x in doc["dns"]["lookups"]] == ["NXDOMAIN", "NXDOMAIN"]


def test_no_answer(tmp_path):
    cap = Capture()
    down = browser_leg(cap)
    q = dns_query(cap)
    cap.wait(2.0)
    down.send(False, ws_response(status=504, reason="Gateway Timeout"))
    down.fin(False)
    doc = analyze(cap, tmp_path)
    v = only_chain(doc)["verdict"]
    assert f"lookup of `meetsonar-backend` got no answer (query frame {_frame_no(cap, q)})" in v["summary"]
    assert doc["dns"]["lookups"][0]["outcome"] == "no-answer" and doc["dns"]["lookups"][0]["rcode"] is None


def test_healthy_lookup_is_not_mentioned(tmp_path):
    cap = Capture()
    key = new_key(7)
    down = cap.conn(CLIENT, PROXY).open()
    down.send(True, ws_request("/ws", key=key))
    dns_query(cap)
    a = dns_answer(cap, addr=BACKEND[0])
    up = cap.conn((PROXY[0], 40000), BACKEND).open()
    up.send(True, ws_request("/ws", key=key, host="meetsonar-backend:5000", lower=True))
    up.send(False, ws_response(key))
    down.send(False, ws_response(key, lower=True))
    doc = analyze(cap, tmp_path)
    v = only_chain(doc)["verdict"]
    assert v["cause"] == "ok"
    assert "lookup" not in v["summary"] and "DNS" not in v["summary"] and "dns" not in v
    lk = doc["dns"]["lookups"][0]
    assert lk["outcome"] == "ok" and lk["addresses"] == [BACKEND[0]] and lk["answer_frame"] == _frame_no(cap, a)


def test_resolved_but_never_connected(tmp_path):
    cap = Capture()
    down = browser_leg(cap)
    dns_query(cap)
    a = dns_answer(cap, addr=BACKEND[0])
    down.send(False, ws_response(status=502, reason="Bad Gateway"))
    doc = analyze(cap, tmp_path)
    v = only_chain(doc)["verdict"]
    assert f"resolved `meetsonar-backend` to {BACKEND[0]} (frame {_frame_no(cap, a)}) but no connection" in v["summary"]


def test_dns_not_visible_says_how_to_see_it(tmp_path):
    cap = Capture()
    down = browser_leg(cap)
    cap.wait(1.0)
    down.fin(False)
    doc = analyze(cap, tmp_path, names=(("172.18.0.2", "meetsonar_vite_1"),))
    v = only_chain(doc)["verdict"]
    assert v["cause"] == "no-upstream-connection"
    assert "DNS was not visible from this capture point" in v["summary"]
    assert "`wscap live --container meetsonar_vite_1`" in v["summary"]
    assert v["dns"] == {"host": "172.18.0.2", "visible": False, "lookups": []}


def test_lookup_of_another_host_or_time_is_not_cited(tmp_path):
    """A lookup by some other container, and one by the proxy long before, explain nothing."""
    cap = Capture()
    dns_query(cap, client=("172.18.0.2", 40001), txid=9)
    dns_answer(cap, client=("172.18.0.2", 40001), txid=9, rcode=2)
    cap.wait(30)
    down = browser_leg(cap)
    dns_query(cap, client=("172.18.0.9", 40002), txid=10)
    dns_answer(cap, client=("172.18.0.9", 40002), txid=10, rcode=2)
    down.send(False, ws_response(status=502, reason="Bad Gateway"))
    doc = analyze(cap, tmp_path)
    v = only_chain(doc)["verdict"]
    assert "lookup" not in v["summary"] and "not visible" not in v["summary"]
    assert v["dns"] == {"host": "172.18.0.2", "visible": True, "lookups": []}


def test_docker_resolver_inside_the_container(tmp_path):
    """Captured inside vite's namespace: the query goes 127.0.0.1 -> 127.0.0.11 on a DNAT'd high
    port, the answer comes back from 127.0.0.11:53; the browser leg arrives on eth0."""
    cap = Capture()
    down = browser_leg(cap)
    dns_query(cap, client=("127.0.0.1", 45000), server=("127.0.0.11", 41234), txid=77)
    a = dns_answer(cap, client=("127.0.0.1", 45000), server=("127.0.0.11", 53), txid=77, rcode=2)
    down.send(False, ws_response(status=502, reason="Bad Gateway"))
    doc = analyze(cap, tmp_path)
    v = only_chain(doc)["verdict"]
    assert f"failed (SERVFAIL, frame {_frame_no(cap, a)})" in v["summary"]
    assert doc["dns"]["lookups"][0]["server"] == "127.0.0.11:41234"


def test_dns_over_tcp(tmp_path):
    cap = Capture()
    down = browser_leg(cap)
    q = bytes(DNS(id=5, rd=1, qd=DNSQR(qname="meetsonar-backend")))
    r = bytes(DNS(id=5, qr=1, rcode=5, qd=DNSQR(qname="meetsonar-backend")))
    t = cap.conn(("172.18.0.2", 41000), (RESOLVER, 53)).open()
    t.send(True, struct.pack("!H", len(q)) + q, split=[1])        # the length prefix on its own
    resp = t.send(False, struct.pack("!H", len(r)) + r)
    down.send(False, ws_response(status=502, reason="Bad Gateway"))
    doc = analyze(cap, tmp_path)
    v = only_chain(doc)["verdict"]
    assert f"failed (REFUSED, frame {_frame_no(cap, resp[-1])})" in v["summary"]
    assert doc["dns"]["lookups"][0]["transport"] == "tcp"
    assert len(doc["handshakes"]) == 1      # the DNS connection is not an HTTP connection


def test_malformed_dns_is_counted_not_fatal(tmp_path):
    cap = Capture()
    down = browser_leg(cap)
    hdr = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    cap.add(IP(src="172.18.0.2", dst=RESOLVER) / UDP(sport=40060, dport=53) / Raw(hdr + b"\xc0\x0c\x00\x01\x00\x01"))
    cap.add(IP(src="172.18.0.2", dst=RESOLVER) / UDP(sport=40061, dport=53) / Raw(b"\x00\x01\x02"))
    loop = struct.pack("!HHHHHH", 0x4343, 0x8182, 1, 1, 0, 0) + b"\x03abc\x00\x00\x01\x00\x01" + b"\xc0\x1d" * 8
    cap.add(IP(src=RESOLVER, dst="172.18.0.2") / UDP(sport=53, dport=40062) / Raw(loop))
    down.send(False, ws_response(status=502, reason="Bad Gateway"))
    doc = analyze(cap, tmp_path)
    assert doc["dns"]["messages"] == 3 and doc["dns"]["malformed"] == 3
    assert only_chain(doc)["verdict"]["cause"] == "no-upstream-connection"
    assert not doc["source"][0]["errors"]


def test_max_dns_bound(tmp_path):
    cap = Capture()
    for i in range(30):
        dns_query(cap, name=f"n{i}.example", txid=i, client=("172.18.0.5", 30000 + i))
    doc = analyze(cap, tmp_path, limits=Limits(max_dns=10))
    assert len(doc["dns"]["lookups"]) == 10 and doc["dns"]["dropped"] == 20
    assert doc["stats"]["limits_hit"]["max_dns"] == 20
    assert doc["dns"]["lookups"][-1]["name"] == "n29.example"     # the newest are kept


def test_cli_max_dns_and_text_line(tmp_path):
    from click.testing import CliRunner
    from wscap.cli.main import main
    cap = Capture()
    down = browser_leg(cap)
    dns_query(cap)
    a = dns_answer(cap, rcode=2)
    down.send(False, ws_response(status=502, reason="Bad Gateway"))
    path = cap.write(tmp_path / "c.pcap")
    r = CliRunner().invoke(main, ["analyze", path, "--max-dns", "5"])
    assert r.exit_code == 1, r.output
    assert f"failed (SERVFAIL, frame {_frame_no(cap, a)})" in r.output
    assert f"DNS: meetsonar-backend SERVFAIL (frame {_frame_no(cap, a)})" in r.output
    r = CliRunner().invoke(main, ["analyze", path, "--format", "json"])
    assert json.loads(r.output)["dns"]["lookups"][0]["rcode"] == "SERVFAIL"


def test_parallel_jobs_keep_dns(tmp_path):
    from wscap.engine.analyze import run_pipeline
    paths = []
    for i in range(2):
        cap = Capture(t0=1_700_000_000.0 + 100 * i)
        down = browser_leg(cap)
        dns_query(cap, txid=i)
        dns_answer(cap, txid=i, rcode=2 if i else 3)
        down.send(False, ws_response(status=502, reason="Bad Gateway"))
        paths.append(cap.write(tmp_path / f"c{i}.pcap"))
    one = run_pipeline(paths, Options()).document()
    two = run_pipeline(paths, Options(), jobs=2).document()
    assert one["dns"] == two["dns"]
    assert [c["verdict"]["summary"] for c in one["chains"]] == [c["verdict"]["summary"] for c in two["chains"]]
    assert "NXDOMAIN" in one["chains"][0]["verdict"]["summary"] and "SERVFAIL" in one["chains"][1]["verdict"]["summary"]


def test_ipv6_dns(tmp_path):
    from scapy.all import IPv6  # type: ignore[attr-defined]
    cap = Capture()
    cap.add(IPv6(src="fd00::2", dst="fd00::1") / UDP(sport=40000, dport=53) / DNS(id=3, qd=DNSQR(qname="x", qtype="AAAA")))
    cap.add(IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=53, dport=40000)
            / DNS(id=3, qr=1, qd=DNSQR(qname="x", qtype="AAAA"), an=DNSRR(rrname="x", type="AAAA", rdata="fd00::3")))
    doc = analyze(cap, tmp_path)
    lk = doc["dns"]["lookups"][0]
    assert lk["client"] == "[fd00::2]:40000" and lk["addresses"] == ["fd00::3"] and lk["type"] == "AAAA"


@pytest.mark.parametrize("payload", [b"", b"\xff" * 11, b"\x00" * 12, b"\x12\x34\x81\x80" + b"\xff" * 8])
def test_short_and_odd_messages(tmp_path, payload):
    cap = Capture()
    cap.add(IP(src="172.18.0.2", dst=RESOLVER) / UDP(sport=40000, dport=53) / Raw(payload))
    doc = analyze(cap, tmp_path)
    assert doc["dns"]["messages"] == 1 and not doc["source"][0]["errors"]


# -- the tshark engine reads the same DNS from tshark's dns fields -------------------------------

def _scenarios():
    out = {}
    for kind in ("servfail", "nxdomain", "no-answer", "tcp", "ok", "docker"):
        cap = Capture()
        down = browser_leg(cap)
        if kind == "tcp":
            q = bytes(DNS(id=5, rd=1, qd=DNSQR(qname="meetsonar-backend")))
            r = bytes(DNS(id=5, qr=1, rcode=2, qd=DNSQR(qname="meetsonar-backend")))
            t = cap.conn(("172.18.0.2", 41000), (RESOLVER, 53)).open()
            t.send(True, struct.pack("!H", len(q)) + q)
            t.send(False, struct.pack("!H", len(r)) + r)
        elif kind == "docker":
            # Docker's resolver behind DNAT: the query is seen on a high port (tshark's DNS
            # heuristic dissector finds it there too).
            dns_query(cap, client=("127.0.0.1", 45000), server=("127.0.0.11", 41234), txid=77)
            dns_answer(cap, client=("127.0.0.1", 45000), server=("127.0.0.11", 53), txid=77, rcode=2)
        else:
            dns_query(cap)
            if kind != "no-answer":
                dns_answer(cap, rcode={"servfail": 2, "nxdomain": 3, "ok": 0}[kind],
                           addr=BACKEND[0] if kind == "ok" else None)
        cap.wait(1.0)
        down.send(False, ws_response(status=502, reason="Bad Gateway"))
        out[kind] = cap
    return out


@pytest.mark.skipif(__import__("shutil").which("tshark") is None, reason="tshark is not installed")
def test_tshark_engine_reads_the_same_dns(tmp_path):
    from wscap.engine.tshark import analyze_paths as tshark_analyze
    for kind, cap in _scenarios().items():
        path = cap.write(tmp_path / f"{kind}.pcap")
        core = analyze_paths([path], Options())
        tsh = tshark_analyze([path], Options())
        assert [c["verdict"] for c in core["chains"]] == [c["verdict"] for c in tsh["chains"]], kind
        assert core["dns"]["lookups"] and core["dns"]["lookups"] == tsh["dns"]["lookups"], kind
        assert core["dns"]["messages"] == tsh["dns"]["messages"], kind


def test_copies_on_two_interfaces_are_one_lookup_and_a_retry_is_two(tmp_path):
    cap = Capture(step=0.00001)
    q = dns_query(cap)
    dns_query(cap)                              # the same datagram, captured again on the bridge
    a = dns_answer(cap, rcode=3)
    dns_answer(cap, rcode=3)
    cap.wait(1.0)
    q2 = dns_query(cap, txid=0x5555)            # a retry, a second later, new id: a second lookup
    cap.wait(1.0)
    q3 = dns_query(cap, txid=0x5555)            # the same id again after a second: a retry, not a copy
    doc = analyze(cap, tmp_path)
    lk = doc["dns"]["lookups"]
    assert [(x["query_frame"], x["answer_frame"], x["outcome"]) for x in lk] == [
        (_frame_no(cap, q), _frame_no(cap, a), "nxdomain"),
        (_frame_no(cap, q2), None, "no-answer"), (_frame_no(cap, q3), None, "no-answer")]
    assert doc["dns"]["duplicates"] == 2


def test_live_pipeline_chain_line_cites_the_lookup(tmp_path):
    """live feeds the same pipeline frame by frame; the chain event carries the DNS sentence."""
    from wscap.capture.files import ReadResult, read_frames
    from wscap.engine.core import Pipeline
    from wscap.render.table import chain_line
    cap = Capture()
    down = browser_leg(cap)
    dns_query(cap)
    a = dns_answer(cap, rcode=2)
    cap.wait(0.5)
    down.send(False, ws_response(status=502, reason="Bad Gateway"))
    path = cap.write(tmp_path / "live.pcap")
    pipe = Pipeline(Options(timeout_s=1.0, names=(("172.18.0.2", "vite"),)))
    events = []
    last = 0
    for f in read_frames(path, ReadResult(path=path)):
        events += pipe.feed(f)
        last = f.ts_ns
    events += pipe.tick(last + 5_000_000_000)
    chains = [e.json for e in events if e.kind == "chain"]
    assert len(chains) == 1
    line = chain_line(chains[0], {"handshakes": [e.json for e in events if e.kind == "handshake"],
                                  "endpoints": [{"ip": "172.18.0.2", "name": "vite"}]})
    assert "vite (172.18.0.2:5173) answered 502" in line
    assert f"failed (SERVFAIL, frame {_frame_no(cap, a)})" in line
    assert f"DNS: meetsonar-backend SERVFAIL (frame {_frame_no(cap, a)}), A lookup by vite (172.18.0.2)" in line


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=600), min_size=1, max_size=6), st.booleans())
def test_any_bytes_as_dns_never_raise(payloads, answers_first):
    """Arbitrary bytes as UDP and TCP DNS messages: counted, never raised, always bounded."""
    from wscap.wire.decode import Segment
    from wscap.flow.dns import DnsTracker
    t = DnsTracker(max_lookups=4)
    src, dst = bytes([172, 18, 0, 2]), bytes([127, 0, 0, 11])
    for i, p in enumerate(payloads):
        a, b = (dst, src) if answers_first else (src, dst)
        t.udp(0, i + 1, 1_700_000_000_000_000_000 + i, a, 53 if answers_first else 40000, b,
              40000 if answers_first else 53, p)
        t.tcp(Segment(i + 1, 1_700_000_000_000_000_000 + i, src, 41000, dst, 53, 1000 + i * 7, 0, 0x18,
                      struct.pack("!H", len(p)) + p, len(p) + 2, 0))
    doc = t.to_json()
    assert len(doc["lookups"]) <= 4
    assert doc["messages"] >= doc["malformed"] >= 0
    json.dumps(doc)


def test_backend_timeout_behind_a_proxy_gets_no_dns_noise(tmp_path):
    """A backend that hangs behind a working proxy: no 'not visible' hint, no lookup sentence."""
    cap = Capture()
    key = new_key(3)
    down = cap.conn(CLIENT, PROXY).open()
    down.send(True, ws_request("/ws", key=key))
    up = cap.conn((PROXY[0], 40000), BACKEND).open()
    up.send(True, ws_request("/ws", key=key, host="meetsonar-backend:5000", lower=True))
    cap.wait(5.0)
    # A later packet shows the capture went on past --timeout (else: unanswered-at-capture-end).
    cap.conn(("172.18.0.9", 45000), ("172.18.0.8", 80)).open()
    doc = analyze(cap, tmp_path)
    v = only_chain(doc)["verdict"]
    assert v["cause"] == "timeout" and v["hop"] == 1
    assert "DNS" not in v["summary"] and "lookup" not in v["summary"] and "dns" not in v


def test_hostile_query_name_is_shown_not_obeyed(tmp_path):
    """A name with an ANSI escape, a bidi override and a backtick reaches the terminal escaped."""
    from click.testing import CliRunner
    from wscap.cli.main import main
    evil = "evil\x1b[2J\u202emeets`onar"
    cap = Capture()
    down = browser_leg(cap)
    q = bytes(DNS(id=1, rd=1, qd=DNSQR(qname="x")))
    name = evil.encode()
    wire = bytes([len(name)]) + name + b"\x00"
    q = q[:12] + wire + q[12 + 3:]                                 # swap the question's name
    r = bytes(DNS(id=1, qr=1, rcode=2, qd=DNSQR(qname="x")))
    r = r[:12] + wire + r[12 + 3:]
    cap.add(IP(src="172.18.0.2", dst=RESOLVER) / UDP(sport=40000, dport=53) / Raw(q))
    cap.add(IP(src=RESOLVER, dst="172.18.0.2") / UDP(sport=53, dport=40000) / Raw(r))
    down.send(False, ws_response(status=502, reason="Bad Gateway"))
    path = cap.write(tmp_path / "evil.pcap")
    out = CliRunner().invoke(main, ["analyze", path]).output
    assert "\x1b" not in out and "\u202e" not in out
    assert "lookup of `evil\\x1b[2J\\u202emeets'onar` failed (SERVFAIL" in out


def test_proxy_on_host_loopback_v6_lookup_on_v4_loopback(tmp_path):
    """Vite on the host at [::1]:5173; glibc asks systemd-resolved at 127.0.0.53 from 127.0.0.1."""
    cap = Capture()
    down = cap.conn(("::1", 50000), ("::1", 5173)).open()
    down.send(True, ws_request("/ws", key=new_key(4)))
    dns_query(cap, client=("127.0.0.1", 40000), server=("127.0.0.53", 53))
    a = dns_answer(cap, client=("127.0.0.1", 40000), server=("127.0.0.53", 53), rcode=3)
    down.send(False, ws_response(status=502, reason="Bad Gateway"))
    doc = analyze(cap, tmp_path)
    assert f"failed (NXDOMAIN, frame {_frame_no(cap, a)})" in only_chain(doc)["verdict"]["summary"]


@pytest.mark.parametrize("linktype", [1, 113, 276, 101])   # Ethernet, -i any (SLL, SLL2), raw IP
def test_live_filter_compiles_for_every_capture_linktype(linktype):
    """The default live filter is valid BPF for a bridge, `-i any` inside a container, and raw IP."""
    try:
        from scapy.arch.common import compile_filter
    except ImportError:
        pytest.skip("scapy cannot compile BPF here")
    from wscap.flow.dns import LIVE_FILTER
    assert compile_filter(LIVE_FILTER, linktype=linktype).bf_len > 0


@pytest.mark.skipif(__import__("shutil").which("tcpdump") is None, reason="tcpdump is not installed")
def test_live_filter_keeps_what_the_analysis_reads(tmp_path):
    """libpcap (through tcpdump) applies the filter: TCP, DNS both ways, the DNAT'd query kept."""
    import subprocess
    from scapy.all import rdpcap  # type: ignore[attr-defined]
    from wscap.flow.dns import LIVE_FILTER
    cap = Capture()
    cap.add(IP(src="172.18.0.1", dst="172.18.0.2") / TCP(sport=50000, dport=5173))
    cap.add(IP(src="172.18.0.2", dst="172.18.0.1") / UDP(sport=40000, dport=53))
    cap.add(IP(src="127.0.0.1", dst="127.0.0.11") / UDP(sport=40000, dport=41234))      # behind the DNAT
    cap.add(IP(src="127.0.0.11", dst="127.0.0.1") / UDP(sport=53, dport=40000))
    cap.add(IP(src="172.18.0.2", dst="172.18.0.1") / UDP(sport=40000, dport=5353))      # mDNS: not kept
    cap.add(IP(src="172.18.0.2", dst="172.18.0.1") / UDP(sport=40000, dport=443))       # QUIC: not kept
    src = cap.write(tmp_path / "all.pcap")
    out = tmp_path / "kept.pcap"
    r = subprocess.run(["tcpdump", "-r", src, "-w", str(out), LIVE_FILTER], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    kept = [(p[IP].src, p[IP].dst) for p in rdpcap(str(out))]
    assert kept == [("172.18.0.1", "172.18.0.2"), ("172.18.0.2", "172.18.0.1"), ("127.0.0.1", "127.0.0.11"),
                    ("127.0.0.11", "127.0.0.1")]

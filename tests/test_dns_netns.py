"""A real lookup failure, captured for real: a proxy in a network namespace resolves its upstream
name through a resolver at 127.0.0.11 behind Docker's own iptables DNAT (a random high port on
the resolver's side), the resolver answers SERVFAIL, the proxy answers the browser 502.

Everything runs inside two namespaces this test creates (`wsdns<pid>c`, `wsdns<pid>p`, addresses
10.231.N.1/.2): glibc's getaddrinfo in the proxy reads the namespace's resolv.conf
(/etc/netns/NAME/resolv.conf, as `ip netns exec` mounts it), tcpdump captures `-i any` in the
proxy's namespace with the live default filter, and the expected frame is found by reading the
capture with scapy (not wscap). Skips without root, namespaces, iptables or tcpdump.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from netns import can_make_netns, wscap_argv, wscap_env
from wscap.flow.dns import LIVE_FILTER      # "tcp or port 53 or host 127.0.0.11": live's default filter

ok, why = can_make_netns()
pytestmark = [
    pytest.mark.skipif(not ok, reason=why or "cannot create namespaces"),
    pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed"),
    pytest.mark.skipif(shutil.which("iptables") is None, reason="iptables is not installed"),
]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESOLVER_PORT = 41234                                   # the resolver's real port behind the DNAT

RESOLVER = textwrap.dedent(f"""
    import socket, struct, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.11", {RESOLVER_PORT}))
    print("ready", flush=True)
    while True:
        q, addr = s.recvfrom(4096)
        txid, flags = struct.unpack_from("!HH", q)
        # Echo the question, QR=1, RA=1, RCODE=2 (SERVFAIL), no answers.
        s.sendto(struct.pack("!HHHHHH", txid, 0x8182 | (flags & 0x0100), 1, 0, 0, 0) + q[12:], addr)
""")

PROXY = textwrap.dedent("""
    import socket, sys
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((sys.argv[1], 5173))
    srv.listen()
    print("ready", flush=True)
    while True:
        c, _ = srv.accept()
        data = b""
        while b"\\r\\n\\r\\n" not in data:
            more = c.recv(4096)
            if not more:
                break
            data += more
        try:
            socket.getaddrinfo("meetsonar-backend", 5000, type=socket.SOCK_STREAM)
            c.sendall(b"HTTP/1.1 500 Unexpected\\r\\nContent-Length: 0\\r\\n\\r\\n")
        except socket.gaierror as e:
            body = ("getaddrinfo failed: " + str(e)).encode()
            c.sendall(b"HTTP/1.1 502 Bad Gateway\\r\\nContent-Length: " + str(len(body)).encode()
                      + b"\\r\\nConnection: close\\r\\n\\r\\n" + body)
        c.close()
""")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r


@pytest.fixture
def lab(tmp_path):
    pid = os.getpid()
    c, p = f"wsdns{pid}c", f"wsdns{pid}p"
    net = f"10.231.{pid % 250}"
    procs: list[subprocess.Popen] = []
    etc = f"/etc/netns/{p}"
    made_parent = not os.path.isdir("/etc/netns")
    try:
        sh("ip", "netns", "add", c)
        sh("ip", "netns", "add", p)
        sh("ip", "link", "add", f"wsd{pid % 100000}a", "type", "veth", "peer", "name", f"wsd{pid % 100000}b")
        sh("ip", "link", "set", f"wsd{pid % 100000}a", "netns", c)
        sh("ip", "link", "set", f"wsd{pid % 100000}b", "netns", p)
        sh("ip", "-n", c, "addr", "add", f"{net}.1/24", "dev", f"wsd{pid % 100000}a")
        sh("ip", "-n", p, "addr", "add", f"{net}.2/24", "dev", f"wsd{pid % 100000}b")
        for ns, dev in ((c, f"wsd{pid % 100000}a"), (p, f"wsd{pid % 100000}b")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        # Docker's embedded-resolver rules, as dockerd writes them into every container's namespace.
        sh("ip", "netns", "exec", p, "iptables", "-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.11/32", "-p", "udp",
           "--dport", "53", "-j", "DNAT", "--to-destination", f"127.0.0.11:{RESOLVER_PORT}")
        sh("ip", "netns", "exec", p, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "127.0.0.11/32", "-p",
           "udp", "--sport", str(RESOLVER_PORT), "-j", "SNAT", "--to-source", ":53")
        os.makedirs(etc, exist_ok=True)
        with open(f"{etc}/resolv.conf", "w") as f:
            f.write("nameserver 127.0.0.11\noptions ndots:0 attempts:1 timeout:1\n")
        yield {"c": c, "p": p, "net": net, "procs": procs, "tmp": tmp_path}
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.terminate()
                try:
                    pr.wait(10)
                except subprocess.TimeoutExpired:
                    pr.kill()
                    pr.wait()
        sh("ip", "netns", "del", c, check=False)
        sh("ip", "netns", "del", p, check=False)
        shutil.rmtree(etc, ignore_errors=True)
        if made_parent:
            try:
                os.rmdir("/etc/netns")     # ours, and empty again
            except OSError:
                pass


def _spawn(lab, ns: str, code: str, *args: str) -> subprocess.Popen:
    pr = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lab["procs"].append(pr)
    assert pr.stdout.readline().strip() == "ready", pr.stderr.read() if pr.poll() is not None else "no ready"
    return pr


def test_real_servfail_through_docker_style_dnat(lab):
    cap_path = str(lab["tmp"] / "proxy-ns.pcap")
    dump = subprocess.Popen(["ip", "netns", "exec", lab["p"], "tcpdump", "-i", "any", "-U", "-w", cap_path,
                             LIVE_FILTER], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lab["procs"].append(dump)
    deadline = time.time() + 30
    while not (os.path.exists(cap_path) and os.path.getsize(cap_path) >= 24) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)                      # tcpdump writes its header before the capture is armed
    _spawn(lab, lab["p"], RESOLVER)
    _spawn(lab, lab["p"], PROXY, f"{lab['net']}.2")
    client = textwrap.dedent(f"""
        import socket
        s = socket.create_connection(("{lab['net']}.2", 5173), timeout=20)
        s.sendall(b"GET /ws HTTP/1.1\\r\\nHost: localhost:5173\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n")
        data = b""
        while True:
            more = s.recv(4096)
            if not more:
                break
            data += more
        print(data.split(b"\\r\\n", 1)[0].decode())
    """)
    r = subprocess.run(["ip", "netns", "exec", lab["c"], sys.executable, "-c", client],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "HTTP/1.1 502 Bad Gateway", r.stdout + r.stderr
    time.sleep(1.5)
    dump.terminate()
    dump.wait(20)

    # The truth, read with scapy: which frames hold the query and the SERVFAIL answer.
    from scapy.all import DNS, UDP, rdpcap  # type: ignore[attr-defined]
    pkts = rdpcap(cap_path)
    answers = [i for i, p in enumerate(pkts, start=1) if p.haslayer(DNS) and p[DNS].qr == 1 and p[DNS].rcode == 2
               and p[DNS].qd and p[DNS].qd[0].qname.rstrip(b".") == b"meetsonar-backend"]
    queries = [i for i, p in enumerate(pkts, start=1) if p.haslayer(UDP) and p[UDP].dport == RESOLVER_PORT]
    assert answers and queries, [p.summary() for p in pkts]

    from wscap.engine.analyze import analyze_paths
    from wscap.engine.core import Options
    doc = analyze_paths([cap_path], Options())
    broken = [c for c in doc["chains"] if c["verdict"]["broken"]]
    assert len(broken) == 1, [c["verdict"] for c in doc["chains"]]
    v = broken[0]["verdict"]
    assert v["cause"] == "no-upstream-connection"
    assert "lookup of `meetsonar-backend` failed (SERVFAIL, frame " in v["summary"]
    cited = int(v["summary"].split("(SERVFAIL, frame ")[1].split(")")[0])
    assert cited in answers
    lk = [x for x in doc["dns"]["lookups"] if x["name"] == "meetsonar-backend"]
    assert lk and all(x["rcode"] == "SERVFAIL" for x in lk)
    # The query as the capture holds it: to the resolver's real port, behind the DNAT.
    assert any(x["server"] == f"127.0.0.11:{RESOLVER_PORT}" and x["query_frame"] in queries for x in lk)


def test_live_with_the_dns_filter_cites_the_lookup(lab):
    """`wscap live` in the proxy's namespace with the DNS-aware filter: the chain event says why."""
    live = subprocess.Popen(wscap_argv("live", "--netns", lab["p"], "-i", "any", "--filter", LIVE_FILTER,
                                       "--format", "json", "--timeout", "1", "--duration", "120",
                                       "--no-docker", "--status"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=wscap_env(), cwd=REPO)
    lab["procs"].append(live)
    err_lines: list[str] = []
    armed = threading.Event()

    def drain() -> None:                 # stderr must keep flowing (status lines), and says when it is armed
        for line in live.stderr:
            err_lines.append(line)
            if "capturing on" in line:
                armed.set()
    threading.Thread(target=drain, daemon=True).start()
    assert armed.wait(90), "".join(err_lines)
    time.sleep(1.0)
    _spawn(lab, lab["p"], RESOLVER)
    _spawn(lab, lab["p"], PROXY, f"{lab['net']}.2")
    client = textwrap.dedent(f"""
        import socket
        s = socket.create_connection(("{lab['net']}.2", 5173), timeout=20)
        s.sendall(b"GET /ws HTTP/1.1\\r\\nHost: localhost:5173\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n")
        print(s.recv(4096).split(b"\\r\\n", 1)[0].decode())
    """)
    r = subprocess.run(["ip", "netns", "exec", lab["c"], sys.executable, "-c", client],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "HTTP/1.1 502 Bad Gateway", r.stdout + r.stderr
    time.sleep(3.0)                      # the chain is decided after --timeout 1 on the next tick
    live.send_signal(signal.SIGINT)
    out = live.stdout.read()
    live.wait(60)
    err = "".join(err_lines)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    chains = [e["chain"] for e in events if e["type"] == "chain"]
    assert len(chains) == 1, (out, err)
    v = chains[0]["verdict"]
    assert v["cause"] == "no-upstream-connection"
    assert "lookup of `meetsonar-backend` failed (SERVFAIL, frame " in v["summary"], v["summary"]
    summary = [e for e in events if e["type"] == "summary"][0]
    assert any(x["name"] == "meetsonar-backend" and x["rcode"] == "SERVFAIL" for x in summary["dns"]["lookups"])

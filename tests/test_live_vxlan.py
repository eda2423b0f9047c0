"""Real software through a real tunnel: Linux's VXLAN between two network namespaces (issue 14).

Two namespaces joined by a veth pair (the "underlay", as between two Docker hosts), a VXLAN
device on each (VNI 42, no `dstport`: Linux's default UDP port 8472, as flannel and Docker
overlays on older kernels use), a WebSocket server (python `websockets`) on one overlay address
and a client on the other. tcpdump records the underlay, where only VXLAN/UDP is seen. wscap
must find the handshake inside, with the outer endpoints, where the expectation comes from how
the namespaces were built. Root only; skips with the reason otherwise. Everything it creates is
removed by the names and PIDs it gave them.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from netns import can_make_netns, sh

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 100 + os.getpid() % 100
UNDER_A, UNDER_B = f"10.215.{N}.1", f"10.215.{N}.2"    # underlay (the hosts' NICs)
OVER_A, OVER_B = f"10.216.{N}.1", f"10.216.{N}.2"      # overlay (the containers)
VNI, PORT = 42, 8765

SERVER = f"""
from websockets.sync.server import serve
def echo(ws):
    for m in ws:
        ws.send(m)
with serve(echo, "{OVER_A}", {PORT}) as s:
    s.serve_forever()
"""
CLIENT = f"""
import time
from websockets.sync.client import connect
for _ in range(100):
    try:
        with connect("ws://{OVER_A}:{PORT}/chat", open_timeout=5) as ws:
            ws.send("hello over vxlan")
            assert ws.recv(timeout=5) == "hello over vxlan"
        break
    except (ConnectionRefusedError, OSError):
        time.sleep(0.1)
else:
    raise SystemExit("server never reachable")
"""


def _skip_reason() -> str | None:
    ok, why = can_make_netns()
    if not ok:
        return why
    if not shutil.which("tcpdump"):
        return "needs tcpdump"
    r = subprocess.run(["ip", "link", "help", "vxlan"], capture_output=True, text=True)
    if "vxlan" not in (r.stdout + r.stderr).lower():
        return "iproute2 without vxlan support"
    return None


@pytest.fixture
def overlay(tmp_path):
    why = _skip_reason()
    if why:
        pytest.skip(why)
    a, b = f"wsvx{os.getpid()}a", f"wsvx{os.getpid()}b"
    procs: list[subprocess.Popen] = []
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", "vxu-a", "netns", a, "type", "veth", "peer", "name", "vxu-b", "netns", b)
        for ns, dev, under, over, remote in ((a, "vxu-a", UNDER_A, OVER_A, UNDER_B), (b, "vxu-b", UNDER_B, OVER_B, UNDER_A)):
            ex = ("ip", "netns", "exec", ns)
            sh(*ex, "ip", "link", "set", "lo", "up")
            sh(*ex, "ip", "addr", "add", f"{under}/24", "dev", dev)
            sh(*ex, "ip", "link", "set", dev, "up")
            # No dstport: the kernel's default VXLAN port, 8472 (not IANA's 4789).
            r = sh(*ex, "ip", "link", "add", "vx0", "type", "vxlan", "id", str(VNI), "remote", remote, "local", under,
                   "dev", dev, check=False)
            if r.returncode != 0:
                pytest.skip(f"cannot create a VXLAN device here: {r.stderr.strip()}")
            sh(*ex, "ip", "addr", "add", f"{over}/24", "dev", "vx0")
            sh(*ex, "ip", "link", "set", "vx0", "up")
        yield {"a": a, "b": b, "procs": procs, "tmp": tmp_path}
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


def test_websocket_over_linux_vxlan_8472_is_found_with_its_outer_endpoints(overlay):
    a, b, procs, tmp = overlay["a"], overlay["b"], overlay["procs"], overlay["tmp"]
    pcap = tmp / "underlay.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", b, "tcpdump", "-i", "vxu-b", "-U", "-n", "-w", str(pcap), "udp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    procs.append(dump)
    line = dump.stderr.readline()                       # "listening on vxu-b ..." once it captures
    assert "listening" in line, line
    server = subprocess.Popen(["ip", "netns", "exec", a, sys.executable, "-c", SERVER],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(server)
    client = subprocess.run(["ip", "netns", "exec", b, sys.executable, "-c", CLIENT],
                            capture_output=True, text=True, timeout=120)
    assert client.returncode == 0, client.stderr
    time.sleep(1.0)                                      # the last ACKs and FINs reach the capture
    dump.send_signal(signal.SIGTERM)
    dump.wait(30)

    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, "-m", "wscap", "analyze", "--format", "json", str(pcap)],
                         capture_output=True, text=True, env=env, cwd=str(tmp), timeout=120)
    import json
    doc = json.loads(out.stdout)
    assert doc["stats"]["tcp_packets"] > 0 and doc["stats"]["tunnelled_packets"] == doc["stats"]["tcp_packets"]
    [h] = doc["handshakes"]
    assert h["client"].startswith(OVER_B + ":") and h["server"] == f"{OVER_A}:{PORT}"
    assert h["request"]["target"] == "/chat" and h["outcome"] == "upgraded"
    assert h["tunnel"] == [{"type": "vxlan", "outer_src": UNDER_B, "outer_dst": UNDER_A, "vni": VNI, "port": 8472,
                            "direction": "c2s"}]
    assert [f["preview"] for f in h["frames"] if f["opcode"] == 1] == ["hello over vxlan", "hello over vxlan"]
    assert [c["verdict"]["cause"] for c in doc["chains"]] == ["ok"]
    assert out.returncode == 0, out.stderr


def test_wscap_live_on_the_underlay_sees_the_tunnelled_handshake(overlay):
    """`wscap live` with its default filter (TCP and the tunnels) on the underlay NIC."""
    import json
    a, b, procs = overlay["a"], overlay["b"], overlay["procs"]
    server = subprocess.Popen(["ip", "netns", "exec", a, sys.executable, "-c", SERVER],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(server)
    env = dict(os.environ, PYTHONPATH=REPO)
    live = subprocess.Popen([sys.executable, "-m", "wscap", "live", "--netns", b, "-i", "vxu-b", "--format", "json",
                             "--no-docker", "--duration", "15", "--timeout", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(overlay["tmp"]))
    procs.append(live)
    seen = ""
    while "Ctrl-C to stop" not in seen:
        line = live.stderr.readline()
        assert line, f"wscap live ended early: {seen}"
        seen += line
    assert "dst port 8472" in seen                     # the default filter lets the tunnel in
    time.sleep(1.0)                                    # the capture backend settles
    client = subprocess.run(["ip", "netns", "exec", b, sys.executable, "-c", CLIENT],
                            capture_output=True, text=True, timeout=120)
    assert client.returncode == 0, client.stderr
    out, err = live.communicate(timeout=60)
    objs = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
    hs = [o["handshake"] for o in objs if o["type"] == "handshake"]
    chains = [o["chain"] for o in objs if o["type"] == "chain"]
    assert len(hs) == 1 and hs[0]["tunnel"][0]["type"] == "vxlan" and hs[0]["tunnel"][0]["vni"] == VNI
    assert hs[0]["tunnel"][0]["port"] == 8472 and hs[0]["server"] == f"{OVER_A}:{PORT}"
    assert [c["verdict"]["cause"] for c in chains] == ["ok"]

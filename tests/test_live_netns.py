"""End-to-end `wscap live` on a Docker-like bridge with a real WebSocket proxy chain.

Root only (skipped elsewhere with the reason). tests/netns.py builds, inside
namespaces of its own, a br-<12 hex> bridge with client, proxy and backend
namespaces on veth pairs (10.213.N.x, nowhere else). The backend is a
`websockets` echo server (/forbidden answers 403), the proxy a hand-rolled
asyncio reverse proxy (/closed goes to a closed backend port → refused → 502).

`python -m wscap live` runs as a subprocess on the bridge, streams JSON lines;
the test drives a healthy handshake and the two failing ones, checks what was
streamed, stops wscap with SIGINT or SIGTERM, and re-analyses the `--write`
capture with the same Pipeline to check it reaches the same verdicts.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from netns import Lab, Live, drive, live_skip_reason, reanalyse, start_ws_servers  # noqa: E402

_why = live_skip_reason()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.slow, pytest.mark.live]


@pytest.fixture(scope="module")
def lab():
    with Lab() as lab:
        start_ws_servers(lab)
        yield lab


def hs_key(h: dict) -> tuple:
    # Not last_frame/last_ts: a streamed handshake is the state when it was decided
    # (e.g. at its 101); the connection goes on afterwards.
    return (h["id"], h["client"], h["server"], (h.get("request") or {}).get("target"),
            h["outcome"], h["status"], h["first_frame"], (h.get("request") or {}).get("frame"),
            (h.get("response") or {}).get("frame"), (h.get("response") or {}).get("ts"))


CASES = [("tcpdump", signal.SIGINT, "pcap"), ("scapy", signal.SIGTERM, "pcapng"),
         ("tcpdump", signal.SIGTERM, "pcapng"), ("scapy", signal.SIGINT, "pcap")]


@pytest.mark.parametrize("backend,sig,ext", CASES, ids=[f"{b}-{s.name}-{e}" for b, s, e in CASES])
def test_live_verdicts_and_rewrite(lab, tmp_path, backend, sig, ext):
    if backend == "tcpdump" and not shutil.which("tcpdump"):
        pytest.skip("tcpdump not installed")
    out = str(tmp_path / f"live.{ext}")
    names = tmp_path / "hosts"
    names.write_text("".join(f"{lab.ip(h)} lab-{h}\n" for h in lab.hosts))
    live = Live(lab, "--backend", backend, "--format", "json", "--write", out, "--timeout", "1",
                "--names", str(names), "--no-docker")
    try:
        live.wait_stderr("Ctrl-C to stop")
        assert drive(lab) == {"/ws": "101", "/forbidden": "403", "/closed": "502"}

        def n_handshakes(lines):
            return sum(1 for ln in lines if '"type":"handshake"' in ln)
        live.collect(lambda lines: n_handshakes(lines) >= 5, timeout=20)
        time.sleep(1.5)  # --timeout 1: chains decided by ticks, without new packets
        rc = live.stop(sig)
    finally:
        if live.p.poll() is None:
            live.p.kill()
            live.p.wait()

    objs = [json.loads(ln) for ln in live.out]
    hss = [o["handshake"] for o in objs if o["type"] == "handshake"]
    chains = [o["chain"] for o in objs if o["type"] == "chain"]
    summary = [o for o in objs if o["type"] == "summary"]
    assert len(summary) == 1 and objs[-1]["type"] == "summary", live.out[-3:]
    s = summary[0]
    assert s["live"]["ended"] == sig.name
    assert s["live"]["backend"] == backend
    assert s["live"]["dropped"] == 0
    assert rc == 1, live.err  # two broken chains

    # What was streamed, handshake by handshake
    seen = sorted((h["server"].endswith(":8000"), h["request"]["target"], h["outcome"], h["status"])
                  for h in hss if h.get("request"))
    # The proxy's refused connection to the closed port has no request; it is streamed
    # (if at all) as the missing hop of its chain.
    attempts = [h for h in hss if not h.get("request")]
    assert all(h["outcome"] == "refused" and h["server"].endswith(":9999") for h in attempts), attempts
    assert seen == sorted([
        (True, "/ws", "upgraded", 101), (False, "/ws", "upgraded", 101),
        (True, "/forbidden", "rejected", 403), (False, "/forbidden", "rejected", 403),
        (True, "/closed", "rejected", 502)])
    assert s["summary"]["handshakes"] >= 5 and s["summary"]["chains"] == 3
    assert s["summary"]["broken"] == 2 and s["summary"]["by_cause"].get("ok") == 1
    causes = sorted(c for c in s["summary"]["by_cause"] if c != "ok")
    assert any("refus" in c for c in causes) and any("reject" in c for c in causes), causes
    names_seen = {e["ip"]: e["name"] for e in s["endpoints"]}
    assert names_seen.get(lab.ip("backend")) == "lab-backend", s["endpoints"]

    # The written capture: complete, every captured packet, same verdicts.
    w = s["live"]["write"]
    assert w["error"] is None and w["packets"] == s["live"]["packets"]
    doc = reanalyse([out], 1.0)
    assert doc["_read"][0]["complete"] and doc["_read"][0]["packets"] == s["live"]["packets"]
    assert doc["summary"] == s["summary"]
    assert {hs_key(h) for h in hss} == {hs_key(h) for h in doc["handshakes"]}
    assert len(chains) == 3

    def ckey(c):
        return (tuple(c["hops"]), c["verdict"]["cause"], c["verdict"]["hop"], c["verdict"]["broken"])
    assert sorted(map(ckey, chains)) == sorted(map(ckey, doc["chains"]))


def test_live_text_output(lab, tmp_path):
    live = Live(lab, "--format", "text", "--timeout", "1", "--no-docker")
    try:
        live.wait_stderr("Ctrl-C to stop")
        drive(lab)
        live.collect(lambda lines: sum("/closed" in ln for ln in lines) >= 1, timeout=20)
        time.sleep(1.5)
        rc = live.stop(signal.SIGINT)
    finally:
        if live.p.poll() is None:
            live.p.kill()
            live.p.wait()
    text = "\n".join(live.out)
    assert "/forbidden" in text and "403" in text and "101" in text
    err = "\n".join(live.err)
    assert "packets captured" in err and "dropped by kernel" in err and "ended: SIGINT" in err
    assert rc == 1


@pytest.mark.parametrize("how", ["count", "duration", "ring"])
def test_live_ends_by_itself_with_complete_file(lab, tmp_path, how):
    out = str(tmp_path / "cap.pcapng")
    args = {"count": ["--count", "20"], "duration": ["--duration", "3"],
            "ring": ["--duration", "4", "--ring-files", "3", "--ring-size", "0.002"]}[how]
    live = Live(lab, "--format", "json", "--write", out, "--timeout", "1", "--no-docker", *args)
    try:
        live.wait_stderr("Ctrl-C to stop")
        drive(lab)
        rc = live.p.wait(timeout=30)
    finally:
        if live.p.poll() is None:
            live.p.kill()
            live.p.wait()
    time.sleep(0.2)
    live.collect(lambda ls: False, timeout=0.5)
    s = json.loads(live.out[-1])
    assert s["type"] == "summary" and rc in (0, 1)
    w = s["live"]["write"]
    if how == "count":
        assert s["live"]["ended"] == "--count 20 reached" and s["live"]["packets"] == 20
    else:
        assert s["live"]["ended"].startswith("--duration")
    files = w["files"]
    if how == "ring":
        assert len(files) == 3 and all(os.path.getsize(f) <= 2000 for f in files)
        assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(f) for f in files)
    else:
        assert files == [out] and w["packets"] == s["live"]["packets"]
    doc = reanalyse(files, 1.0)
    assert all(r["complete"] for r in doc["_read"])
    if how != "ring":
        assert sum(r["packets"] for r in doc["_read"]) == s["live"]["packets"]


@pytest.mark.parametrize("backend", ["tcpdump", "scapy"])
def test_live_any_inside_proxy_namespace(lab, tmp_path, backend):
    """--netns of the proxy with the default `any` interface: SLL2 frames, both legs seen."""
    if backend == "tcpdump" and not shutil.which("tcpdump"):
        pytest.skip("tcpdump not installed")
    out = str(tmp_path / "any.pcap")
    live = Live(None, "--netns", lab.netns_path("proxy"), "--backend", backend, "--format", "json",
                "--timeout", "1", "--no-docker", "--write", out)
    try:
        live.wait_stderr("Ctrl-C to stop")
        assert drive(lab)["/ws"] == "101"
        live.collect(lambda ls: sum('"type":"chain"' in x for x in ls) >= 3, timeout=20)
        rc = live.stop(signal.SIGINT)
    finally:
        if live.p.poll() is None:
            live.p.kill()
            live.p.wait()
    objs = [json.loads(x) for x in live.out]
    s = objs[-1]
    assert s["type"] == "summary" and s["live"]["iface"] == "any" and rc == 1
    assert s["summary"]["chains"] == 3 and s["summary"]["by_cause"].get("ok") == 1
    doc = reanalyse([out], 1.0)
    assert doc["_read"][0]["linktypes"] == [276]  # LINUX_SLL2
    assert doc["summary"] == s["summary"]

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
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from netns import Lab, can_make_netns, wait_port, wscap_argv, wscap_env  # noqa: E402

NETNS_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netns.py")


def _skip_reason() -> str | None:
    ok, why = can_make_netns()
    if not ok:
        return why
    try:
        import websockets  # noqa: F401
    except ImportError:
        return "needs the `websockets` package for the lab backend (pip install websockets)"
    try:
        from wscap.pipeline import Pipeline  # noqa: F401
    except ImportError as e:
        return f"wscap.pipeline not importable yet: {e}"
    return None


_why = _skip_reason()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.slow]


@pytest.fixture(scope="module")
def lab():
    with Lab() as lab:
        lab.spawn("backend", sys.executable, NETNS_PY, "backend", "8080")
        lab.spawn("proxy", sys.executable, NETNS_PY, "proxy", "8000",
                  f"/closed={lab.ip('backend')}:9999", f"/={lab.ip('backend')}:8080")
        wait_port(lab, "backend", 8080)
        wait_port(lab, "proxy", 8000)
        yield lab


class Live:
    """A running `wscap live` subprocess whose stdout lines are collected by a thread."""

    def __init__(self, lab: Lab, *args: str):
        self.p = subprocess.Popen(
            wscap_argv("live", "--netns", lab.netns_path(), "--iface", lab.bridge, *args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=wscap_env(),
            start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._pump, args=(self.p.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.p.stderr, self.err.append), daemon=True).start()
        self.out: list[str] = []

    @staticmethod
    def _pump(f, put) -> None:
        for line in f:
            put(line.rstrip("\n"))

    def wait_stderr(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in e for e in self.err):
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"wscap never said {text!r}; stderr: {self.err}")

    def collect(self, until, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(self.out):
            try:
                self.out.append(self.lines.get(timeout=0.1))
            except queue.Empty:
                if self.p.poll() is not None:
                    break
        return self.out

    def stop(self, sig: int, timeout: float = 30) -> int:
        os.kill(self.p.pid, sig)
        rc = self.p.wait(timeout=timeout)
        time.sleep(0.2)  # let the pump threads finish
        while not self.lines.empty():
            self.out.append(self.lines.get())
        return rc


def drive(lab: Lab) -> dict[str, str]:
    got = {}
    for path in ("/ws", "/forbidden", "/closed"):
        r = lab.run("client", sys.executable, NETNS_PY, "client", f"ws://{lab.ip('proxy')}:8000{path}", "2",
                    timeout=30)
        got[path] = r.stdout.strip()
    return got


def hs_key(h: dict) -> tuple:
    return (h["client"].rsplit(":", 1)[0], h["server"], (h.get("request") or {}).get("target"),
            h["outcome"], h["status"], h["first_frame"])


def reanalyse(paths: list[str], timeout_s: float) -> dict:
    from wscap.capture.files import ReadResult, read_frames
    from wscap.pipeline import Options, Pipeline
    p = Pipeline(Options(timeout_s=timeout_s))
    results = []
    for i, path in enumerate(paths):
        res = ReadResult(path)
        for f in read_frames(path, res, source=0):
            p.feed(f)
        results.append(res)
    p.finish()
    doc = p.document()
    doc["_read"] = [r.to_json() for r in results]
    return doc


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
                  for h in hss)
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
    re_hs = {hs_key(h) for h in doc["handshakes"] if h.get("request")}
    assert {hs_key(h) for h in hss} == re_hs
    if not chains:
        pytest.xfail("the pipeline does not stream chain verdicts yet (no 'chain' events from "
                     "Pipeline.tick/finish); summary and re-analysis agree")
    assert len(chains) == 3
    assert sorted(c["verdict"]["cause"] for c in chains) == sorted(c["verdict"]["cause"] for c in doc["chains"])


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

"""Live faults (issue #8): what is kept when capture ends badly.

Root only (network namespaces; a 1 MiB tmpfs for the disk-full case). Each
test asserts what survives: the written capture is readable to its last
complete record and holds exactly the packets wscap says it wrote, and the
summary is printed.

* the interface disappears mid-capture (bridge deleted);
* the disk fills up under --write (tmpfs size=1m): reported, the file is kept
  whole, analysis goes on (a handshake after the disk filled is still printed);
* SIGINT / SIGTERM under heavy load (connection storm + bulk): bounded exit
  time, everything captured is in the file.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from netns import Lab, Live, drive, live_skip_reason, reanalyse, start_ws_servers  # noqa: E402

_SELF_NETNS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netns.py")
_why = live_skip_reason()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.slow, pytest.mark.live]
from wscap.capture.evidence import helper_available  # noqa: E402

BACKENDS = [b for b in ("wscap-capture", "tcpdump", "scapy")
            if (b != "tcpdump" or shutil.which("tcpdump")) and (b != "wscap-capture" or helper_available()[0])]
FOLLOWED = ("wscap-capture", "tcpdump")   # the C writer writes the file; the analysis reads it


def _finish(live: Live, timeout: float = 30) -> int:
    try:
        return live.p.wait(timeout=timeout)
    finally:
        if live.p.poll() is None:
            live.p.kill()
            live.p.wait()
        time.sleep(0.2)
        while not live.lines.empty():
            live.out.append(live.lines.get())


def _summary(live: Live) -> dict:
    objs = [json.loads(ln) for ln in live.out if ln.startswith("{")]
    s = [o for o in objs if o["type"] == "summary"]
    assert len(s) == 1, (live.out[-3:], live.err[-5:])
    return s[0]


def _check_file(path: str, summary: dict) -> dict:
    """The capture must read cleanly to its end and hold what wscap says it wrote."""
    doc = reanalyse([path], 1.0)
    r = doc["_read"][0]
    assert r["complete"], r["errors"]
    assert r["packets"] == summary["live"]["write"]["packets"]
    if shutil.which("tshark"):
        t = subprocess.run(["tshark", "-r", path, "-T", "fields", "-e", "frame.number"],
                           capture_output=True, text=True, timeout=120)
        assert t.returncode == 0, t.stderr
        assert len(t.stdout.split()) == r["packets"]
    return doc


@pytest.mark.parametrize("backend", BACKENDS)
def test_interface_removed_mid_capture(tmp_path, backend):
    out = str(tmp_path / "gone.pcap")
    with Lab() as lab:
        start_ws_servers(lab)
        live = Live(lab, "--backend", backend, "--format", "json", "--write", out, "--timeout", "1",
                    "--no-docker")
        live.wait_stderr("Ctrl-C to stop")
        drive(lab)
        live.collect(lambda ls: sum('"type":"handshake"' in x for x in ls) >= 5, timeout=20)
        # What `docker compose down` / a removed network does to the bridge:
        subprocess.run(["ip", "-n", lab.lab_ns, "link", "del", lab.bridge], check=True)
        rc = _finish(live)
    s = _summary(live)
    assert s["live"]["interface_gone"], s["live"]
    assert "went away" in s["live"]["ended"]
    assert any("interface went away" in e for e in live.err), live.err
    assert rc in (0, 1)  # verdict-based exit, not a crash
    doc = _check_file(out, s)
    assert doc["summary"] == s["summary"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bridge_down_and_up_again(tmp_path, backend):
    """A bridge that goes down and comes back (a Compose network restarting): capture goes on."""
    out = str(tmp_path / "bounce.pcap")
    with Lab() as lab:
        start_ws_servers(lab)
        live = Live(lab, "--backend", backend, "--format", "json", "--write", out, "--timeout", "1",
                    "--no-docker")
        try:
            live.wait_stderr("Ctrl-C to stop")
            drive(lab)
            live.collect(lambda ls: sum('"type":"handshake"' in x for x in ls) >= 5, timeout=20)
            ip = ["ip", "-n", lab.lab_ns, "link", "set", lab.bridge]
            subprocess.run([*ip, "down"], check=True)
            time.sleep(1)
            assert live.p.poll() is None, live.err
            subprocess.run([*ip, "up"], check=True)
            time.sleep(2)  # the bridge forwards again once its ports are back
            drive(lab)
            live.collect(lambda ls: sum('"type":"handshake"' in x for x in ls) >= 10, timeout=20)
            rc = live.stop(signal.SIGINT)
        finally:
            if live.p.poll() is None:
                live.p.kill()
                live.p.wait()
    s = _summary(live)
    assert s["live"]["ended"] == "SIGINT" and rc == 1
    assert sum('"type":"handshake"' in x for x in live.out) >= 10
    if backend == "scapy":
        assert any("went down" in e for e in live.err), live.err
    doc = _check_file(out, s)
    assert doc["summary"] == s["summary"]


@pytest.fixture
def small_tmpfs():
    d = tempfile.mkdtemp(prefix="wscap-tmpfs-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d], capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", d], check=False)
        os.rmdir(d)


@pytest.mark.parametrize("backend", BACKENDS)
def test_disk_full_keeps_file_and_analysis(small_tmpfs, backend):
    out = os.path.join(small_tmpfs, "full.pcap")
    with Lab() as lab:
        start_ws_servers(lab)
        lab.spawn("backend", sys.executable, _SELF_NETNS, "sink", "5001")
        from netns import wait_port
        wait_port(lab, "backend", 5001)
        live = Live(lab, "--backend", backend, "--format", "json", "--write", out, "--timeout", "1",
                    "--no-docker")
        try:
            live.wait_stderr("Ctrl-C to stop")
            # A handshake before the disk fills: it is in the file and analysed.
            assert drive(lab)["/forbidden"] == "403"
            time.sleep(0.5)
            # 3 MB through the bridge: the 1 MiB filesystem fills up.
            r = lab.run("client", sys.executable, _SELF_NETNS, "bulk", lab.ip("backend"), "5001", "3000000",
                        timeout=60)
            assert r.returncode == 0, r.stderr
            live.wait_stderr("disk full", timeout=20)
            if backend in FOLLOWED:
                # The evidence writer cannot write: the capture ends by itself, its file whole.
                rc = _finish(live, timeout=60)
            else:
                # The in-process writer stops writing; analysis goes on.
                assert drive(lab)["/forbidden"] == "403"
                live.collect(lambda ls: sum("/closed" in x for x in ls) >= 1, timeout=20)
                time.sleep(1.2)
                os.kill(live.p.pid, signal.SIGINT)
                rc = _finish(live)
        finally:
            if live.p.poll() is None:
                live.p.kill()
    s = _summary(live)
    w = s["live"]["write"]
    assert w["error"] and "disk full" in w["error"], w
    if backend in FOLLOWED:
        assert "writing stopped" in s["live"]["ended"], s["live"]
        assert s["live"]["packets"] == w["packets"] == s["live"]["read"]
    else:
        assert w["packets"] < s["live"]["packets"] and w["skipped"] > 0
    assert rc == 1
    hs = [json.loads(x)["handshake"] for x in live.out if '"type":"handshake"' in x]
    assert any((h.get("request") or {}).get("target") == "/forbidden" and h["status"] == 403 for h in hs)
    _check_file(out, s)
    assert os.path.getsize(out) <= 1024 * 1024


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_under_heavy_load(tmp_path, backend, sig):
    out = str(tmp_path / "load.pcap")
    with Lab() as lab:
        lab.spawn("backend", sys.executable, _SELF_NETNS, "sink", "5001")
        from netns import wait_port
        wait_port(lab, "backend", 5001)
        live = Live(lab, "--backend", backend, "--format", "json", "--write", out, "--no-docker")
        live.wait_stderr("Ctrl-C to stop")
        load = [lab.spawn("client", sys.executable, _SELF_NETNS, "storm", lab.ip("backend"), "5001", "20")
                for _ in range(2)]
        load.append(lab.spawn("client", sys.executable, _SELF_NETNS, "bulk", lab.ip("backend"), "5001",
                              "200000000"))
        time.sleep(3)
        t0 = time.monotonic()
        os.kill(live.p.pid, sig)
        rc = _finish(live, timeout=60)
        took = time.monotonic() - t0
        for p in load:
            lab.kill(p)
    s = _summary(live)
    assert s["live"]["ended"] == sig.name
    assert took < 30, f"took {took:.1f}s to stop under load"
    assert rc in (0, 1)
    assert s["live"]["packets"] > 1000
    assert s["live"]["write"]["error"] is None
    assert s["live"]["write"]["packets"] == s["live"]["packets"]
    _check_file(out, s)


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for tid in os.listdir(f"/proc/{p}/task") if os.path.exists(f"/proc/{p}/task") else []:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                kids = []
            out += kids
            todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b in FOLLOWED])
def test_sigkill_leaves_no_capture_behind(tmp_path, backend):
    """Even SIGKILL (no cleanup at all) must not leave a capture running; the file stays readable."""
    out = str(tmp_path / "killed.pcap")
    with Lab() as lab:
        start_ws_servers(lab)
        live = Live(lab, "--backend", backend, "--format", "json", "--write", out, "--no-docker")
        live.wait_stderr("Ctrl-C to stop")
        drive(lab)
        time.sleep(1.5)  # > the writers' buffer timeouts (tcpdump: 1 s)
        kids = _descendants(live.p.pid)
        assert kids, f"no {backend} under wscap"
        os.kill(live.p.pid, signal.SIGKILL)
        live.p.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.1)
        assert not any(_alive(k) for k in kids), f"{backend} outlived a SIGKILLed wscap"
    doc = reanalyse([out], 1.0)
    assert doc["_read"][0]["complete"] and doc["_read"][0]["packets"] > 20

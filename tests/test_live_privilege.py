"""Privilege drop: capture opened as root, then wscap (and tcpdump) run as the invoking user.

Root only. Simulates `sudo` by setting SUDO_UID/SUDO_GID=65534 (nobody) and
checks, while `wscap live` runs: its uid/gid are nobody's, tcpdump's too
(`-Z nobody`), the --write file is created by nobody, and analysis still works
after the drop. `--user` does the same without sudo.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from netns import Lab, Live, drive, live_skip_reason, start_ws_servers, wscap_env  # noqa: E402

_why = live_skip_reason()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.slow, pytest.mark.live]
BACKENDS = [b for b in ("wscap-capture", "tcpdump", "scapy") if b != "tcpdump" or shutil.which("tcpdump")]


def _uids(pid: int) -> tuple[list[int], list[int]]:
    with open(f"/proc/{pid}/status") as f:
        st = dict(line.split(":", 1) for line in f if ":" in line)
    return [int(x) for x in st["Uid"].split()], [int(x) for x in st["Gid"].split()]


def _children(pid: int) -> list[int]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


@pytest.fixture
def shared_dir():
    d = tempfile.mkdtemp(prefix="wscap-priv-", dir="/tmp")
    os.chmod(d, 0o1777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("how", ["sudo", "--user"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_drops_to_invoking_user(shared_dir, backend, how):
    out = os.path.join(shared_dir, "priv.pcap")
    with Lab() as lab:
        start_ws_servers(lab)
        extra = ["--user", "nobody"] if how == "--user" else []
        env = wscap_env(**({"SUDO_UID": "65534", "SUDO_GID": "65534", "SUDO_USER": "nobody"}
                           if how == "sudo" else {}))
        live = Live(lab, "--backend", backend, "--format", "json", "--write", out, "--timeout", "1",
                    "--no-docker", *extra, env=env)
        try:
            live.wait_stderr("Ctrl-C to stop")
            time.sleep(0.3)
            uid, gid = _uids(live.p.pid)
            assert uid == [65534] * 4 and gid == [65534] * 4, (uid, gid)
            if backend == "tcpdump":
                # wscap → guard → tcpdump: both run as the invoking user
                kids = _children(live.p.pid)
                kids += [g for k in kids for g in _children(k)]
                assert len(kids) == 2, kids
                deadline = time.monotonic() + 3  # the guard follows tcpdump's switch
                while time.monotonic() < deadline and not all(_uids(k)[0] == [65534] * 4 for k in kids):
                    time.sleep(0.05)
                assert all(_uids(k)[0] == [65534] * 4 for k in kids), [_uids(k) for k in kids]
            if backend == "wscap-capture":
                # the C writer opens the capture as root, then becomes the invoking user
                # before it creates the file
                kids = _children(live.p.pid)
                assert len(kids) == 1, kids
                assert _uids(kids[0])[0] == [65534] * 4, _uids(kids[0])
            drive(lab)
            live.collect(lambda ls: sum('"type":"handshake"' in x for x in ls) >= 5, timeout=20)
            time.sleep(1.2)
            rc = live.stop(signal.SIGINT)
        finally:
            if live.p.poll() is None:
                live.p.kill()
                live.p.wait()
    assert rc == 1, live.err
    assert os.stat(out).st_uid == 65534
    s = json.loads(live.out[-1])
    assert s["type"] == "summary" and s["live"]["write"]["packets"] == s["live"]["packets"] > 0
    assert s["summary"]["handshakes"] >= 5

"""Container names from a real Docker Engine (issue #4 items 6–8).

Root only, and only where dockerd can run (Debian's docker.io; skipped with
the reason otherwise). Everything happens inside a network namespace of our
own: dockerd runs there (`ip netns exec`, --bridge=none, no iptables), with a
private data root and socket, so the only bridge it makes is the `--internal`
network we create on 10.213.250.0/24. The image is `docker import`ed from a
busybox rootfs built here (no registry is reachable).

Checks: `wscap ifaces` marks the br-<12 hex> bridge with its network and
containers; `wscap live` on that bridge labels endpoints with container names;
`wscap live --container NAME` captures inside the container (`any` → SLL2).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import compose_engine as ce  # noqa: E402
from netns import Live, wscap_argv, wscap_env  # noqa: E402

_why = ce.skip_reason()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.slow, pytest.mark.live]


class Engine(ce.EngineProcess):
    """dockerd inside its own network namespace, with private state (tests/compose_engine.py's
    process handling; here no default bridge, the test makes its `--internal` network)."""

    cli_timeout = 120

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="wscap-docker-")
        super().__init__(f"wscdock{os.getpid()}", os.path.join(self.tmp, "docker.sock"))
        self.log = os.path.join(self.tmp, "dockerd.log")

    def start(self) -> str | None:
        return self.new_netns() or self.launch(
            [ce.DOCKERD, "--host", f"unix://{self.sock}",
             "--data-root", os.path.join(self.tmp, "data"), "--exec-root", os.path.join(self.tmp, "exec"),
             "--pidfile", os.path.join(self.tmp, "dockerd.pid"), "--bridge", "none",
             "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--storage-driver", "vfs",
             "--userland-proxy=false"], self.log, 40)

    def stop(self) -> None:
        self.stop_process()
        ce.unmount_under(self.tmp)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def engine():
    e = Engine()
    try:
        why = e.start()
        if why:
            pytest.skip(why)
        r = e.cli("import", "-", "wscap-busybox:test",
                  input=ce.busybox_tar(("sh", "httpd", "wget", "sleep", "nc", "echo", "cat", "printf")))
        if r.returncode != 0:
            pytest.skip(f"docker import failed: {r.stderr.decode(errors='replace').strip()}")
        r = e.cli("network", "create", "--internal", "--subnet", "10.213.250.0/24", "wsnet")
        if r.returncode != 0:
            pytest.skip(f"docker network create failed: {r.stderr.decode(errors='replace').strip()}")
        for name, cmd in (("ws-backend", ["httpd", "-f", "-p", "8080", "-h", "/www"]),
                          ("ws-client", ["sleep", "600"])):
            r = e.cli("run", "-d", "--name", name, "--network", "wsnet", "wscap-busybox:test", *cmd)
            if r.returncode != 0:
                pytest.skip(f"docker run failed here: {r.stderr.decode(errors='replace').strip()[-300:]}")
        yield e
    finally:
        e.stop()


def _bridge(e: Engine) -> str:
    net = json.loads(e.cli("network", "inspect", "wsnet").stdout)[0]
    return "br-" + net["Id"][:12]


def _env(e: Engine) -> dict:
    return wscap_env(WSCAP_DOCKER_SOCK=e.sock)


def test_ifaces_names_network_and_containers(engine):
    r = subprocess.run(wscap_argv("ifaces", "--netns", f"/run/netns/{engine.ns}", "--format", "json"),
                       capture_output=True, text=True, env=_env(engine), timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    br = next(i for i in doc["interfaces"] if i["name"] == _bridge(engine))
    assert br["docker"] and br["kind"] == "bridge"
    assert br["network"] == "wsnet"
    assert br["containers"] == ["ws-backend", "ws-client"]
    assert len(br["ports"]) == 2
    ports = {i["name"]: i for i in doc["interfaces"] if i["name"] in br["ports"]}
    assert sorted(p["container"] for p in ports.values()) == ["ws-backend", "ws-client"]
    r = subprocess.run(wscap_argv("ifaces", "--netns", f"/run/netns/{engine.ns}"),
                       capture_output=True, text=True, env=_env(engine), timeout=60)
    assert "[docker]" in r.stdout and "network: wsnet; containers: ws-backend, ws-client" in r.stdout
    assert "→ container ws-backend" in r.stdout
    r = subprocess.run(wscap_argv("ifaces", "--container", "ws-client"), capture_output=True, text=True,
                       env=_env(engine), timeout=60)
    assert r.returncode == 0 and "eth0" in r.stdout and "10.213.250." in r.stdout, r.stderr


def _upgrade(e: Engine) -> None:
    """An upgrade request from ws-client to ws-backend (busybox httpd: 200, not 101 → rejected).

    With nc and a literal request: a static busybox's wget crashes in glibc's NSS here.
    """
    req = ("GET /index.html HTTP/1.1\\r\\nHost: ws-backend:8080\\r\\nUpgrade: websocket\\r\\n"
           "Connection: Upgrade\\r\\nSec-WebSocket-Version: 13\\r\\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n\\r\\n")
    r = e.cli("exec", "ws-client", "sh", "-c",
              f"printf '{req}' | nc -w 3 {_ip(e, 'ws-backend')} 8080")
    assert r.returncode == 0 and b"HTTP/1." in r.stdout, (r.returncode, r.stdout[:200], r.stderr[:200])


def _ip(e: Engine, name: str) -> str:
    info = json.loads(e.cli("inspect", name).stdout)[0]
    return info["NetworkSettings"]["Networks"]["wsnet"]["IPAddress"]


def _run_live(e: Engine, *args: str) -> Live:
    return Live(None, *args, env=_env(e))


def _names_by_ip(e: Engine) -> dict[str, str]:
    res = {}
    for n in ("ws-backend", "ws-client"):
        info = json.loads(e.cli("inspect", n).stdout)[0]
        res[info["NetworkSettings"]["Networks"]["wsnet"]["IPAddress"]] = n
    return res


def test_live_on_bridge_labels_containers(engine):
    live = _run_live(engine, "--netns", f"/run/netns/{engine.ns}", "--iface", _bridge(engine),
                     "--format", "json", "--timeout", "1")
    try:
        live.wait_stderr("Ctrl-C to stop")
        _upgrade(engine)
        live.collect(lambda ls: any('"type":"handshake"' in x for x in ls), timeout=20)
        live.stop(signal.SIGINT)
    finally:
        if live.p.poll() is None:
            live.p.kill()
    s = json.loads(live.out[-1])
    names = {ep["ip"]: ep["name"] for ep in s["endpoints"]}
    want = _names_by_ip(engine)
    assert {ip: names.get(ip) for ip in want} == want


def test_live_inside_container(engine):
    live = _run_live(engine, "--container", "ws-backend", "--format", "json", "--timeout", "1",
                     "--write", os.path.join(engine.tmp, "inside.pcap"))
    try:
        live.wait_stderr("Ctrl-C to stop")
        _upgrade(engine)
        live.collect(lambda ls: any('"type":"handshake"' in x for x in ls), timeout=20)
        live.stop(signal.SIGTERM)
    finally:
        if live.p.poll() is None:
            live.p.kill()
    hs = [json.loads(x)["handshake"] for x in live.out if '"type":"handshake"' in x]
    assert hs and hs[0]["request"]["target"] == "/index.html"
    s = json.loads(live.out[-1])
    assert s["live"]["iface"] == "any" and s["live"]["container"] == "ws-backend"
    from wscap.capture.files import ReadResult, read_frames
    res = ReadResult(os.path.join(engine.tmp, "inside.pcap"))
    frames = list(read_frames(res.path, res))
    assert res.complete and frames and frames[0].linktype == 276  # LINUX_SLL2

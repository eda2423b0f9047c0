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

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from netns import Live, sh, wscap_argv, wscap_env  # noqa: E402

DOCKERD = shutil.which("dockerd")
BUSYBOX = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.exists(p)), None)


def _skip() -> str | None:
    if os.geteuid() != 0:
        return "needs root to run dockerd"
    if not DOCKERD:
        return "dockerd not installed (apt-get install docker.io)"
    if not BUSYBOX:
        return "busybox not installed (apt-get install busybox-static) for the test image"
    if not shutil.which("ip") or not shutil.which("nsenter"):
        return "needs iproute2 and nsenter (util-linux)"
    return None


_why = _skip()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.slow, pytest.mark.live]


def _busybox_tar() -> bytes:
    """A minimal rootfs: static busybox plus the applet links we use."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for d in ("bin", "tmp", "www", "etc", "proc", "sys", "dev"):
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o1777 if d == "tmp" else 0o755
            t.addfile(ti)
        t.add(BUSYBOX, "bin/busybox")
        for app in ("sh", "httpd", "wget", "sleep", "nc", "echo", "cat", "printf"):
            ti = tarfile.TarInfo(f"bin/{app}")
            ti.type = tarfile.SYMTYPE
            ti.linkname = "busybox"
            t.addfile(ti)
        page = b"hello\n"
        ti = tarfile.TarInfo("www/index.html")
        ti.size = len(page)
        t.addfile(ti, io.BytesIO(page))
    return buf.getvalue()


class Engine:
    """dockerd inside its own network namespace, with private state."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="wscap-docker-")
        self.ns = f"wscdock{os.getpid()}"
        self.sock = os.path.join(self.tmp, "docker.sock")
        self.proc: subprocess.Popen | None = None
        self.log = os.path.join(self.tmp, "dockerd.log")
        self.docker = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")

    def start(self) -> str | None:
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                # nsenter, not `ip netns exec`: only the network namespace changes, so
                # dockerd keeps seeing the host's cgroup mounts under /sys/fs/cgroup.
                ["nsenter", f"--net=/run/netns/{self.ns}", DOCKERD, "--host", f"unix://{self.sock}",
                 "--data-root", os.path.join(self.tmp, "data"), "--exec-root", os.path.join(self.tmp, "exec"),
                 "--pidfile", os.path.join(self.tmp, "dockerd.pid"), "--bridge", "none",
                 "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--storage-driver", "vfs",
                 "--userland-proxy=false"],
                stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if os.path.exists(self.sock) and self.cli("version").returncode == 0:
                return None
            time.sleep(0.3)
        with open(self.log, errors="replace") as f:
            tail = f.read()[-800:]
        return f"dockerd did not start here: {tail.strip().splitlines()[-1] if tail.strip() else 'no output'}"

    def cli(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([self.docker, "-H", f"unix://{self.sock}", *args], capture_output=True,
                              timeout=120, **kw)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            for c in self.cli("ps", "-aq").stdout.split():
                self.cli("rm", "-f", c.decode())
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        # vfs layers may hold mounts under exec-root/data-root: unmount before removing.
        mounts = [ln.split()[1] for ln in open("/proc/mounts") if self.tmp in ln]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def engine():
    e = Engine()
    try:
        why = e.start()
        if why:
            pytest.skip(why)
        r = e.cli("import", "-", "wscap-busybox:test", input=_busybox_tar())
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

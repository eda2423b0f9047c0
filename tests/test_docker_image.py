"""The wscap container image and the Compose snippet, built and run for real (issue 15).

Root only, where dockerd runs (tests/compose_engine.py: netns `wscapcmp`, private data
root; skipped with the reason otherwise). scripts/docker/build-image builds the image
offline (base imported from this machine's files, then docker/Dockerfile); then a
Compose project (docker-compose, from a compose.yml written here plus
docker/compose.wscap.yml) runs `vite` (busybox httpd), `client`, and both wscap
variants: host network (default bridges, names through the read-only socket) and
`network_mode: service:vite` (`--iface any` inside vite's namespace). One upgrade
request client → vite must appear in both, with container names, and in the
pcapng files they wrote to the volume, which the image's own `analyze` reads.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import compose_engine as ce  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPOSE = shutil.which("docker-compose")
TAG = "wscap:local"          # the name docker/compose.wscap.yml uses (this dockerd is private)
PROJECT = "wsdemo"
SUBNET = "10.77.9.0/24"


def _skip() -> str | None:
    why = ce.skip_reason()
    if why:
        return why
    if not COMPOSE:
        return "docker-compose not installed (apt-get install docker-compose)"
    if not shutil.which("tcpdump"):
        return "tcpdump not installed: the image's capture backend is copied from the host"
    return None


_why = _skip()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.slow, pytest.mark.live]

USER_COMPOSE = f"""\
services:
  vite:
    image: wscmp-busybox:test
    command: ["httpd", "-f", "-p", "5173", "-h", "/www"]
  client:
    image: wscmp-busybox:test
    command: ["sleep", "600"]
networks:
  default:
    ipam:
      config:
        - subnet: {SUBNET}
"""

UPGRADE = ("GET /index.html HTTP/1.1\\r\\nHost: vite:5173\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
           "Sec-WebSocket-Version: 13\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n\\r\\n")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    d = tmp_path_factory.mktemp("compose")
    e = ce.Engine()
    # DOCKER_SOCK: the snippet mounts it (default /var/run/docker.sock, which does not exist for
    # this private dockerd: docker would create an empty directory there).
    env = {**os.environ, "DOCKER_HOST": f"unix://{ce.SOCK}", "DOCKER": ce.DOCKER, "COMPOSE_PROJECT_NAME": PROJECT,
           "DOCKER_SOCK": ce.SOCK}
    env.pop("PYTHONPATH", None)
    files = ["-f", str(d / "compose.yml"), "-f", os.path.join(REPO, "docker", "compose.wscap.yml")]

    def compose(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([COMPOSE, "--project-directory", str(d), *files, *args], capture_output=True,
                              text=True, env=env, timeout=timeout, cwd=str(d))
    try:
        why = e.start()
        if why:
            pytest.skip(why)
        e.import_busybox()
        t0 = time.monotonic()
        r = subprocess.run([os.path.join(REPO, "scripts", "docker", "build-image"), TAG], capture_output=True,
                           text=True, env=env, timeout=400)
        assert r.returncode == 0, r.stderr[-2000:]
        build_s = time.monotonic() - t0
        (d / "compose.yml").write_text(USER_COMPOSE)
        yield e, compose, d, build_s
    finally:
        try:
            if (d / "compose.yml").exists():
                compose("--profile", "vite", "down", "-v", "-t", "5")
        finally:
            e.stop()


def test_image_built_offline_from_local_base(stack):
    e, _compose, _d, build_s = stack
    hist = e.ok("history", "--format", "{{.CreatedBy}}", TAG)
    assert "COPY" in hist or "copy" in hist.lower()
    base = json.loads(e.ok("image", "inspect", "wscap-base:local"))[0]
    assert "from local files" in (base.get("Comment") or "")
    r = e.cli("run", "--rm", TAG, "--version", text=True)
    assert r.returncode == 0 and "wscap, version" in r.stdout, r.stderr
    r = e.cli("run", "--rm", "--entrypoint", "tcpdump", TAG, "--version", text=True)
    assert r.returncode == 0 and "libpcap" in (r.stdout + r.stderr), r.stderr
    print(f"image build took {build_s:.0f} s")


def _ip(e, name: str) -> str:
    info = json.loads(e.ok("inspect", name))[0]
    return next(iter(info["NetworkSettings"]["Networks"].values()))["IPAddress"]


def _logs(e, name: str) -> tuple[list[dict], str]:
    r = e.cli("logs", name, text=True)
    objs = []
    for ln in r.stdout.splitlines():
        try:
            objs.append(json.loads(ln))
        except ValueError:
            pass
    return objs, r.stderr


def _wait_log(e, name: str, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = e.cli("logs", name, text=True)
        if text in r.stderr or text in r.stdout:
            return
        time.sleep(0.5)
    r = e.cli("logs", name, text=True)
    raise AssertionError(f"{name} never said {text!r}: {r.stdout[-500:]} {r.stderr[-1500:]}")


def test_compose_snippet_host_and_sidecar(stack):
    e, compose, d, _ = stack
    r = compose("--profile", "vite", "up", "-d")
    assert r.returncode == 0, r.stderr[-2000:]
    names = {s: f"{PROJECT}_{s}_1" for s in ("vite", "client", "wscap", "wscap-vite")}
    for s in ("wscap", "wscap-vite"):
        _wait_log(e, names[s], "Ctrl-C to stop")
    time.sleep(1)
    vite_ip, client_ip = _ip(e, names["vite"]), _ip(e, names["client"])
    r = e.cli("exec", names["client"], "sh", "-c", f"printf '{UPGRADE}' | nc -w 3 {vite_ip} 5173", text=True)
    assert r.returncode == 0 and "HTTP/1." in r.stdout, (r.stdout, r.stderr)
    time.sleep(3)
    r = compose("--profile", "vite", "stop", "-t", "20", "wscap", "wscap-vite")
    assert r.returncode == 0, r.stderr
    net = json.loads(e.ok("network", "inspect", f"{PROJECT}_default"))[0]
    bridge = "br-" + net["Id"][:12]
    for s, iface in (("wscap", bridge), ("wscap-vite", "any")):
        objs, err = _logs(e, names[s])
        hs = [o["handshake"] for o in objs if o.get("type") == "handshake"]
        summ = next((o for o in objs if o.get("type") == "summary"), None)
        assert summ is not None, err[-1500:]
        assert summ["live"]["iface"] == iface, (s, summ["live"])
        assert [h["request"]["target"] for h in hs] == ["/index.html"], (s, err[-1500:], objs[-1])
        eps = {ep["ip"]: ep.get("name") for ep in summ["endpoints"]}
        assert eps.get(vite_ip) == names["vite"] and eps.get(client_ip) == names["client"], (s, eps)
    # the captures are in the volume; the image's own `analyze` reads them back
    vol = f"{PROJECT}_wscap-captures"
    for f in ("wscap.pcapng", "wscap-vite.pcapng"):
        r = e.cli("run", "--rm", "-v", f"{vol}:/captures", TAG, "analyze", f"/captures/{f}", "--format", "json",
                  text=True)
        assert r.returncode in (0, 1), r.stderr[-800:]
        doc = json.loads(r.stdout)
        assert [h["request"]["target"] for h in doc["handshakes"]] == ["/index.html"], f

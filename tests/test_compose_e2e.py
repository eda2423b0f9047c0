"""The Compose user's path, end to end, with real Docker (issue 15, Tests).

What runs (all of it inside network namespace `wscape2e`, nothing in the root
namespace's network):

* dockerd of our own (scripts/docker/dockerd-netns: own data root, exec root,
  pidfile and socket under /tmp/wscap-e2e, docker0 on 10.88.0.1/24);
* images `docker import`ed from local files (scripts/docker/build-images:
  static busybox, the host's node + the lab's Vite app and node_modules, the
  lab's Bun binary + its Bun.serve backend);
* the incident's stack as a Compose v1 project `meetsonar`
  (tests/compose/docker-compose.yml): service `vite` (Vite dev server,
  server.proxy['/ws'] -> http://meetsonar-backend:5000, ws, changeOrigin;
  port 5173 published) and service `meetsonar-backend` (Bun.serve or Node ws,
  Origin allow-list http://localhost:5173);
* headless Chromium in the engine's namespace (the "Docker host") loading
  http://localhost:5173/ and opening ws://localhost:5173/ws
  (scripts/docker/chromium-ws: the lab's page, read over the DevTools pipe);
* wscap from this checkout: `wscap live` with no --iface, names through
  DOCKER_HOST only, `--format json --write x.pcapng --duration N`; then
  `wscap analyze x.pcapng --format json` with no Docker reachable and no
  --names.

Scenarios: healthy (Bun, and Node ws), origin rewrite (Vite's
rewriteWsOrigin -> 403 from the backend), backend stopped (`docker-compose
stop meetsonar-backend`: Vite's lookup fails with EAI_AGAIN; captured with
`--container vite`, the Compose service name, to see the container's DNS),
backend refused (the backend container runs, nothing listens on 5000).

Expected values come from how each scenario is built (which service, which
header, which port, the addresses Docker gave the containers), never from
wscap's output. Skips with the reason when dockerd, docker-compose, Chromium
or the lab's node_modules are not usable here (`WSCAP_LAB_NODE_MODULES` can
point at a node_modules filled by scripts/lab/install elsewhere).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKER_DIR = os.path.join(REPO, "scripts", "docker")
COMPOSE_FILE = os.path.join(REPO, "tests", "compose", "docker-compose.yml")
ROOT = "/tmp/wscap-e2e"
NETNS = "wscape2e"
SOCK = f"{ROOT}/docker.sock"
DOCKER_HOST = f"unix://{SOCK}"
PROJECT = "meetsonar"
NETWORK = f"{PROJECT}_default"
PUBLISHED = 5173
BACKEND_PORT = 5000
PAGE_ORIGIN = f"http://localhost:{PUBLISHED}"            # the browser's Origin (page served by Vite)
PROXY_TARGET = f"http://meetsonar-backend:{BACKEND_PORT}"  # vite.config.js's server.proxy['/ws'].target
ECHO = "echo: hello from wscap lab"                        # scripts/lab/app/main.js + the backends
VITE_NAMES = {f"{PROJECT}_vite_1", f"{PROJECT}-vite-1", "vite"}
BACKEND_NAMES = {f"{PROJECT}_meetsonar-backend_1", f"{PROJECT}-meetsonar-backend-1", "meetsonar-backend"}


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespace, dockerd, packet capture)"
    for tool, pkg in (("dockerd", "docker.io"), ("docker", "docker.io"), ("docker-compose", "docker-compose"),
                      ("ip", "iproute2"), ("nsenter", "util-linux"), ("tcpdump", "tcpdump"),
                      ("chromium", "chromium"), ("node", "nodejs >= 20.19")):
        if not shutil.which(tool):
            return f"{tool} not installed (apt-get install {pkg})"
    return None


_why = _why_not()
pytestmark = [pytest.mark.docker, pytest.mark.slow,
              pytest.mark.skipif(_why is not None, reason=_why or "")]


# ---------------------------------------------------------------- the engine

def _docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    r = subprocess.run(["docker", "-H", DOCKER_HOST, *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {r.stderr.strip()[-500:]}")
    return r


def _script(name: str, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(DOCKER_DIR, name), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="session")
def engine():
    """dockerd in netns wscape2e, plus the images; stopped (by PID) and the netns removed at the end."""
    r = _script("dockerd-netns", "start", timeout=120)
    try:
        if r.returncode != 0:
            pytest.skip(f"dockerd cannot run here: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
        env = dict(os.environ, DOCKER_HOST=DOCKER_HOST)
        v = subprocess.run(["docker-compose", "version"], capture_output=True, text=True, env=env, timeout=60)
        if v.returncode != 0:
            pytest.skip(f"docker-compose cannot run here: {(v.stderr or v.stdout).strip()[-200:]}")
        b = _script("build-images", env=env, timeout=600)
        if b.returncode == 2:
            pytest.skip(f"cannot build the test images: {b.stderr.strip().splitlines()[-1]}")
        assert b.returncode == 0, b.stderr
        images = dict(line.split("=", 1) for line in b.stdout.split())
        with open(f"{ROOT}/dockerd.mode") as f:
            mode = f.read().strip()   # "iptables" here; "iptables=false" where the netns refuses it
        yield {"images": images, "iptables": mode}
    finally:
        _compose("down", "-t", "0", check=False)
        _script("dockerd-netns", "stop", timeout=120)


def _compose_env(**knobs: str) -> dict:
    env = dict(os.environ, DOCKER_HOST=DOCKER_HOST, COMPOSE_PROJECT_NAME=PROJECT)
    env.update(knobs)
    env.setdefault("E2E_NODE_IMAGE", "unset")
    env.setdefault("E2E_BACKEND_IMAGE", "unset")
    env.setdefault("E2E_BACKEND_CMD", "unset")
    return env


def _compose(*args: str, check: bool = True, **knobs: str) -> subprocess.CompletedProcess:
    r = subprocess.run(["docker-compose", "-f", COMPOSE_FILE, "-p", PROJECT, *args], capture_output=True,
                       text=True, env=_compose_env(**knobs), timeout=180)
    if check and r.returncode != 0:
        raise AssertionError(f"docker-compose {' '.join(args)}: {r.stderr.strip()[-800:]}")
    return r


def _in_netns(*argv: str) -> list[str]:
    return ["ip", "netns", "exec", NETNS, *argv]


def _wait_for(what: str, cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _logs(container: str) -> str:
    r = _docker("logs", container, check=False)
    return r.stdout + r.stderr


def _service_container(service: str) -> str:
    """The container Compose made for SERVICE (meetsonar_vite_1 with v1, found by its labels)."""
    r = _docker("ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}",
                "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}")
    names = r.stdout.split()
    assert len(names) == 1, f"service {service}: containers {names}"
    return names[0]


def _page_served() -> bool:
    """GET / through the published port from the engine's namespace (docker-proxy / NAT)."""
    code = (f"import urllib.request as u\n"
            f"print(u.urlopen('http://localhost:{PUBLISHED}/', timeout=3).status)")
    r = subprocess.run(_in_netns(sys.executable, "-c", code), capture_output=True, text=True, timeout=20)
    return r.stdout.strip() == "200"


# ---------------------------------------------------------------- scenarios

BUN = "bun /srv/bun-backend.ts"
NODE_WS = "node /lab/backends/ws-backend.mjs"

SCENARIOS = {
    # name: compose knobs, backend image, what the browser must see, the chain
    "healthy-bun": dict(backend="bun", cmd=BUN, port=BACKEND_PORT, hook="",
                        cause="ok", hop=None, statuses=[101, 101]),
    "healthy-ws": dict(backend="node", cmd=NODE_WS, port=BACKEND_PORT, hook="",
                       cause="ok", hop=None, statuses=[101, 101]),
    # Vite's rewriteWsOrigin (with changeOrigin) sets Origin to the proxy target;
    # the backend allows only the page's origin and answers 403, Vite relays it.
    "origin-rewrite": dict(backend="bun", cmd=BUN, port=BACKEND_PORT, hook="origin-rewrite-option",
                           cause="origin-rejected", hop=1, statuses=[403, 403]),
    # The backend container runs but listens on another port: Vite's connect to :5000 is refused.
    "backend-refused": dict(backend="node", cmd=NODE_WS, port=BACKEND_PORT + 1, hook="",
                            cause="upstream-refused", hop=1, statuses=[None, None]),
    # `docker-compose stop meetsonar-backend`: the name leaves Docker's DNS; the
    # embedded resolver forwards the lookup outward (nowhere to go in this
    # namespace) and never answers; Vite's getaddrinfo fails with EAI_AGAIN
    # after glibc's two 5 s tries and Vite closes the browser's socket.
    "backend-stopped": dict(backend="bun", cmd=BUN, port=BACKEND_PORT, hook="", stop_backend=True,
                            cause={"no-upstream-connection", "timeout"}, hop=0, statuses=[None]),
}


class Run:
    """One scenario's stack, capture and results."""

    def __init__(self, name: str, spec: dict, images: dict, tmp):
        self.name, self.spec, self.images = name, spec, images
        self.pcap = str(tmp / f"{name}.pcapng")
        self.knobs = dict(E2E_NODE_IMAGE=images["node"],
                          E2E_BACKEND_IMAGE=images[spec["backend"]],
                          E2E_BACKEND_CMD=spec["cmd"], E2E_BACKEND_PORT=str(spec["port"]),
                          E2E_PROXY_HOOK=spec["hook"])
        self.live_out: list[dict] = []
        self.live_rc: int | None = None
        self.live_err = ""
        self.browser: dict = {}
        self.doc: dict = {}
        self.analyze_rc: int | None = None
        self.wscap_timeout = 3.0

    # --- the stack
    def up(self) -> None:
        _compose("up", "-d", **self.knobs)
        self.vite = _service_container("vite")
        self.backend = _service_container("meetsonar-backend")
        _wait_for("Vite ready", lambda: "ready in" in _logs(self.vite))
        _wait_for("the backend listening", lambda: f"listening on {self.spec['port']}" in _logs(self.backend))
        _wait_for(f"the page on localhost:{PUBLISHED}", _page_served)
        net = json.loads(_docker("network", "inspect", NETWORK).stdout)[0]
        self.bridge = "br-" + net["Id"][:12]
        self.gateway = net["IPAM"]["Config"][0]["Gateway"]
        self.ip = {}
        for c in (self.vite, self.backend):
            info = json.loads(_docker("inspect", c).stdout)[0]
            self.ip[c] = info["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
        if self.spec.get("stop_backend"):
            _compose("stop", "-t", "0", "meetsonar-backend", **self.knobs)

    def down(self) -> None:
        _compose("down", "-t", "0", check=False, **self.knobs)

    # --- wscap and the browser
    def wscap_env(self, docker: bool) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        for k in ("SUDO_UID", "SUDO_GID", "SUDO_USER", "WSCAP_DOCKER_SOCK", "DOCKER_CONTEXT",
                  "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            env.pop(k, None)
        if docker:
            env["DOCKER_HOST"] = DOCKER_HOST
        else:
            # No Docker at all: a socket path where nothing listens, for every way wscap may look.
            dead = f"{ROOT}/no-docker-here.sock"
            env["DOCKER_HOST"] = f"unix://{dead}"
            env["WSCAP_DOCKER_SOCK"] = dead
        return env

    def capture(self, *extra: str, duration: float, timeout: float, browser_wait: float | None,
                env: dict | None = None) -> None:
        """wscap live in the engine's namespace; Chromium opens the socket once the capture is open."""
        argv = _in_netns(sys.executable, "-m", "wscap", "live", "--format", "json", "--write", self.pcap,
                         "--duration", str(duration), "--timeout", str(timeout), "--no-status", *extra)
        errf = open(self.pcap + ".stderr", "w+")
        live = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf, text=True,
                                env=env or self.wscap_env(docker=True), start_new_session=True, cwd=REPO)
        try:
            # The --write file appears once the capture is open (wscap opens it after the capture).
            deadline = time.monotonic() + 30
            while not os.path.exists(self.pcap) and live.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)
            if live.poll() is not None:
                errf.seek(0)
                raise AssertionError(f"wscap live {' '.join(extra)} ended before the browser ran "
                                     f"(exit {live.returncode}): {errf.read().strip()[-600:]}")
            if browser_wait is not None:
                b = subprocess.run(_in_netns(os.path.join(DOCKER_DIR, "chromium-ws"), "--wait", str(browser_wait),
                                             f"http://localhost:{PUBLISHED}/"),
                                   capture_output=True, text=True, timeout=(browser_wait or 0) + 60)
                assert b.returncode == 0, f"Chromium client failed: {b.stderr.strip()}"
                self.browser = json.loads(b.stdout)
                assert live.poll() is None, \
                    f"wscap live ended (exit {live.returncode}) before the browser was done: raise --duration"
            out, _ = live.communicate(timeout=duration + 60)
        finally:
            if live.poll() is None:
                os.killpg(live.pid, signal.SIGKILL)
                live.wait()
        errf.seek(0)
        self.live_err = errf.read()
        errf.close()
        self.live_rc = live.returncode
        self.live_out = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        # Kept beside the capture (pytest's tmp_path) for whoever reads a failure.
        with open(self.pcap + ".live.jsonl", "w") as f:
            f.write(out)
        with open(self.pcap + ".browser.json", "w") as f:
            json.dump(self.browser, f, indent=1)

    def analyze(self) -> None:
        r = subprocess.run([sys.executable, "-m", "wscap", "analyze", self.pcap, "--format", "json",
                            "--timeout", str(self.wscap_timeout)],
                           capture_output=True, text=True, timeout=120, env=self.wscap_env(docker=False),
                           cwd=REPO)
        self.analyze_rc = r.returncode
        assert r.stdout.strip(), f"analyze printed nothing (exit {r.returncode}): {r.stderr.strip()}"
        self.doc = json.loads(r.stdout)

    # --- views
    def live_summary(self) -> dict:
        s = [o for o in self.live_out if o.get("type") == "summary"]
        assert s, f"no summary line from wscap live (exit {self.live_rc}); stderr: {self.live_err.strip()[-600:]}"
        return s[-1]

    def live_chains(self) -> list[dict]:
        return [o["chain"] for o in self.live_out if o.get("type") == "chain"]

    def live_handshakes(self) -> dict[int, dict]:
        return {o["handshake"]["id"]: o["handshake"] for o in self.live_out if o.get("type") == "handshake"}


def _ws_chain(chains: list[dict], handshakes: dict[int, dict]) -> dict:
    """The one chain whose browser-side leg is the page's GET /ws."""
    found = [c for c in chains if handshakes.get(c["hops"][0], {}).get("request")
             and handshakes[c["hops"][0]]["request"]["target"] == "/ws"]
    assert len(found) == 1, f"expected one /ws chain, got {[(c['id'], c['verdict']['cause']) for c in chains]}"
    return found[0]


def _host(addr: str) -> str:
    return addr.rsplit(":", 1)[0].strip("[]")


def _port(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


# ---------------------------------------------------------------- pcapng, read without wscap

def _pcapng_blocks(path: str):
    """(block type, body) for every block; byte order from each Section Header Block."""
    with open(path, "rb") as f:
        data = f.read()
    off, end = 0, "<"
    while off + 12 <= len(data):
        btype_le = struct.unpack_from("<I", data, off)[0]
        if btype_le == 0x0A0D0D0A:
            magic = data[off + 8:off + 12]
            end = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">"
        btype, blen = struct.unpack_from(end + "II", data, off)
        if blen < 12 or off + blen > len(data):
            break
        yield btype, data[off + 8:off + blen - 4], end
        off += blen


def _nrb_names(path: str) -> dict[str, set[str]]:
    """{ip: {names}} from the Name Resolution Blocks (type 4) of a pcapng."""
    import ipaddress
    res: dict[str, set[str]] = {}
    for btype, body, end in _pcapng_blocks(path):
        if btype != 4:
            continue
        o = 0
        while o + 4 <= len(body):
            rtype, rlen = struct.unpack_from(end + "HH", body, o)
            val = body[o + 4:o + 4 + rlen]
            o += 4 + ((rlen + 3) & ~3)
            if rtype == 0:
                break
            alen = 4 if rtype == 1 else 16 if rtype == 2 else None
            if alen is None or len(val) <= alen:
                continue
            ip = str(ipaddress.ip_address(val[:alen]))
            for n in val[alen:].split(b"\0"):
                if n:
                    res.setdefault(ip, set()).add(n.decode("utf-8", "replace"))
    return res


def _frames_containing(path: str, needle: bytes) -> set[int]:
    """Frame numbers (1-based, EPB/SPB/OPB order, as Wireshark counts) whose bytes contain needle."""
    frames, n = set(), 0
    for btype, body, end in _pcapng_blocks(path):
        if btype == 6:      # Enhanced Packet Block
            n += 1
            caplen = struct.unpack_from(end + "I", body, 12)[0]
            pkt = body[20:20 + caplen]
        elif btype == 3:    # Simple Packet Block
            n += 1
            pkt = body[4:]
        elif btype == 2:    # obsolete Packet Block
            n += 1
            caplen = struct.unpack_from(end + "I", body, 12)[0]
            pkt = body[20:20 + caplen]
        else:
            continue
        if needle in pkt:
            frames.add(n)
    return frames


def _dns_qname(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


# ---------------------------------------------------------------- the test

@pytest.fixture
def scenario(request, engine, tmp_path):
    name = request.param
    run = Run(name, SCENARIOS[name], engine["images"], tmp_path)
    try:
        run.up()
        yield run
    finally:
        run.down()


def _assert_names(endpoints: list[dict], run: Run, where: str) -> None:
    by_ip = {e["ip"]: e for e in endpoints}
    vite_ip, backend_ip = run.ip[run.vite], run.ip[run.backend]
    assert vite_ip in by_ip, f"{where}: the vite container {vite_ip} is not an endpoint: {sorted(by_ip)}"
    assert by_ip[vite_ip]["name"] in VITE_NAMES, f"{where}: vite {vite_ip} named {by_ip[vite_ip]['name']!r}"
    # Roles from the chain: Vite is the proxy in every scenario, also when it never reached the backend.
    assert by_ip[vite_ip]["role"] == "proxy", f"{where}: vite's role is {by_ip[vite_ip]['role']!r}"
    if backend_ip in by_ip:
        assert by_ip[backend_ip]["name"] in BACKEND_NAMES, \
            f"{where}: backend {backend_ip} named {by_ip[backend_ip]['name']!r}"
        assert by_ip[backend_ip]["role"] == "backend"
    gw = by_ip.get(run.gateway)
    assert gw is not None, f"{where}: the gateway {run.gateway} (the browser on the host) is not an endpoint"
    assert gw["name"] and "host" in gw["name"].lower(), \
        f"{where}: the gateway {run.gateway} should be labelled as the host, got {gw['name']!r}"
    assert gw["role"] == "client"


def _assert_chain(chain: dict, hs: dict[int, dict], run: Run, where: str) -> None:
    spec = run.spec
    causes = spec["cause"] if isinstance(spec["cause"], set) else {spec["cause"]}
    v = chain["verdict"]
    assert v["cause"] in causes, f"{where}: cause {v['cause']!r} ({v.get('summary')!r}), expected {causes}"
    assert v["hop"] == spec["hop"], f"{where}: hop {v['hop']}, expected {spec['hop']}"
    assert v["broken"] == (spec["cause"] != "ok")
    legs = [hs[h] for h in chain["hops"]]
    assert [leg["status"] for leg in legs] == spec["statuses"], f"{where}: statuses {[leg['status'] for leg in legs]}"
    # Leg 0: the browser on the host, through docker-proxy (or NAT), from the bridge gateway to vite:5173.
    assert _host(legs[0]["client"]) == run.gateway
    assert legs[0]["server"] == f"{run.ip[run.vite]}:{PUBLISHED}"
    if len(legs) > 1:
        # Leg 1: Vite to meetsonar-backend:5000 (the proxy target's port, whatever the backend listens on).
        assert _host(legs[1]["client"]) == run.ip[run.vite]
        assert legs[1]["server"] == f"{run.ip[run.backend]}:{BACKEND_PORT}"


def _assert_scenario_specifics(chain: dict, hs: dict[int, dict], run: Run, where: str) -> None:
    v = chain["verdict"]
    if run.name == "origin-rewrite":
        req = [d for d in chain["diffs"] if d["direction"] == "request" and d["boundary"] == 0]
        assert req, f"{where}: no request diff across Vite"
        origin = [c for c in req[0]["changes"] if c["name"] == "origin"]
        assert origin and origin[0]["kind"] == "changed", f"{where}: no Origin change in {req[0]['changes']}"
        assert (origin[0]["before"], origin[0]["after"]) == (PAGE_ORIGIN, PROXY_TARGET)
        # Names in the sentence: the backend's name, not only the rewritten Origin's host part.
        rest = v["summary"].replace(PROXY_TARGET, "")
        assert any(n in rest for n in BACKEND_NAMES), f"{where}: the backend is not named: {v['summary']!r}"
    if run.name == "backend-refused":
        assert hs[chain["hops"][1]]["outcome"] == "refused"
    if run.name == "backend-stopped":
        s = v["summary"]
        assert "meetsonar-backend" in s and re.search(r"lookup|DNS|resolv", s, re.I), \
            f"{where}: no DNS explanation naming meetsonar-backend: {s!r}"


def capture_scenario(run: Run, env: dict | None = None, extra: tuple[str, ...] | None = None) -> None:
    """live (no --iface; --container vite, the service name, when the backend is stopped) while Chromium runs."""
    stopped = bool(run.spec.get("stop_backend"))
    # Backend stopped: Vite answers only when its lookup gives up (~10 s); a --timeout
    # longer than that lets live decide on the wire's end, as analyze does.
    run.wscap_timeout = 15.0 if stopped else 3.0
    if extra is None:
        extra = ("--container", "vite") if stopped else ()
    # Generous on a loaded 2-core machine: the browser returns as soon as its socket
    # closed (about 1 s, or 10 s when Vite waits on DNS); --duration covers the
    # capture opening, Chromium starting, the browser's wait and wscap's --timeout.
    run.capture(*extra, duration=34 if stopped else 20, timeout=run.wscap_timeout,
                browser_wait=20 if stopped else 12, env=env)


def check_browser(run: Run) -> None:
    """The browser saw what the scenario was built to do (first: a stack problem is not wscap's)."""
    b = run.browser
    if run.spec["cause"] == "ok":
        assert b.get("received") == ECHO and b["close"]["code"] == 1000, b
    else:
        assert b.get("received") is None and b.get("close") and b["close"]["code"] == 1006, b
    if run.spec.get("stop_backend"):
        assert "EAI_AGAIN meetsonar-backend" in _logs(run.vite), "Vite's lookup did not fail as built"


def check_live_iface(run: Run) -> None:
    live_info = run.live_summary().get("live") or {}
    if run.spec.get("stop_backend"):
        assert live_info.get("container") in VITE_NAMES, live_info
    else:
        # No --iface: the Compose project's bridge, not docker0 (which has no containers here).
        iface = json.dumps(live_info.get("iface"))
        assert run.bridge in iface and "docker0" not in iface, \
            f"live picked {live_info.get('iface')!r}, the project's containers are on {run.bridge}"


def check_live_chain(run: Run) -> dict:
    hs = run.live_handshakes()
    chain = _ws_chain(run.live_chains(), hs)
    _assert_chain(chain, hs, run, "live")
    _assert_scenario_specifics(chain, hs, run, "live")
    return chain


def check_live_names(run: Run) -> None:
    _assert_names(run.live_summary()["endpoints"], run, "live")


def check_live_exit(run: Run) -> None:
    want = 0 if run.spec["cause"] == "ok" else 1
    assert run.live_rc == want, f"live exit {run.live_rc}: {run.live_err[-400:]}"


def check_nrb(run: Run) -> None:
    """The capture carries the names (pcapng Name Resolution Blocks), read here without wscap."""
    nrb = _nrb_names(run.pcap)
    assert nrb.get(run.ip[run.vite], set()) & VITE_NAMES, f"NRB: {nrb}"
    if not run.spec.get("stop_backend"):
        assert nrb.get(run.ip[run.backend], set()) & BACKEND_NAMES, f"NRB: {nrb}"


def check_dns_evidence(run: Run, chain: dict) -> None:
    """DNS is evidence: the verdict cites a frame carrying the lookup of meetsonar-backend."""
    dns = _frames_containing(run.pcap, _dns_qname("meetsonar-backend"))
    assert dns, "the capture inside vite holds no DNS message for meetsonar-backend"
    cited = {e.get("frame") for e in chain["verdict"].get("evidence", [])}
    assert cited & dns, f"verdict evidence frames {sorted(f for f in cited if f)}, DNS frames {sorted(dns)}"


def check_analyze(run: Run, live_chain: dict | None) -> None:
    """wscap analyze of the written file, with no Docker and no --names: same names, same verdict."""
    run.analyze()
    doc = run.doc
    assert doc["source"][0]["format"] == "pcapng" and doc["source"][0]["complete"], doc["source"]
    ahs = {h["id"]: h for h in doc["handshakes"]}
    achain = _ws_chain(doc["chains"], ahs)
    _assert_chain(achain, ahs, run, "analyze")
    _assert_scenario_specifics(achain, ahs, run, "analyze")
    _assert_names(doc["endpoints"], run, "analyze")
    live_names = {e["ip"]: e["name"] for e in run.live_summary()["endpoints"]}
    offline_names = {e["ip"]: e["name"] for e in doc["endpoints"]}
    assert offline_names == live_names, "analyze (NRB) and live name the endpoints differently"
    if live_chain is not None:
        assert (achain["verdict"]["cause"], achain["verdict"]["hop"]) == \
            (live_chain["verdict"]["cause"], live_chain["verdict"]["hop"])
    assert run.analyze_rc == (0 if run.spec["cause"] == "ok" else 1)


@pytest.mark.parametrize("scenario", list(SCENARIOS), indirect=True)
def test_compose_incident(scenario: Run):
    run = scenario
    capture_scenario(run)
    check_browser(run)
    check_live_iface(run)
    chain = check_live_chain(run)
    check_live_names(run)
    check_live_exit(run)
    check_nrb(run)
    if run.spec.get("stop_backend"):
        check_dns_evidence(run, chain)
    check_analyze(run, chain)


@pytest.mark.parametrize("scenario", ["healthy-bun"], indirect=True)
def test_compose_project_flag(scenario: Run):
    """`--project meetsonar` captures that Compose project's bridge, with names."""
    run = scenario
    run.capture("--project", PROJECT, duration=20, timeout=3.0, browser_wait=12)
    check_browser(run)
    live_info = run.live_summary().get("live") or {}
    assert run.bridge in json.dumps(live_info.get("iface")), live_info
    check_live_chain(run)
    check_live_names(run)
    check_live_exit(run)


@pytest.mark.parametrize("scenario", ["healthy-bun"], indirect=True)
def test_compose_without_engine_api_says_why(scenario: Run):
    """DOCKER_HOST pointing where nothing listens: one line says names are unavailable and why
    (naming where wscap looked); the capture falls back to docker0 (the issue's fallback) or,
    better, to the Docker-named bridge that has containers attached (the project's, from sysfs)."""
    run = scenario
    env = run.wscap_env(docker=False)
    dead = env["WSCAP_DOCKER_SOCK"]
    run.capture(duration=5, timeout=3.0, browser_wait=None, env=env)
    lines = [ln for ln in run.live_err.splitlines() if dead in ln]
    assert lines, f"nothing on stderr names {dead}: {run.live_err.strip()[-600:]}"
    iface = json.dumps((run.live_summary().get("live") or {}).get("iface"))
    assert iface in ('"docker0"', '["docker0"]') or (run.bridge in iface and "docker0" not in iface), iface
    assert run.live_rc == 0, run.live_err[-400:]

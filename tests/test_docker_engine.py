"""The Compose user's path against a real Docker Engine (issue 15): API endpoints, names,
services, bridges, the gateway and docker-proxy.

Root only, where dockerd runs (skipped with the reason otherwise). dockerd runs in
network namespace `wscapcmp` (tests/compose_engine.py) with TLS on tcp://127.0.0.1:2376
inside that namespace. Containers are made the way Compose makes them: labels
com.docker.compose.project/service on containers and networks, v1 names
(p_vite_1) and v2 names (q-vite-1), plus one unlabelled v1-named container.

Every expected value comes from `docker inspect` of what the test created, never from
wscap's own output.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import compose_engine as ce  # noqa: E402
from netns import wscap_argv, wscap_env  # noqa: E402

from wscap.capture import docker as dockerapi  # noqa: E402
from wscap.capture import engine_api  # noqa: E402
from wscap.capture import privilege  # noqa: E402

_why = ce.skip_reason()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.slow, pytest.mark.live]

P_SUBNET, Q_SUBNET = "10.77.1.0/24", "10.77.2.0/24"
NSPATH = f"/run/netns/{ce.NS}"


@pytest.fixture(scope="module")
def eng(tmp_path_factory):
    e = ce.Engine(tls_dir=str(tmp_path_factory.mktemp("tls")))
    try:
        why = e.start()
        if why:
            pytest.skip(why)
        img = e.import_busybox()
        e.ok("network", "create", "--label", "com.docker.compose.project=p", "--subnet", P_SUBNET, "p_default")
        e.ok("network", "create", "--label", "com.docker.compose.project=q", "--subnet", Q_SUBNET, "q_default")
        e.ok("run", "-d", "--name", "p_vite_1", "--network", "p_default", "-p", "5173:5173",
             "--label", "com.docker.compose.project=p", "--label", "com.docker.compose.service=vite",
             img, "httpd", "-f", "-p", "5173", "-h", "/www")
        e.ok("run", "-d", "--name", "p_backend_1", "--network", "p_default",
             "--label", "com.docker.compose.project=p", "--label", "com.docker.compose.service=backend",
             img, "httpd", "-f", "-p", "8080", "-h", "/www")
        e.ok("run", "-d", "--name", "q-vite-1", "--network", "q_default",
             "--label", "com.docker.compose.project=q", "--label", "com.docker.compose.service=vite",
             img, "sleep", "600")
        e.ok("run", "-d", "--name", "old_web_1", img, "sleep", "600")      # docker0, no labels
        yield e
    finally:
        e.stop()


def inspect(e, what: str) -> dict:
    return json.loads(e.ok("inspect", what))[0]


def ip_of(e, name: str) -> str:
    nets = inspect(e, name)["NetworkSettings"]["Networks"]
    return next(iter(nets.values()))["IPAddress"]


def bridge_of(e, net: str) -> str:
    n = json.loads(e.ok("network", "inspect", net))[0]
    return n["Options"].get("com.docker.network.bridge.name") or "br-" + n["Id"][:12]


def client(e) -> engine_api.DockerClient:
    return engine_api.DockerClient(e.sock)


# ---- finding the Engine API -----------------------------------------------------------------

def test_docker_host_unix(eng):
    c, why = engine_api.connect({"DOCKER_HOST": f"unix://{eng.sock}", "HOME": "/nonexistent"})
    assert why is None and c is not None and c.sock_path == eng.sock
    assert c.endpoint.source == "DOCKER_HOST"


def _relay(target_unix: str) -> tuple[int, threading.Event]:
    """Plain-TCP → unix-socket relay on 127.0.0.1 (as `socat TCP-LISTEN UNIX-CONNECT` would)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    ls.settimeout(0.2)
    stop = threading.Event()

    def pipe(a, b):
        try:
            while d := a.recv(65536):
                b.sendall(d)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        while not stop.is_set():
            try:
                c, _ = ls.accept()
            except OSError:
                continue
            u = socket.socket(socket.AF_UNIX)
            u.connect(target_unix)
            threading.Thread(target=pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=pipe, args=(u, c), daemon=True).start()
        ls.close()
    threading.Thread(target=serve, daemon=True).start()
    return ls.getsockname()[1], stop


def test_docker_host_tcp_plain(eng):
    port, stop = _relay(eng.sock)
    try:
        c, why = engine_api.connect({"DOCKER_HOST": f"tcp://127.0.0.1:{port}", "HOME": "/nonexistent"})
        assert why is None, why
        assert c.sock_path is None and c.port == port
        want = {ip_of(eng, "p_vite_1"): "p_vite_1", ip_of(eng, "old_web_1"): "old_web_1"}
        got = dockerapi.docker_names(c)
        assert {ip: got.get(ip) for ip in want} == want
    finally:
        stop.set()


def test_docker_host_tls(eng):
    """dockerd's own TLS listener (inside its namespace): DOCKER_TLS_VERIFY + DOCKER_CERT_PATH."""
    certdir = os.path.dirname(eng.certs["ca.pem"])
    env = {"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": certdir,
           "HOME": "/nonexistent"}
    with privilege.in_netns(NSPATH):
        c, why = engine_api.connect(env)
        assert why is None, why
        assert c.get("/version")["Version"] == json.loads(eng.ok("version", "--format", "{{json .Server}}"))["Version"]
        # plain HTTP to the TLS port: dockerd answers 400, and we say to turn TLS on
        c2, why2 = engine_api.connect({"DOCKER_HOST": "tcp://127.0.0.1:2376", "HOME": "/nonexistent"})
        assert c2 is None and "400" in why2 and "DOCKER_TLS_VERIFY=1" in why2, why2
    # a CA that did not sign the server's certificate
    other = os.path.join(certdir, "other")
    ce.make_certs(other)
    with privilege.in_netns(NSPATH):
        c3, why3 = engine_api.connect({**env, "DOCKER_CERT_PATH": other})
    assert c3 is None and "TLS error" in why3 and "not trusted" in why3 and "DOCKER_CERT_PATH" in why3, why3
    assert "\n" not in why3


def test_docker_context(eng, tmp_path):
    """`docker context create/use` (the real CLI writes the files); read through the user's HOME."""
    cfg = tmp_path / ".docker"
    env = {**os.environ, "DOCKER_CONFIG": str(cfg)}
    for args in (("context", "create", "wsctx", "--docker", f"host=unix://{eng.sock}"), ("context", "use", "wsctx")):
        r = subprocess.run([ce.DOCKER, *args], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
    meta = cfg / "contexts" / "meta" / hashlib.sha256(b"wsctx").hexdigest() / "meta.json"
    assert meta.exists()
    c, why = engine_api.connect({"HOME": str(tmp_path)})
    assert why is None and c.sock_path == eng.sock and c.endpoint.source == "docker context wsctx"
    # Under sudo the context is the invoking user's: SUDO_USER's home, not root's.
    uid, home = engine_api.invoking_user({"SUDO_USER": "root", "SUDO_UID": "0", "HOME": "/elsewhere"})
    assert home == "/root"


def test_unreachable_reasons(eng, tmp_path):
    # refused: a socket file nobody listens on
    dead = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(dead))
    s.close()
    c, why = engine_api.connect({"WSCAP_DOCKER_SOCK": str(dead), "HOME": "/nonexistent"})
    assert c is None and "connection refused" in why and "is dockerd/podman running" in why
    assert why.count("\n") == 0
    # permission denied: the real dockerd socket (root:root 0660) as nobody
    # (engine_api.py is stdlib-only: loaded by path into a system python that nobody may run)
    py = next((p for p in ("/usr/bin/python3", sys.executable) if os.access(p, os.X_OK)), sys.executable)
    code = ("import importlib.util as u, json, sys; s = u.spec_from_file_location('ea', " + repr(engine_api.__file__)
            + "); m = u.module_from_spec(s); sys.modules['ea'] = m; s.loader.exec_module(m); "
            f"print(json.dumps(m.connect({{'DOCKER_HOST': 'unix://{eng.sock}', 'HOME': '/nonexistent'}})[1]))")
    r = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
                       preexec_fn=lambda: (os.setgroups([]), os.setgid(65534), os.setuid(65534)), cwd="/")
    assert r.returncode == 0, r.stderr
    why = json.loads(r.stdout)
    assert "permission denied" in why and "usermod -aG docker" in why and eng.sock in why, why
    # nothing anywhere: one line naming what was tried
    eps, _, explicit = engine_api.candidate_endpoints({"SUDO_UID": "1000", "HOME": "/nonexistent"})
    urls = [e.url for e in eps]
    assert not explicit
    assert urls[:2] == ["unix:///var/run/docker.sock", "unix:///run/podman/podman.sock"]
    assert "unix:///run/user/1000/podman/podman.sock" in urls


# ---- names ------------------------------------------------------------------------------------

def test_engine_names_gateway_published_proxy(eng):
    n = dockerapi.engine_names(client(eng))
    assert n.reason_unavailable is None
    for c in ("p_vite_1", "p_backend_1", "q-vite-1", "old_web_1"):
        assert n.names[ip_of(eng, c)] == c
    vite = inspect(eng, "p_vite_1")["NetworkSettings"]["Networks"]["p_default"]
    assert n.names[vite["Gateway"]] == "host (gateway of p_default)"
    assert n.names["10.77.0.1"] == "host (gateway of bridge)"       # --bip of our dockerd
    pub = [p for p in n.published if p.container == "p_vite_1"]
    assert {(p.host_port, p.container_port, p.service) for p in pub} == {(5173, 5173, "vite")}
    assert pub[0].label == "host:5173 → vite:5173"
    mine = [p for p in n.proxies if p.container_ip == vite["IPAddress"]]
    assert mine, "docker-proxy for 5173 not found in /proc"
    assert {p.host_port for p in mine} == {5173} and all(p.container == "p_vite_1" for p in mine)
    assert mine[0].label("[::1]:5173") == f"[::1]:5173 → docker-proxy → {vite['IPAddress']}:5173 (p_vite_1)"
    assert dockerapi.docker_names(client(eng)) == n.names


# ---- --container -------------------------------------------------------------------------------

def test_resolve_container(eng):
    c = client(eng)
    got = dockerapi.resolve_container("p_vite_1", c)
    assert got["Id"] == inspect(eng, "p_vite_1")["Id"]
    with pytest.raises(dockerapi.AmbiguousContainer) as ei:
        dockerapi.resolve_container("vite", c)
    assert ei.value.candidates == [("p_vite_1", "p", "vite"), ("q-vite-1", "q", "vite")]
    assert dockerapi.resolve_container("vite", c, project="q")["Id"] == inspect(eng, "q-vite-1")["Id"]
    assert dockerapi.resolve_container("backend", c)["Id"] == inspect(eng, "p_backend_1")["Id"]
    assert dockerapi.resolve_container("web", c)["Id"] == inspect(eng, "old_web_1")["Id"]  # v1 name, no labels
    full = inspect(eng, "old_web_1")["Id"]
    assert dockerapi.resolve_container(full[:6], c)["Id"] == full
    with pytest.raises(dockerapi.NoSuchContainer, match="running: "):
        dockerapi.resolve_container("nosuch", c)
    pid = inspect(eng, "p_backend_1")["State"]["Pid"]
    assert dockerapi.container_netns("backend", c) == f"/proc/{pid}/ns/net"


def test_cli_container_ambiguous_and_service(eng):
    env = wscap_env(DOCKER_HOST=f"unix://{eng.sock}")
    r = subprocess.run(wscap_argv("live", "--container", "vite", "--duration", "1"), capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "'vite' matches 2 containers" in r.stderr
    assert "p_vite_1  (project p, service vite)" in r.stderr and "q-vite-1  (project q, service vite)" in r.stderr
    r = subprocess.run(wscap_argv("ifaces", "--container", "vite", "--project", "q"), capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert ip_of(eng, "q-vite-1") in r.stdout
    r = subprocess.run(wscap_argv("live", "--container", "backend", "--duration", "2", "--format", "json",
                                  "--no-status"), capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    live = json.loads(r.stdout.splitlines()[-1])["live"]
    assert live["container"] == "backend" and live["iface"] == "any"
    assert live["netns"] == f"/proc/{inspect(eng, 'p_backend_1')['State']['Pid']}/ns/net"


# ---- the right bridge ---------------------------------------------------------------------------

def test_default_capture_ifaces(eng):
    c = client(eng)
    bp, bq = bridge_of(eng, "p_default"), bridge_of(eng, "q_default")
    with privilege.in_netns(NSPATH):
        got, why = dockerapi.default_capture_ifaces(c)
        got_p, why_p = dockerapi.default_capture_ifaces(c, "p")
        none, why_none = dockerapi.default_capture_ifaces(c, "nosuch")
    assert got == sorted([bp, bq]) + ["docker0"]
    assert got_p == [bp] and why_p == f"{bp} (network p_default, project p: backend, vite)"
    assert none == [] and "projects here: p, q" in why_none
    # From the host namespace the bridges are not there: say so, and how to get there.
    got_host, why_host = dockerapi.default_capture_ifaces(c)
    assert got_host == [] and f"--netns {eng.proc.pid}" in why_host and "--container" in why_host, why_host


def test_where_are_containers_without_api(eng):
    """Without the Engine API: the bridges with attached veths, from the namespace's own sysfs."""
    code = "from wscap.capture.docker import where_are_containers as w; print(w(None, 'lo', 5))"
    r = subprocess.run(["ip", "netns", "exec", ce.NS, sys.executable, "-c", code], capture_output=True,
                       text=True, env=wscap_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    bp = bridge_of(eng, "p_default")
    assert r.stdout.startswith("no packets on lo for 5 s; bridges with attached interfaces: ")
    assert f"{bp} (2 attached" in r.stdout and "docker0 (1 attached" in r.stdout
    assert f"--iface {bp}" in r.stdout.split(" — try ", 1)[1]


def test_live_no_iface_with_project_names_gateway(eng, tmp_path):
    """`wscap live --project p` (no --iface) from dockerd's namespace: captures p's bridge; the
    host's request through the published port appears as gateway → vite, both named."""
    env = wscap_env(DOCKER_HOST=f"unix://{eng.sock}")
    p = subprocess.Popen(["ip", "netns", "exec", ce.NS, *wscap_argv("live", "--project", "p", "--format", "json",
                                                                    "--duration", "8", "--timeout", "1")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(3)
        req = ("GET /index.html HTTP/1.1\r\nHost: localhost:5173\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        code = ("import socket,sys; s=socket.create_connection(('127.0.0.1',5173),5); "
                f"s.sendall({req!r}.encode()); s.settimeout(5); print(s.recv(100)[:12])")
        r = subprocess.run(["ip", "netns", "exec", ce.NS, sys.executable, "-c", code], capture_output=True,
                           text=True, timeout=30)
        assert "HTTP/1." in r.stdout, r.stderr
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    bp = bridge_of(eng, "p_default")
    assert f"capturing on {bp} " in err and f"chosen: {bp} (network p_default, project p: backend, vite)" in err
    s = json.loads(out.splitlines()[-1])
    assert s["live"]["iface"] == bp and s["live"]["project"] == "p"
    names = {ep["ip"]: ep.get("name") for ep in s["endpoints"]}
    vite = inspect(eng, "p_vite_1")["NetworkSettings"]["Networks"]["p_default"]
    assert names.get(vite["IPAddress"]) == "p_vite_1"
    assert names.get(vite["Gateway"]) == "host (gateway of p_default)"


def test_live_silent_says_where_containers_are(eng):
    env = wscap_env(DOCKER_HOST=f"unix://{eng.sock}")
    r = subprocess.run(["ip", "netns", "exec", ce.NS, *wscap_argv("live", "--iface", "lo", "--duration", "8")],
                       capture_output=True, text=True, env=env, timeout=90)
    assert r.returncode == 0, r.stderr
    bp, bq = bridge_of(eng, "p_default"), bridge_of(eng, "q_default")
    line = next((ln for ln in r.stderr.splitlines() if "no packets on lo for 5 s" in ln), None)
    assert line, r.stderr
    assert f"{bp} (project p: backend, vite)" in line and f"{bq} (project q: vite)" in line
    assert "docker0 (network bridge: old_web_1)" in line
    assert f"--iface {bp}" in line and "--project p" in line


def test_missing_bridge_suggests_netns_and_container(eng):
    bp = bridge_of(eng, "p_default")
    r = subprocess.run(wscap_argv("live", "--iface", bp, "--duration", "1", "--no-docker"), capture_output=True,
                       text=True, env=wscap_env(), timeout=60)
    assert r.returncode == 2
    pid = eng.proc.pid  # nsenter exec'd dockerd: same PID
    assert f"dockerd pid {pid}" in r.stderr and f"--netns {pid} --iface {bp}" in r.stderr, r.stderr
    assert "--container NAME" in r.stderr


def test_live_netns_of_dockerd_picks_its_bridges(eng):
    """`--netns <dockerd pid> --project q`: q's bridge in dockerd's namespace, not `any`."""
    env = wscap_env(DOCKER_HOST=f"unix://{eng.sock}")
    r = subprocess.run(wscap_argv("live", "--netns", str(eng.proc.pid), "--project", "q", "--duration", "2",
                                  "--format", "json"), capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    bq = bridge_of(eng, "q_default")
    assert json.loads(r.stdout.splitlines()[-1])["live"]["iface"] == bq
    assert f"chosen: {bq} (network q_default, project q: vite)" in r.stderr

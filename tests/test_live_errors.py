"""`wscap live` clear errors: each one names the problem and the fix, and exits 2.

Runs the real command in a subprocess. Interface, filter, usage and
backend-missing errors need no privileges; the permission error runs the
command as `nobody` (so needs root to set that up), and the Docker-bridge hint
needs a namespace with a br-<12 hex> bridge (root).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from netns import Lab, can_make_netns, wscap_argv, wscap_env  # noqa: E402

ROOT = os.geteuid() == 0
BACKENDS = ["wscap-capture", "tcpdump", "scapy"]


def run(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(wscap_argv(*args), capture_output=True, text=True, timeout=60,
                          env=env or wscap_env(), **kw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_interface_lists_interfaces(backend):
    r = run("live", "--iface", "nosuch0", "--backend", backend, "--duration", "1")
    assert r.returncode == 2, r.stderr
    assert "interface 'nosuch0' does not exist" in r.stderr
    assert "available interfaces:" in r.stderr and "lo" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.skipif(not ROOT, reason="needs root to build a namespace with a Docker-named bridge")
def test_missing_interface_names_docker_bridges():
    ok, why = can_make_netns()
    if not ok:
        pytest.skip(why)
    with Lab(hosts=("client",)) as lab:
        r = run("live", "--netns", lab.netns_path(), "--iface", "docker0", "--duration", "1")
        assert r.returncode == 2, r.stderr
        assert "interface 'docker0' does not exist" in r.stderr
        assert f"Docker bridges: {lab.bridge}" in r.stderr
        # and `wscap ifaces` shows it, marked, with its veth
        r = run("ifaces", "--netns", lab.netns_path(), "--no-docker")
        assert r.returncode == 0, r.stderr
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(lab.bridge))
        assert "bridge" in line and "[docker]" in line
        assert "└─ veth0" in r.stdout


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("expr,detail", [
    ("tcp prot 80", "syntax error"),
    ("tcp and (port 80", "syntax error"),
    ("tcp port 99999", "illegal port number 99999"),
])
def test_bad_filter_shows_expression_and_error(backend, expr, detail):
    r = run("live", "--iface", "lo", "--backend", backend, "--filter", expr, "--duration", "1")
    assert r.returncode == 2, r.stderr
    assert f"invalid capture filter (BPF): {expr!r}" in r.stderr
    assert detail in r.stderr
    assert "Traceback" not in r.stderr


def _drop_capture_caps() -> None:
    """preexec: remove CAP_NET_RAW/CAP_NET_ADMIN from the bounding set, so neither this
    root process nor anything it execs (python, tcpdump) can capture."""
    import ctypes
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    for cap in (12, 13):  # CAP_NET_ADMIN, CAP_NET_RAW
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")


@pytest.mark.skipif(not ROOT, reason="needs root (CAP_SETPCAP) to start the command without capture capabilities")
@pytest.mark.parametrize("backend", BACKENDS)
def test_no_permission_says_how_to_grant(backend):
    r = subprocess.run(wscap_argv("live", "--iface", "lo", "--backend", backend, "--duration", "1"),
                       capture_output=True, text=True, timeout=60, env=wscap_env(),
                       preexec_fn=_drop_capture_caps)
    assert r.returncode == 2, r.stderr
    assert "CAP_NET_RAW" in r.stderr and "CAP_NET_ADMIN" in r.stderr
    assert "setcap cap_net_raw,cap_net_admin=eip" in r.stderr and "sudo" in r.stderr
    assert "Traceback" not in r.stderr


def test_backend_missing_tcpdump(tmp_path):
    # A PATH without tcpdump (the interpreter is called by absolute path).
    env = wscap_env(PATH=str(tmp_path))
    r = run("live", "--iface", "lo", "--backend", "tcpdump", "--duration", "1", env=env)
    assert r.returncode == 2, r.stderr
    assert "needs tcpdump" in r.stderr and "apt-get install tcpdump" in r.stderr


def test_backend_missing_scapy(tmp_path):
    # Shadow scapy with a package that fails to import, as on a machine without it.
    (tmp_path / "scapy").mkdir()
    (tmp_path / "scapy" / "__init__.py").write_text("raise ImportError('No module named scapy')\n")
    env = wscap_env()
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env["PYTHONPATH"]
    r = run("live", "--iface", "lo", "--backend", "scapy", "--duration", "1", env=env)
    assert r.returncode == 2, r.stderr
    assert "needs scapy" in r.stderr and "pip install scapy" in r.stderr


@pytest.mark.parametrize("args,msg", [
    (("--ring-files", "3", "--ring-size", "1"), "need --write FILE"),
    (("--write", "x.pcap", "--ring-files", "3"), "needs both --ring-files N and --ring-size MB"),
    (("--netns", "/nonexistent/ns"), "does not exist"),
    (("--container", "a", "--netns", "1"), "exclusive"),
])
def test_usage_errors(args, msg, tmp_path):
    r = run("live", "--iface", "lo", *args, cwd=str(tmp_path))
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr


def test_container_without_docker(tmp_path):
    env = wscap_env(WSCAP_DOCKER_SOCK=str(tmp_path / "docker.sock"))
    r = run("live", "--container", "web", env=env)
    assert r.returncode == 2
    assert "cannot look up container 'web'" in r.stderr and "--netns PID" in r.stderr


@pytest.mark.skipif(not ROOT, reason="--user is only meaningful as root")
def test_unknown_user():
    r = run("live", "--iface", "lo", "--user", "no-such-user-xyz", "--duration", "1")
    assert r.returncode == 2 and "no such user" in r.stderr


@pytest.mark.skipif(not ROOT, reason="needs root to check --write access as another user")
def test_write_where_invoking_user_cannot(tmp_path):
    os.chmod(tmp_path, 0o755)  # root-owned: nobody cannot create files here
    env = wscap_env(SUDO_UID="65534", SUDO_GID="65534")
    r = run("live", "--iface", "lo", "--write", str(tmp_path / "x.pcap"), "--duration", "1", env=env)
    assert r.returncode == 2, r.stderr
    assert "nobody cannot create files here" in r.stderr
    assert not (tmp_path / "x.pcap").exists()

"""Network-namespace lab for live-capture tests and benchmarks (root only).

`Lab` builds, entirely inside namespaces it creates:

    ns "<p>-lab":   bridge br-<12 hex> (named like a Docker/Compose bridge)
       ├── veth → ns "<p>-client"   10.213.N.11/24
       ├── veth → ns "<p>-proxy"    10.213.N.12/24
       └── veth → ns "<p>-backend"  10.213.N.13/24

Nothing is added to the root namespace: every address is 10.213.N.x inside a
namespace of ours, so no traffic can leave the machine. Processes started with
`Lab.spawn()` are remembered and ended by PID at teardown; namespaces are
deleted by the names we gave them.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

SUBNET_BASE = "10.213"


def can_make_netns() -> tuple[bool, str]:
    """(True, "") when this process can build a lab, else (False, reason)."""
    if os.geteuid() != 0:
        return False, "needs root (creates network namespaces, a bridge and veth pairs)"
    if not shutil.which("ip"):
        return False, "needs iproute2 (`ip`)"
    name = f"wscapprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return False, f"cannot create network namespaces here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return True, ""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r


@dataclass
class Lab:
    hosts: tuple[str, ...] = ("client", "proxy", "backend")
    prefix: str = field(default_factory=lambda: f"wsc{os.getpid() % 100000}{secrets.token_hex(2)}")
    subnet: int = field(default_factory=lambda: 1 + secrets.randbelow(250))
    bridge: str = field(default_factory=lambda: "br-" + secrets.token_hex(6))
    procs: list[subprocess.Popen] = field(default_factory=list)
    made: list[str] = field(default_factory=list)

    @property
    def lab_ns(self) -> str:
        return f"{self.prefix}-lab"

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def ip(self, host: str) -> str:
        return f"{SUBNET_BASE}.{self.subnet}.{11 + self.hosts.index(host)}"

    def netns_path(self, host: str | None = None) -> str:
        return f"/run/netns/{self.ns(host) if host else self.lab_ns}"

    def up(self) -> "Lab":
        try:
            sh("ip", "netns", "add", self.lab_ns)
            self.made.append(self.lab_ns)
            x = ("ip", "-n", self.lab_ns)
            sh(*x, "link", "set", "lo", "up")
            sh(*x, "link", "add", self.bridge, "type", "bridge")
            sh(*x, "link", "set", self.bridge, "up")
            for i, h in enumerate(self.hosts):
                ns = self.ns(h)
                sh("ip", "netns", "add", ns)
                self.made.append(ns)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
                port = f"veth{i}{secrets.token_hex(3)}"
                # Create the pair inside the lab namespace, then move the far end out.
                sh(*x, "link", "add", port, "type", "veth", "peer", "name", "eth0")
                sh(*x, "link", "set", "eth0", "netns", ns)
                sh(*x, "link", "set", port, "master", self.bridge)
                sh(*x, "link", "set", port, "up")
                sh("ip", "-n", ns, "addr", "add", f"{self.ip(h)}/24", "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
        except BaseException:
            self.down()
            raise
        return self

    def cmd(self, host: str | None, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host) if host else self.lab_ns, *args]

    def run(self, host: str | None, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(host, *args), capture_output=True, text=True, **kw)

    def spawn(self, host: str | None, *args: str, **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.Popen(self.cmd(host, *args), start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def kill(self, p: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        """End one of our processes by PID (its own process group, which we created)."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def down(self) -> None:
        for p in reversed(self.procs):
            self.kill(p, signal.SIGTERM, timeout=5)
        self.procs.clear()
        for ns in reversed(self.made):
            sh("ip", "netns", "del", ns, check=False)
        self.made.clear()

    def __enter__(self) -> "Lab":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()


def wait_port(lab: Lab, host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until something listens on `port` in `host`'s namespace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = lab.run(host, "ss", "-Hltn", f"sport = :{port}")
        if r.stdout.strip():
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port}")

"""Network namespaces, a Docker-like bridge, and the processes inside them.

Layout (all inside namespaces this module creates and deletes again; the
root namespace's network is never touched):

    netns wscaplab-host     br-wscaplab 10.88.0.1/24 (the "Docker host"),
                            docker-proxy on 127.0.0.1:5173, Chromium, tcpdump
    netns wscaplab-vite     eth0 10.88.0.10   vite
    netns wscaplab-backend  eth0 10.88.0.20   meetsonar-backend
    netns wscaplab-nginx    eth0 10.88.0.30   nginx

Names resolve like Compose's: every container namespace gets an
/etc/netns/<ns>/hosts, which `ip netns exec` bind-mounts over /etc/hosts
(and a resolv.conf pointing at loopback, so an unknown name fails locally
instead of reaching for a real DNS server).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

BRIDGE = "br-wscaplab"
SUBNET_PREFIX = 24
HOST_NS = "wscaplab-host"
HOST_IP = "10.88.0.1"
CONTAINERS = {
    # service name -> (namespace, ip, host-side veth name)
    "vite": ("wscaplab-vite", "10.88.0.10", "vl-vite"),
    "meetsonar-backend": ("wscaplab-backend", "10.88.0.20", "vl-backend"),
    "nginx": ("wscaplab-nginx", "10.88.0.30", "vl-nginx"),
}
DEAD_IP = "10.88.0.21"  # a "stopped container": nothing answers (not even ARP)
DEAD_MAC = "02:42:0a:58:00:15"
ALL_NS = [HOST_NS] + [v[0] for v in CONTAINERS.values()]
LOCK = "/run/wscaplab.lock"
LOCK_WAIT = 300


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def no_ipv6(ns, dev):
    """The lab's links carry IPv4 only. Without this each new link gets an
    IPv6 link-local address whose duplicate-address detection finishes a
    second or two after setup; Chromium's network-change notifier sees it and
    aborts the page load with net::ERR_NETWORK_CHANGED (seen in CI)."""
    sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1", check=False)


def ns_exists(name):
    return Path(f"/run/netns/{name}").exists()


class Lab:
    def __init__(self, workdir: Path, log=print):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logdir = self.workdir / "logs"
        self.logdir.mkdir(exist_ok=True)
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.log = log
        self._lockf = None

    # -- lifecycle -----------------------------------------------------
    def __enter__(self):
        self._lockf = open(LOCK, "w")
        t0 = time.time()
        while True:
            try:
                fcntl.flock(self._lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # Another run (e.g. the live test in a parallel pytest) owns
                # the namespaces: wait for it rather than fail.
                if time.time() - t0 > LOCK_WAIT:
                    raise SystemExit(
                        f"another lab run has held {LOCK} for {LOCK_WAIT}s"
                    )
                if int(time.time() - t0) % 15 == 0:
                    self.log(f"waiting for {LOCK} (another lab run)")
                time.sleep(1)
        self.teardown_network()  # leftovers of a crashed run (our names only)
        return self

    def __exit__(self, *exc):
        self.stop_all()
        self.teardown_network()
        if self._lockf:
            self._lockf.close()
        return False

    def setup_network(self, hosts_overrides: dict | None = None, dead_host_for=None):
        """hosts_overrides: name -> ip or None (None = name does not resolve)."""
        sh("ip", "netns", "add", HOST_NS)
        sh("ip", "-n", HOST_NS, "link", "set", "lo", "up")
        sh("ip", "-n", HOST_NS, "link", "add", BRIDGE, "type", "bridge")
        no_ipv6(HOST_NS, BRIDGE)
        # Docker's bridge does not use STP; forward at once.
        sh(
            "ip",
            "-n",
            HOST_NS,
            "link",
            "set",
            BRIDGE,
            "type",
            "bridge",
            "forward_delay",
            "0",
            "stp_state",
            "0",
        )
        sh(
            "ip",
            "-n",
            HOST_NS,
            "addr",
            "add",
            f"{HOST_IP}/{SUBNET_PREFIX}",
            "dev",
            BRIDGE,
        )
        sh("ip", "-n", HOST_NS, "link", "set", BRIDGE, "up")
        names = {name: ip for name, (_ns, ip, _v) in CONTAINERS.items()}
        names.update(hosts_overrides or {})
        for ns, ip, veth in CONTAINERS.values():
            sh("ip", "netns", "add", ns)
            sh(
                "ip",
                "link",
                "add",
                veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
            sh("ip", "link", "set", veth, "netns", HOST_NS)
            no_ipv6(HOST_NS, veth)
            no_ipv6(ns, "eth0")
            sh("ip", "-n", HOST_NS, "link", "set", veth, "master", BRIDGE, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/{SUBNET_PREFIX}", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            lines = [
                "127.0.0.1\tlocalhost",
                "::1\tlocalhost ip6-localhost ip6-loopback",
            ]
            for n, nip in names.items():
                if nip is not None:
                    lines.append(f"{nip}\t{n}")
            (etc / "hosts").write_text("\n".join(lines) + "\n")
            (etc / "resolv.conf").write_text(
                "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
            )
        if dead_host_for:
            # The name resolves to an address whose "container" is gone. A
            # permanent neighbour entry lets the SYNs reach the wire (the
            # bridge floods them) where nobody answers.
            ns = CONTAINERS[dead_host_for][0]
            sh(
                "ip",
                "-n",
                ns,
                "neigh",
                "replace",
                DEAD_IP,
                "lladdr",
                DEAD_MAC,
                "dev",
                "eth0",
                "nud",
                "permanent",
            )
        # Wait for the bridge ports to forward.
        time.sleep(0.3)

    def teardown_network(self):
        for ns in ALL_NS:
            if ns_exists(ns):
                # Leftovers of an interrupted run: whatever still runs inside
                # *our* namespaces, by PID (ip netns pids), then the namespace.
                r = sh("ip", "netns", "pids", ns, check=False)
                for pid in r.stdout.split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                sh("ip", "netns", "del", ns, check=False)
            etc = Path("/etc/netns") / ns
            if etc.is_dir():
                shutil.rmtree(etc, ignore_errors=True)

    # -- processes -----------------------------------------------------
    def spawn(self, name, ns, argv, env=None, cwd=None, stdout_file=True):
        logf = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child, closed with it
        full_env = dict(os.environ)
        full_env.update(env or {})
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdout=logf if stdout_file else subprocess.PIPE,
            stderr=logf if stdout_file else subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            start_new_session=True,  # own process group: stopped by its id only
        )
        self.procs.append((name, p))
        return p

    def stop(self, p: subprocess.Popen, sig=signal.SIGTERM, timeout=3.0):
        if p.poll() is not None:
            return
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)

    def stop_all(self):
        for _name, p in reversed(self.procs):
            self.stop(p)
        self.procs.clear()

    def wait_listening(self, ns, port, proc=None, timeout=40.0, name="?"):
        t0 = time.time()
        while time.time() - t0 < timeout:
            r = sh(
                "ip",
                "netns",
                "exec",
                ns,
                "ss",
                "-Hltn",
                f"sport = :{port}",
                check=False,
            )
            if r.stdout.strip():
                return time.time() - t0
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode} before listening on {port}; "
                    f"see {self.logdir / (name + '.log')}"
                )
            time.sleep(0.1)
        raise RuntimeError(f"{name} not listening on {ns}:{port} after {timeout}s")

    # -- capture -------------------------------------------------------
    def start_capture(self, pcap: Path):
        logp = self.logdir / "tcpdump.log"
        p = self.spawn(
            "tcpdump",
            HOST_NS,
            ["tcpdump", "-i", BRIDGE, "-n", "-U", "-Z", "root", "-w", str(pcap), "tcp"],
        )
        t0 = time.time()
        while time.time() - t0 < 10:
            if logp.exists() and b"listening on" in logp.read_bytes():
                return p
            if p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(
            f"tcpdump did not start: {logp.read_text(errors='replace') if logp.exists() else ''}"
        )

    def stop_capture(self, p):
        self.stop(p, sig=signal.SIGINT, timeout=5)

"""A real dockerd for the Compose-path tests, in a network namespace of its own.

Namespace `wscapcmp`, data root /tmp/wscap-compose-docker, socket
/tmp/wscap-compose-docker.sock, default bridge 10.77.0.1/24: names no other test
uses, so it can run beside another helper's dockerd. Started with nsenter (only the
network namespace changes; dockerd keeps the host's cgroup mounts). Stopped by the
PID we started, then the namespace is deleted and the state removed.

Optional TLS on tcp://127.0.0.1:2376 inside the namespace (certificates made with
openssl by `make_certs`), so DOCKER_HOST=tcp:// + DOCKER_TLS_VERIFY is tested against
dockerd's own TLS listener.
"""
from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tarfile
import time

NS = "wscapcmp"
DATA = "/tmp/wscap-compose-docker"
EXEC = "/tmp/wscap-compose-docker-exec"
SOCK = "/tmp/wscap-compose-docker.sock"
PIDFILE = "/tmp/wscap-compose-docker.pid"
LOG = "/tmp/wscap-compose-docker.log"
BIP = "10.77.0.1/24"
DOCKERD = shutil.which("dockerd") or ("/usr/sbin/dockerd" if os.path.exists("/usr/sbin/dockerd") else None)
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")
BUSYBOX = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.exists(p)), None)


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to run dockerd"
    if not DOCKERD or not DOCKER:
        return "dockerd/docker not installed (apt-get install docker.io)"
    if not BUSYBOX:
        return "busybox not installed (apt-get install busybox-static) for the test image"
    if not shutil.which("ip") or not shutil.which("nsenter"):
        return "needs iproute2 and nsenter (util-linux)"
    return None


def busybox_tar(applets: tuple[str, ...] = ("sh", "httpd", "sleep", "nc", "printf", "cat")) -> bytes:
    """A minimal rootfs: static busybox plus the applet links the tests use."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for d in ("bin", "tmp", "www", "etc", "proc", "sys", "dev"):
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o1777 if d == "tmp" else 0o755
            t.addfile(ti)
        t.add(BUSYBOX, "bin/busybox")
        for app in applets:
            ti = tarfile.TarInfo(f"bin/{app}")
            ti.type = tarfile.SYMTYPE
            ti.linkname = "busybox"
            t.addfile(ti)
        page = b"hello\n"
        ti = tarfile.TarInfo("www/index.html")
        ti.size = len(page)
        t.addfile(ti, io.BytesIO(page))
    return buf.getvalue()


def make_certs(d: str) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (openssl)."""
    os.makedirs(d, exist_ok=True)

    def ossl(*a: str) -> None:
        r = subprocess.run(["openssl", *a], cwd=d, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(a)}: {r.stderr.strip()[-300:]}")
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
         "-days", "2", "-subj", "/CN=wscap test CA")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}-key.pem", "-out", f"{who}.csr",
             "-subj", f"/CN={'127.0.0.1' if who == 'server' else 'wscap-client'}")
        ossl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
             "-out", f"{who}-cert.pem", "-days", "2", "-extfile", f"{who}.ext")
    # The docker CLI's names for the client side.
    shutil.copy(os.path.join(d, "client-cert.pem"), os.path.join(d, "cert.pem"))
    shutil.copy(os.path.join(d, "client-key.pem"), os.path.join(d, "key.pem"))
    return {n: os.path.join(d, n) for n in ("ca.pem", "cert.pem", "key.pem", "server-cert.pem", "server-key.pem")}


class EngineProcess:
    """An Engine API server we start (dockerd here and in tests/test_live_docker.py, Podman's service
    in tests/test_podman_engine.py) in a
    network namespace of our own, driven with the docker CLI over its socket; stopped by the PID
    we started."""

    cli_timeout = 180

    def __init__(self, ns: str, sock: str) -> None:
        self.ns = ns
        self.sock = sock
        self.proc: subprocess.Popen | None = None

    def new_netns(self) -> str | None:
        """A fresh namespace `ns` with lo up; -> why not."""
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        r = subprocess.run(["ip", "netns", "add", self.ns], capture_output=True, text=True)
        if r.returncode != 0:
            return f"cannot create a network namespace: {r.stderr.strip()}"
        subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], capture_output=True)
        return None

    def launch(self, argv: list[str], log_path: str, wait_s: float, what: str = "dockerd",
               env: dict[str, str] | None = None) -> str | None:
        """Run `argv` in the namespace (nsenter, not `ip netns exec`: only the network namespace
        changes, so dockerd keeps seeing the host's cgroup mounts) until the docker CLI gets an
        answer; -> None, or why not (the log's last line)."""
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.ns}", *argv], stdout=log,
                                         stderr=log, env=env, start_new_session=True)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if os.path.exists(self.sock) and self.cli("version").returncode == 0:
                return None
            time.sleep(0.3)
        with open(log_path, errors="replace") as f:
            tail = f.read()[-800:].strip()
        return f"{what} did not start here: {tail.splitlines()[-1] if tail else 'no output'}"

    def cli(self, *args: str, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", self.cli_timeout)
        return subprocess.run([DOCKER, "-H", f"unix://{self.sock}", *args], **kw)

    def ok(self, *args: str, **kw) -> str:
        r = self.cli(*args, **kw)
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace") if isinstance(r.stderr, bytes) else r.stderr
            raise RuntimeError(f"docker {' '.join(args)}: {err.strip()[-400:]}")
        out = r.stdout
        return out.decode(errors="replace").strip() if isinstance(out, bytes) else (out or "").strip()

    def stop_process(self, networks: tuple[str, ...] = ()) -> None:
        """Its containers (then `networks`) removed, the process we started stopped (by its PID),
        the namespace gone."""
        if self.proc is not None and self.proc.poll() is None:
            r = self.cli("ps", "-aq", timeout=30)
            for c in r.stdout.split():
                self.cli("rm", "-f", c.decode(), timeout=60)
            for n in networks:
                self.cli("network", "rm", n, timeout=30)
            os.killpg(self.proc.pid, signal.SIGTERM)   # our nsenter → dockerd (exec'd), by PID
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


def unmount_under(base: str) -> None:
    """vfs layers may hold mounts under a data or exec root: unmount them (deepest first)."""
    mounts = [ln.split()[1] for ln in open("/proc/mounts") if base in ln.split()[1]]
    for m in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


class Engine(EngineProcess):
    """dockerd in netns `wscapcmp` with private state; `cli()` runs the docker CLI against it."""

    def __init__(self, tls_dir: str | None = None):
        super().__init__(NS, SOCK)
        self.tls_dir = tls_dir
        self.certs: dict[str, str] = {}

    def _cleanup_state(self) -> None:
        for base in (EXEC, DATA):
            unmount_under(base)
            shutil.rmtree(base, ignore_errors=True)
        for f in (SOCK, PIDFILE):
            try:
                os.unlink(f)
            except OSError:
                pass

    def start(self) -> str | None:
        if os.path.exists(PIDFILE):
            try:
                pid = int(open(PIDFILE).read())
                os.kill(pid, 0)
                return f"another dockerd already runs with {PIDFILE} (pid {pid})"
            except (OSError, ValueError):
                pass
        self._cleanup_state()
        why = self.new_netns()
        if why:
            return why
        argv = [DOCKERD, "--host", f"unix://{SOCK}",
                "--data-root", DATA, "--exec-root", EXEC, "--pidfile", PIDFILE, "--bip", BIP,
                "--iptables=false", "--ip6tables=false", "--storage-driver", "vfs"]
        if self.tls_dir:
            self.certs = make_certs(self.tls_dir)
            argv += ["--host", "tcp://127.0.0.1:2376", "--tlsverify", "--tlscacert", self.certs["ca.pem"],
                     "--tlscert", self.certs["server-cert.pem"], "--tlskey", self.certs["server-key.pem"]]
        why = self.launch(argv, LOG, 60)
        if why:
            self.stop()
        return why

    def import_busybox(self, tag: str = "wscmp-busybox:test") -> str:
        self.ok("import", "-", tag, input=busybox_tar())
        return tag

    def stop(self) -> None:
        self.stop_process()
        self._cleanup_state()

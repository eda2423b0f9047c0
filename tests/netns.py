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
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

SUBNET_BASE = "10.213"
_SELF = os.path.abspath(__file__)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wscap_argv(*args: str) -> list[str]:
    """argv running `wscap ARGS...` from this checkout."""
    import sys
    return [sys.executable, "-m", "wscap", *args]


def wscap_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("SUDO_UID", None)
    env.pop("SUDO_GID", None)
    env.update(extra)
    return env


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


def start_ws_servers(lab: Lab) -> None:
    """websockets backend on :8080 and the proxy on :8000 (/closed → a closed port)."""
    lab.spawn("backend", sys.executable, _SELF, "backend", "8080")
    lab.spawn("proxy", sys.executable, _SELF, "proxy", "8000",
              f"/closed={lab.ip('backend')}:9999", f"/={lab.ip('backend')}:8080")
    wait_port(lab, "backend", 8080)
    wait_port(lab, "proxy", 8000)


def live_skip_reason() -> str | None:
    """Why the live lab tests cannot run here (None when they can)."""
    ok, why = can_make_netns()
    if not ok:
        return why
    try:
        import websockets  # noqa: F401
    except ImportError:
        return "needs the `websockets` package for the lab backend (pip install websockets)"
    try:
        from wscap.engine.core import Pipeline  # noqa: F401
    except ImportError as e:
        return f"wscap.engine.core not importable yet: {e}"
    return None


def wait_port(lab: Lab, host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until something listens on `port` in `host`'s namespace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = lab.run(host, "ss", "-Hltn", f"sport = :{port}")
        if r.stdout.strip():
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port}")


# ---- driving `wscap live` in tests ---------------------------------------------------------------

class Live:
    """A running `wscap live` subprocess whose stdout lines are collected by a thread."""

    def __init__(self, lab: Lab | None, *args: str, env: dict | None = None):
        """With a lab: `wscap live --netns <lab> --iface <bridge> ARGS`; else `wscap live ARGS`."""
        where = ["--netns", lab.netns_path(), "--iface", lab.bridge] if lab is not None else []
        self.p = subprocess.Popen(
            wscap_argv("live", *where, *args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or wscap_env(),
            start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._pump, args=(self.p.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.p.stderr, self.err.append), daemon=True).start()
        self.out: list[str] = []

    @staticmethod
    def _pump(f, put) -> None:
        for line in f:
            put(line.rstrip("\n"))

    def wait_stderr(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in e for e in self.err):
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"wscap never said {text!r}; stderr: {self.err}")

    def collect(self, until, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(self.out):
            try:
                self.out.append(self.lines.get(timeout=0.1))
            except queue.Empty:
                if self.p.poll() is not None:
                    break
        return self.out

    def stop(self, sig: int, timeout: float = 30) -> int:
        os.kill(self.p.pid, sig)
        rc = self.p.wait(timeout=timeout)
        time.sleep(0.2)  # let the pump threads finish
        while not self.lines.empty():
            self.out.append(self.lines.get())
        return rc


def drive(lab: Lab) -> dict[str, str]:
    got = {}
    for path in ("/ws", "/forbidden", "/closed"):
        r = lab.run("client", sys.executable, _SELF, "client", f"ws://{lab.ip('proxy')}:8000{path}", "2",
                    timeout=30)
        got[path] = r.stdout.strip()
    return got


def reanalyse(paths: list[str], timeout_s: float) -> dict:
    from wscap.capture.files import ReadResult, read_frames
    from wscap.engine.core import Options, Pipeline
    p = Pipeline(Options(timeout_s=timeout_s))
    results = []
    for i, path in enumerate(paths):
        res = ReadResult(path)
        for f in read_frames(path, res, source=0):
            p.feed(f)
        results.append(res)
    p.finish()
    doc = p.document()
    doc["_read"] = [r.to_json() for r in results]
    return doc


# ---- lab programs (run inside the namespaces: `python tests/netns.py ROLE ...`) ---------------

def _backend(port: int) -> None:
    """websockets echo server; /forbidden answers 403 like an origin check would."""
    import asyncio

    from websockets.asyncio.server import serve
    from websockets.http11 import Response
    from websockets.datastructures import Headers

    async def handler(ws):
        async for msg in ws:
            await ws.send(msg)

    def process_request(conn, request):
        if request.path.startswith("/forbidden"):
            return Response(403, "Forbidden", Headers([("Content-Length", "0")]), b"")
        return None

    async def main():
        async with serve(handler, "0.0.0.0", port, process_request=process_request):
            print("ready", flush=True)
            await asyncio.Future()

    asyncio.run(main())


def _proxy(port: int, routes: list[str]) -> None:
    """Hand-rolled asyncio reverse proxy: forwards the upgrade request, then pipes bytes.

    routes: "PREFIX=HOST:PORT" (first match wins). Unreachable upstream → 502.
    """
    import asyncio

    table = []
    for r in routes:
        prefix, _, hp = r.partition("=")
        h, _, p = hp.rpartition(":")
        table.append((prefix, h, int(p)))

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def handle(cr, cw):
        try:
            head = await cr.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            cw.close()
            return
        target = head.split(b" ", 2)[1].decode("latin-1")
        up = next(((h, p) for pre, h, p in table if target.startswith(pre)), None)
        peer = cw.get_extra_info("peername")[0]
        try:
            if up is None:
                raise ConnectionRefusedError
            ur, uw = await asyncio.open_connection(*up)
        except OSError:
            cw.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await cw.drain()
            cw.close()
            return
        lines = head.split(b"\r\n")
        lines.insert(1, b"X-Forwarded-For: " + peer.encode())
        uw.write(b"\r\n".join(lines))
        await uw.drain()
        await asyncio.gather(pipe(cr, uw), pipe(ur, cw))

    async def main():
        srv = await asyncio.start_server(handle, "0.0.0.0", port)
        print("ready", flush=True)
        async with srv:
            await srv.serve_forever()

    asyncio.run(main())


def _client(url: str, messages: int) -> None:
    """One WebSocket handshake (+ echo messages); prints the HTTP status it got."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    try:
        with connect(url, open_timeout=5, close_timeout=2) as ws:
            for i in range(messages):
                ws.send(f"hello {i}")
                ws.recv(timeout=5)
        print("101", flush=True)
    except InvalidStatus as e:
        print(e.response.status_code, flush=True)
    except (OSError, TimeoutError) as e:
        print("error", type(e).__name__, e, flush=True)


def _sink(port: int) -> None:
    """Accept connections and discard what they send."""
    import selectors
    import socket
    sel = selectors.DefaultSelector()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(4096)
    ls.setblocking(False)
    sel.register(ls, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if s is ls:
                try:
                    c, _ = ls.accept()
                except OSError:
                    continue
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ)
            else:
                try:
                    d = s.recv(1 << 20)
                except OSError:
                    d = b""
                if not d:
                    sel.unregister(s)
                    s.close()


def _load(mode: str, host: str, port: int, amount: float) -> None:
    """bulk: send `amount` bytes on one connection; storm: connect/close for `amount` s."""
    import socket
    if mode == "bulk":
        s = socket.create_connection((host, port), timeout=10)
        left = int(amount)
        buf = b"x" * 65536
        while left > 0:
            s.sendall(buf[:left])
            left -= min(left, len(buf))
        s.close()
    else:
        end = time.monotonic() + amount
        n = 0
        while time.monotonic() < end:
            try:
                s = socket.create_connection((host, port), timeout=2)
                s.sendall(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n" + b"y" * 1000)
                s.close()
                n += 1
            except OSError:
                pass
        print(n, flush=True)


if __name__ == "__main__":
    role, args = sys.argv[1], sys.argv[2:]
    if role == "sink":
        _sink(int(args[0]))
    elif role in ("bulk", "storm"):
        _load(role, args[0], int(args[1]), float(args[2]))
    elif role == "backend":
        _backend(int(args[0]))
    elif role == "proxy":
        _proxy(int(args[0]), args[1:])
    elif role == "client":
        _client(args[0], int(args[1]) if len(args) > 1 else 1)
    else:
        raise SystemExit(f"unknown role {role}")

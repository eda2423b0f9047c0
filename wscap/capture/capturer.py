"""Build and drive `wscap-capture`, the C program that captures and writes the evidence file.

Why: with tcpdump piping pcap into Python, `--write` was written by the same loop as the
analysis, so under load the file lost what the analysis lost. `wscap-capture`
(csrc/wscap_capture.c) captures with libpcap and writes the file itself; the analysis
follows the file behind it, told how far it may read by the `flush` lines.

* `helper_path()` (helper_build.py) compiles the C source on first use (`cc -O2 -Wall ... -lpcap`) into a
  cache directory keyed by the source's sha256, so an upgraded wscap never runs a stale
  binary; `unavailable_reason()` says what is missing (compiler, libpcap headers).
  `python -m wscap.capture.capturer --build` does the same from a shell.
* `snaplen_for(ifaces)` (snaplen.py) sizes the snap length from what the interfaces can deliver in one
  frame (GRO/GSO superframes on veth and bridges exceed the MTU).
* `CaptureProcess` starts the program and parses its status protocol without blocking.

Status protocol (stdout of wscap-capture, one event per line):

    file seq=K path=ABS_PATH                      a file was opened (path: rest of the line)
    ready linktypes=L1,L2 snaplen=N tsresol=9|6 format=pcapng|pcap
    flush ts=NS packets=N file=K offset=BYTES     watermark: every packet libpcap handed over
                                                  before wall-clock NS is in file K before OFFSET
    stats if=I recv=N drop=N ifdrop=N             per interface (index in -i order), cumulative
    error KIND MESSAGE                            usage nodev perm filter open write ifgone
    end reason=stopped|count|write-error|ifgone packets=N

Exit status: 0 ended (also after ifgone), 2 could not start, 3 write error (the file is
cut back to its last whole record).
"""
from __future__ import annotations

import atexit
import ctypes
import fcntl
import os
import select
import signal
import subprocess
import sys
import time
import weakref
from typing import Any, Callable, Iterable

from wscap.capture.helper_build import SOURCE, helper_path, unavailable_reason
from wscap.capture.snaplen import MAX_SNAPLEN, MIN_SNAPLEN, snaplen_for

__all__ = ["CaptureProcess", "parse_status_line", "helper_path", "unavailable_reason", "snaplen_for", "SOURCE",
           "MIN_SNAPLEN", "MAX_SNAPLEN", "main"]


# ---- the process -----------------------------------------------------------------------------

_LIVE: "weakref.WeakSet[CaptureProcess]" = weakref.WeakSet()


@atexit.register
def _end_all() -> None:
    # Normal interpreter exit: end captures still running (the child also has
    # PR_SET_PDEATHSIG and watches its stdin, for the abnormal exits).
    for cp in list(_LIVE):
        try:
            cp.stop()
            if cp.wait(5) is None:
                cp.kill()
        except Exception:  # noqa: BLE001
            pass


def _setns_preexec(fd: int) -> Callable[[], None]:
    setns = ctypes.CDLL(None, use_errno=True).setns   # resolved before fork

    def enter() -> None:
        if setns(fd, 0x40000000) != 0:     # CLONE_NEWNET
            e = ctypes.get_errno()
            raise OSError(e, f"setns: {os.strerror(e)}")
    return enter


_CAP_NET_ADMIN, _CAP_NET_RAW = 12, 13
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE = 47, 2


def _child_setup(ns_fd: int | None) -> Callable[[], None]:
    """preexec_fn for the capture program: enter the namespace, and pass on capabilities.

    Without root, wscap may capture through file capabilities on the Python binary
    (`setcap cap_net_raw,cap_net_admin=eip`). exec() of a binary without file
    capabilities drops them, unless they are raised into the ambient set, which works
    for capabilities that are permitted and inheritable (exactly what `=eip` gives).
    """
    enter = _setns_preexec(ns_fd) if ns_fd is not None else None
    prctl = ctypes.CDLL(None, use_errno=True).prctl if os.geteuid() != 0 else None

    def setup() -> None:
        if enter is not None:
            enter()
        if prctl is not None:
            for cap in (_CAP_NET_RAW, _CAP_NET_ADMIN):
                prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap, 0, 0)   # fails harmlessly
    return setup


def _in_netns(fd: int, fn: Callable[[], int]) -> int:
    """fn() run in a thread that entered the network namespace `fd` (setns is per thread)."""
    import threading
    box: list[int] = []

    def run() -> None:
        try:
            _setns_preexec(fd)()
            box.append(fn())
        except Exception:  # noqa: BLE001 - fall back to the largest snap length
            box.append(MAX_SNAPLEN)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    return box[0] if box else MAX_SNAPLEN


def _parse_kv(fields: list[str]) -> dict[str, str]:
    out = {}
    for f in fields:
        k, sep, v = f.partition("=")
        if sep:
            out[k] = v
    return out


def _int(v: str | None, default: int = 0) -> int:
    try:
        return int(v) if v is not None else default
    except ValueError:
        return default


def parse_status_line(line: str) -> dict[str, Any] | None:
    """One status line -> event dict ({"kind": ...}); None for a line we do not know."""
    word, _, rest = line.partition(" ")
    if word == "file":
        seq_part, _, path_part = rest.partition(" ")
        if not seq_part.startswith("seq=") or not path_part.startswith("path="):
            return None
        return {"kind": "file", "seq": _int(seq_part[4:]), "path": path_part[5:]}
    if word == "error":
        what, _, msg = rest.partition(" ")
        return {"kind": "error", "error": what, "message": msg}
    kv = _parse_kv(rest.split())
    if word == "flush":
        return {"kind": "flush", "ts": _int(kv.get("ts")), "packets": _int(kv.get("packets")),
                "file": _int(kv.get("file")), "offset": _int(kv.get("offset"))}
    if word == "stats":
        return {"kind": "stats", "if": _int(kv.get("if")), "recv": _int(kv.get("recv")),
                "drop": _int(kv.get("drop")), "ifdrop": _int(kv.get("ifdrop"))}
    if word == "ready":
        lts = [_int(x) for x in kv.get("linktypes", "").split(",") if x]
        return {"kind": "ready", "linktypes": lts, "snaplen": _int(kv.get("snaplen")),
                "tsresol": _int(kv.get("tsresol"), 6), "format": kv.get("format", "pcapng")}
    if word == "end":
        return {"kind": "end", "reason": kv.get("reason", "stopped"), "packets": _int(kv.get("packets"))}
    return None


class CaptureProcess:
    """A running wscap-capture: its status events, read without blocking.

    Use `fileno()` in select()/selectors and call `poll()` when it is readable (or on
    every tick); `poll()` returns the new events and updates `files`, `flush`, `stats`,
    `errors`, `ended`, `end_reason`. `stop()` asks for a clean end (the program drains
    the kernel ring, closes the file and prints `end`); `wait()` collects that.

    The child dies with us: it has PR_SET_PDEATHSIG (SIGTERM) and stops when its stdin
    (a pipe from us) reaches EOF. PR_SET_PDEATHSIG fires when the *thread* that spawned
    it ends, so spawn from a thread that lives as long as the capture (the main thread).
    `netns` (a path like /run/netns/NAME, or an open fd) starts it inside that network
    namespace (setns in the child between fork and exec; this process is unaffected).
    """

    def __init__(self, ifaces: Iterable[str], path: str, bpf: str = "", snaplen: int | None = None,
                 buffer_mb: int = 32, timeout_ms: int = 20, promisc: bool = True,
                 ring_bytes: int = 0, ring_files: int = 0, nrb_path: str | None = None,
                 run_as: tuple[int, int] | None = None, count: int | None = None,
                 netns: str | int | None = None, helper: str | None = None):
        from wscap.capture.live import BackendMissing
        self.ifaces = list(ifaces) or ["any"]
        self.path = path
        self.bpf = bpf
        exe = helper or helper_path()
        if not exe:
            raise BackendMissing(f"the capture helper wscap-capture is unavailable: {unavailable_reason()}")
        ns_fd, own_fd = None, False
        if isinstance(netns, str):
            ns_fd, own_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC), True
        elif isinstance(netns, int):
            ns_fd = netns
        try:
            self._spawn(exe, snaplen, buffer_mb, timeout_ms, promisc, ring_bytes, ring_files,
                        nrb_path, run_as, count, ns_fd)
        finally:
            if own_fd and ns_fd is not None:
                os.close(ns_fd)
        _LIVE.add(self)

    def _spawn(self, exe: str, snaplen: int | None, buffer_mb: int, timeout_ms: int, promisc: bool,
               ring_bytes: int, ring_files: int, nrb_path: str | None, run_as: tuple[int, int] | None,
               count: int | None, ns_fd: int | None) -> None:
        from wscap.capture.live import BackendMissing
        if snaplen is None:
            snaplen = (snaplen_for(self.ifaces) if ns_fd is None
                       else _in_netns(ns_fd, lambda: snaplen_for(self.ifaces)))
        argv = [exe, "-w", self.path]
        for i in self.ifaces:
            argv += ["-i", i]
        if self.bpf:
            argv += ["-f", self.bpf]
        argv += ["-s", str(int(snaplen)), "-B", str(int(buffer_mb)), "-t", str(int(timeout_ms))]
        if not promisc:
            argv.append("-p")
        if ring_files:
            argv += ["-C", str(int(ring_bytes)), "-W", str(int(ring_files))]
        if nrb_path:
            argv += ["-n", nrb_path]
        if run_as is not None:
            argv += ["-Z", f"{int(run_as[0])}:{int(run_as[1])}"]
        if count:
            argv += ["-c", str(int(count))]
        self.argv = argv
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                # Own session: a terminal's Ctrl-C goes to wscap, which stops us cleanly.
                start_new_session=True, close_fds=True,
                preexec_fn=_child_setup(ns_fd))
        except OSError as e:
            raise BackendMissing(f"cannot run {exe}: {e}") from e
        except subprocess.SubprocessError as e:     # setns failed in the child
            from wscap.capture.live import CaptureError
            raise CaptureError(f"cannot enter the network namespace for the capture: {e}") from e
        assert self.proc.stdout and self.proc.stderr
        self._out = self.proc.stdout.fileno()
        self._err = self.proc.stderr.fileno()
        for fd in (self._out, self._err):
            fl = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
        self._buf = b""
        self._eof = False
        self.stderr = b""
        self.ready = False
        self.format = ""
        self.linktypes: list[int] = []
        self.snaplen = 0
        self.tsresol = 0
        self.files: list[tuple[int, str]] = []
        self.flush: dict[str, Any] | None = None
        self._stats: dict[int, dict[str, int]] = {}
        self.errors: list[tuple[str, str]] = []
        self.ended = False
        self.end_reason: str | None = None
        self.end_packets: int | None = None
        self.returncode: int | None = None

    # -- reading ---------------------------------------------------------------------------
    def fileno(self) -> int:
        return self._out

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> list[dict[str, Any]]:
        """Read what the program has said so far; returns the new events in order."""
        events: list[dict[str, Any]] = []
        while not self._eof:
            try:
                data = os.read(self._out, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self._eof = True
                break
            self._buf += data
            *lines, self._buf = self._buf.split(b"\n")
            for raw in lines:
                ev = parse_status_line(raw.decode("utf-8", "surrogateescape"))
                if ev is not None:
                    self._apply(ev)
                    events.append(ev)
            if len(self._buf) > 1 << 16:     # a line that never ends: not our program
                self._buf = b""
        self._read_stderr()
        if self._eof and self.returncode is None:
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                if not self.ended:
                    self.ended = True
                    self.end_reason = self.end_reason or ("crashed" if rc < 0 or rc not in (0, 2, 3) else "exited")
        return events

    def _read_stderr(self) -> None:
        while True:
            try:
                data = os.read(self._err, 1 << 16)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            self.stderr = (self.stderr + data)[-8192:]

    def _apply(self, ev: dict[str, Any]) -> None:
        k = ev["kind"]
        if k == "file":
            self.files.append((ev["seq"], ev["path"]))
        elif k == "flush":
            self.flush = ev
        elif k == "stats":
            self._stats[ev["if"]] = {"recv": ev["recv"], "drop": ev["drop"], "ifdrop": ev["ifdrop"]}
        elif k == "error":
            self.errors.append((ev["error"], ev["message"]))
        elif k == "ready":
            self.ready = True
            self.linktypes = ev["linktypes"]
            self.snaplen = ev["snaplen"]
            self.tsresol = ev["tsresol"]
            self.format = ev["format"]
        elif k == "end":
            self.ended = True
            self.end_reason = ev["reason"]
            self.end_packets = ev["packets"]

    @property
    def stats(self) -> dict[str, Any]:
        """Per-interface and total kernel counters from the latest `stats` lines."""
        per = []
        for i, name in enumerate(self.ifaces):
            s = self._stats.get(i, {"recv": 0, "drop": 0, "ifdrop": 0})
            per.append({"if": i, "name": name, **s})
        return {"interfaces": per, "recv": sum(p["recv"] for p in per),
                "drop": sum(p["drop"] for p in per), "ifdrop": sum(p["ifdrop"] for p in per)}

    @property
    def packets(self) -> int:
        """Packets written to the file(s) so far (from the latest flush or the end line)."""
        if self.end_packets is not None:
            return self.end_packets
        return self.flush["packets"] if self.flush else 0

    # -- lifecycle -------------------------------------------------------------------------
    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until `ready`; raise the matching CaptureError if the program cannot start."""
        from wscap.capture.live import CaptureError
        deadline = time.monotonic() + timeout
        while not self.ready:
            self.poll()
            if self.ready:
                return
            if self.errors and (self._eof or self.ended):
                self.wait(5)
                raise self._startup_error()
            if self._eof:
                self.wait(5)
                if self.errors:
                    raise self._startup_error()
                raise CaptureError(f"wscap-capture exited (status {self.returncode}) before it was ready"
                                   + (": " + self.stderr.decode("utf-8", "replace").strip() if self.stderr else ""))
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise CaptureError(f"wscap-capture did not start within {timeout:.0f}s")
            select.select([self._out], [], [], min(left, 0.2))

    def _startup_error(self) -> Exception:
        from wscap.capture.live import CaptureError, NoSuchInterface, _filter_error, _perm_error
        kind, msg = self.errors[0]
        if kind == "nodev":
            name = msg.split(":", 1)[0] if ":" in msg else (self.ifaces[0] if self.ifaces else "")
            try:
                from wscap.capture.ifaces import describe_missing
                return NoSuchInterface(describe_missing(name))
            except Exception:  # noqa: BLE001 - the plain message is still right
                return NoSuchInterface(f"interface {name!r} does not exist: {msg}")
        if kind == "perm":
            return _perm_error(msg)
        if kind == "filter":
            return _filter_error(self.bpf, msg)
        return CaptureError(f"wscap-capture: {kind}: {msg}")

    def stop(self) -> None:
        """Ask for a clean end: SIGTERM and EOF on its stdin (either one suffices)."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def wait(self, timeout: float | None = None) -> int | None:
        """Read events until the program exits; its exit status, or None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._eof:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            select.select([self._out], [], [], 0.2 if left is None else min(left, 0.2))
            self.poll()
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            rc = self.proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            return None
        self.poll()
        self.returncode = rc
        if not self.ended:
            self.ended = True
            self.end_reason = "crashed" if rc < 0 else "exited"
        self._close_pipes()
        _LIVE.discard(self)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.poll()
        self.returncode = self.proc.returncode
        if not self.ended:
            self.ended = True
            self.end_reason = "killed"
        self._close_pipes()
        _LIVE.discard(self)

    def _close_pipes(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f and not f.closed:
                try:
                    f.close()
                except OSError:
                    pass
        self._eof = True

    def __enter__(self) -> "CaptureProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.wait(10) is None:
            self.kill()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["--build"]:
        print("usage: python -m wscap.capture.capturer --build", file=sys.stderr)
        return 2
    p = helper_path(build=True)
    if p:
        print(p)
        return 0
    print(unavailable_reason())
    return 1


if __name__ == "__main__":
    sys.exit(main())

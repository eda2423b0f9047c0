"""Build and drive `wscap-capture`, the C program that captures and writes the evidence file.

Why: with tcpdump piping pcap into Python, `--write` was written by the same loop as the
analysis, so under load the file lost what the analysis lost. `wscap-capture`
(csrc/wscap_capture.c) captures with libpcap and writes the file itself; the analysis
follows the file behind it, told how far it may read by the `flush` lines.

* `helper_path()` compiles the C source on first use (`cc -O2 -Wall ... -lpcap`) into a
  cache directory keyed by the source's sha256, so an upgraded wscap never runs a stale
  binary; `unavailable_reason()` says what is missing (compiler, libpcap headers).
  `python -m wscap.capture.capturer --build` does the same from a shell.
* `snaplen_for(ifaces)` sizes the snap length from what the interfaces can deliver in one
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
import hashlib
import os
import select
import signal
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import weakref
from typing import Any, Iterable

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "wscap_capture.c")
MIN_SNAPLEN = 1600
MAX_SNAPLEN = 262144
LINK_HEADER_MAX = 20          # SLL2, the largest link header we capture
DEFAULT_FRAME = 65536         # GSO/GRO default when an interface cannot be asked

_reason = ""                  # why helper_path() returned None, for unavailable_reason()


# ---- build -------------------------------------------------------------------------------

def _source_digest() -> str:
    with open(SOURCE, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def _safe_dir(path: str) -> bool:
    """A directory we may run a binary from: ours, and nobody else can write to it.

    Matters when wscap runs as root (sudo keeps $HOME or $XDG_CACHE_HOME pointing at a
    user's directory): a binary another user can replace would run as root.
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def cache_dirs() -> list[str]:
    """Where the binary is built, in order of preference."""
    out = []
    if os.environ.get("WSCAP_HELPER_DIR"):
        out.append(os.environ["WSCAP_HELPER_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    out.append(os.path.join(xdg, "wscap") if xdg else os.path.join(os.path.expanduser("~"), ".cache", "wscap"))
    out.append(os.path.join(tempfile.gettempdir(), f"wscap-helper-{os.geteuid()}"))
    return out


def _usable_binary(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and os.access(path, os.X_OK))


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc and shutil.which(cc):
        return shutil.which(cc)
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _explain_build_failure(out: str) -> str:
    low = out.lower()
    if "pcap.h" in low and ("no such file" in low or "not found" in low or "no include path" in low):
        return "libpcap headers missing (apt install libpcap-dev)"
    if "-lpcap" in low:
        return "libpcap missing (apt install libpcap-dev)"
    first = next((ln.strip() for ln in out.splitlines() if "error" in ln.lower()), out.strip()[:200])
    return f"building wscap-capture failed: {first}"


def _find_built() -> str | None:
    if not os.path.exists(SOURCE):
        return None
    name = f"wscap-capture-{_source_digest()}"
    for d in cache_dirs():
        p = os.path.join(d, name)
        if _usable_binary(p):
            return p
    return None


def helper_path(build: bool = True) -> str | None:
    """Path of a wscap-capture binary built from this wscap's source, or None.

    With build=True a missing binary is compiled (once; concurrent callers wait on a lock
    and the result is renamed into place atomically). None means unavailable; see
    unavailable_reason().
    """
    global _reason
    if not os.path.exists(SOURCE):
        _reason = f"the C source is missing from this installation ({SOURCE})"
        return None
    found = _find_built()
    if found:
        _reason = ""
        return found
    # An installed copy (e.g. /usr/local/bin in wscap's container image, where no compiler is).
    installed = shutil.which("wscap-capture")
    if installed and _usable_binary(installed):
        _reason = ""
        return installed
    if not build:
        return None
    name = f"wscap-capture-{_source_digest()}"
    dirs = cache_dirs()
    cc = _compiler()
    if not cc:
        _reason = "no C compiler (apt install gcc)"
        return None
    last = "no writable cache directory for the helper (set WSCAP_HELPER_DIR)"
    for d in dirs:
        if not _safe_dir(d):
            continue
        target = os.path.join(d, name)
        try:
            lock = os.open(os.path.join(d, ".build.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _usable_binary(target):       # built by someone else while we waited
                _reason = ""
                return target
            tmp = f"{target}.tmp{os.getpid()}"
            try:
                r = subprocess.run([cc, "-O2", "-Wall", "-o", tmp, SOURCE, "-lpcap"],
                                   capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as e:
                r = None
                _reason = f"building wscap-capture failed: {e}"
            if r is None or r.returncode != 0:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                if r is None:
                    return None
                _reason = _explain_build_failure(r.stderr + r.stdout)
                return None
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)
            _reason = ""
            return target
        finally:
            os.close(lock)
    _reason = last
    return None


def unavailable_reason() -> str:
    """Why helper_path() gives None ("" when the helper is available)."""
    if _find_built():
        return ""
    if _reason:                      # the last build attempt's own words
        return _reason
    if not _compiler():
        return "no C compiler (apt install gcc)"
    if not any(os.path.exists(os.path.join(p, "pcap", "pcap.h")) for p in ("/usr/include", "/usr/local/include")):
        return "libpcap headers missing (apt install libpcap-dev)"
    return "not built yet (python -m wscap.capture.capturer --build)"


# ---- snap length ---------------------------------------------------------------------------

_IFLA_IFNAME, _IFLA_MTU, _IFLA_GSO_MAX_SIZE, _IFLA_GRO_MAX_SIZE = 3, 4, 41, 58
_IFLA_GSO_IPV4_MAX_SIZE, _IFLA_GRO_IPV4_MAX_SIZE = 63, 64


def _links_netlink() -> dict[str, int] | None:
    """{ifname: largest of mtu/gso/gro sizes} of this thread's network namespace (RTM_GETLINK).

    Netlink rather than /sys/class/net: sysfs shows the namespace it was mounted in,
    while a socket belongs to the namespace of the thread that opens it.
    """
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)   # NETLINK_ROUTE
    except OSError:
        return None
    out: dict[str, int] = {}
    try:
        s.settimeout(2)
        s.bind((0, 0))
        # nlmsghdr(len, type=RTM_GETLINK 18, flags=REQUEST|DUMP 0x301, seq, pid) + ifinfomsg
        req = struct.pack("=IHHII", 32, 18, 0x301, 1, 0) + struct.pack("=BxHiII", 0, 0, 0, 0, 0)
        s.send(req)
        done = False
        while not done:
            data = s.recv(1 << 16)
            if not data:
                break
            off = 0
            while off + 16 <= len(data):
                ln, typ = struct.unpack_from("=IH", data, off)
                if ln < 16:
                    done = True
                    break
                if typ == 3:           # NLMSG_DONE
                    done = True
                    break
                if typ == 2:           # NLMSG_ERROR
                    return None
                if typ == 16:          # RTM_NEWLINK
                    a = off + 16 + 16
                    name, best = None, 0
                    while a + 4 <= off + ln:
                        alen, atype = struct.unpack_from("=HH", data, a)
                        if alen < 4:
                            break
                        val = data[a + 4:a + alen]
                        atype &= 0x3FFF
                        if atype == _IFLA_IFNAME:
                            name = val.split(b"\0", 1)[0].decode("utf-8", "replace")
                        elif atype in (_IFLA_MTU, _IFLA_GSO_MAX_SIZE, _IFLA_GRO_MAX_SIZE,
                                       _IFLA_GSO_IPV4_MAX_SIZE, _IFLA_GRO_IPV4_MAX_SIZE) and len(val) >= 4:
                            best = max(best, struct.unpack_from("=I", val)[0])
                        a += (alen + 3) & ~3
                    if name:
                        out[name] = best
                off += (ln + 3) & ~3
    except OSError:
        return None
    finally:
        s.close()
    return out


def _links_sysfs(names: Iterable[str]) -> dict[str, int]:
    out = {}
    for n in names:
        best = 0
        for f in ("mtu", "gso_max_size", "gro_max_size", "gso_ipv4_max_size", "gro_ipv4_max_size"):
            try:
                with open(f"/sys/class/net/{n}/{f}") as fh:
                    best = max(best, int(fh.read().strip()))
            except (OSError, ValueError):
                pass
        if best:
            out[n] = best
    return out


def snaplen_for(ifaces: Iterable[str]) -> int:
    """Snap length that captures every frame of these interfaces whole.

    The largest of each interface's MTU, gso_max_size and gro_max_size (GRO/TSO
    superframes on veth/docker0 exceed the MTU), plus the largest link header (SLL2, 20
    bytes); at least 1600, at most 262144 (libpcap's maximum). An interface we cannot
    ask counts as 64 KiB (the kernel's default GSO size); "any" means every interface.
    """
    names = list(ifaces) or ["any"]
    links = _links_netlink()
    if links is None:
        try:
            all_names = os.listdir("/sys/class/net")
        except OSError:
            all_names = []
        links = _links_sysfs(set(all_names) | {n for n in names if n != "any"})
    best = 0
    for n in names:
        if n == "any":
            best = max([best, *links.values()] if links else [best, DEFAULT_FRAME])
        else:
            best = max(best, links.get(n) or DEFAULT_FRAME)
    return max(MIN_SNAPLEN, min(MAX_SNAPLEN, best + LINK_HEADER_MAX))


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


def _setns_preexec(fd: int):
    setns = ctypes.CDLL(None, use_errno=True).setns   # resolved before fork

    def enter() -> None:
        if setns(fd, 0x40000000) != 0:     # CLONE_NEWNET
            e = ctypes.get_errno()
            raise OSError(e, f"setns: {os.strerror(e)}")
    return enter


_CAP_NET_ADMIN, _CAP_NET_RAW = 12, 13
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE = 47, 2


def _child_setup(ns_fd: int | None):
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


def _in_netns(fd: int, fn):
    """fn() run in a thread that entered the network namespace `fd` (setns is per thread)."""
    import threading
    box: list = []

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

    def _spawn(self, exe, snaplen, buffer_mb, timeout_ms, promisc, ring_bytes, ring_files,
               nrb_path, run_as, count, ns_fd) -> None:
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

    def __exit__(self, *exc) -> None:
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

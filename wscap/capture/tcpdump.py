"""`tcpdump -w FILE` as the evidence writer, the fallback when wscap-capture cannot be built: the
same state as wscap.capture.capturer.CaptureProcess (`files`, `flush`, `stats`, `errors`,
`ended`, `end_reason`, `packets`), worked out from tcpdump's files and its stderr."""
from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time

from wscap.capture.live import (BackendMissing, CaptureConfig, CaptureError,
                                _filter_error, _iface_error, _pdeathsig, _perm_error, _set_nonblock)


# The guard: starts tcpdump, relays our requests ("u" = print statistics, "t" = stop)
# as signals, and ends tcpdump when its stdin reaches EOF, i.e. when wscap is gone
# however it died. Once tcpdump has switched user, the guard switches to the same one.
_GUARD = r"""
import os, select, signal, subprocess, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
try:
    p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
except OSError as e:
    sys.stderr.write("tcpdump: %s\n" % e); sys.exit(127)
def end(sig=signal.SIGTERM):
    try:
        p.send_signal(sig); p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()
signal.signal(signal.SIGTERM, lambda *a: (end(), sys.exit(p.returncode or 0)))
dropped = os.geteuid() != 0
def follow():
    # Become whoever tcpdump became (-Z / Debian's "tcpdump" user): the guard needs
    # no more than that to signal it, so it does not stay root.
    global dropped
    try:
        with open("/proc/%d/status" % p.pid) as f:
            st = dict(l.split(":", 1) for l in f if ":" in l)
        uid, gid = int(st["Uid"].split()[1]), int(st["Gid"].split()[1])
    except (OSError, KeyError, ValueError):
        return
    if uid != 0:
        os.setgroups([]); os.setresgid(gid, gid, gid); os.setresuid(uid, uid, uid)
        dropped = True
while True:
    if not dropped:
        follow()
    try:
        r, _, _ = select.select([0], [], [], 0.5 if dropped else 0.02)
    except InterruptedError:
        continue
    if p.poll() is not None:
        sys.exit(p.returncode if p.returncode >= 0 else 128 - p.returncode)
    if r:
        cmd = os.read(0, 64)
        if not cmd:
            end(); sys.exit(0)
        for c in cmd:
            if c == 117:   # u
                p.send_signal(signal.SIGUSR1)
            elif c == 116: # t
                p.send_signal(signal.SIGTERM)
"""


_TCPDUMP_STAT = re.compile(rb"(\d+) packets? (captured|received by filter|dropped by kernel"
                           rb"|dropped by interface)")


_LINKTYPES = {"EN10MB": 1, "LINUX_SLL2": 276, "LINUX_SLL": 113, "RAW": 101, "NULL": 0}


class TcpdumpWriter:
    """`tcpdump -w FILE` as the evidence writer (the fallback when wscap-capture cannot be built).

    No `--immediate-mode`: libpcap then uses TPACKET_V3, whose blocks pack frames
    (a 256 KiB snaplen costs no ring slots); tcpdump's 1 s buffer timeout bounds
    how late a packet reaches the file at idle, so this writer's watermark slack is
    1.2 s. `-C MB` splits a spool into FILE, FILE1, FILE2, … which the follower
    deletes once read; a user's ring (`--ring-files`) needs wscap-capture.

    The spool is bounded like wscap-capture's (`--spool-mb`): tcpdump's own `-W` would reuse
    the names (FILE0…FILE7) and truncate a file the follower may still be reading, so the
    names stay unique and a thread deletes every file older than the newest `keep_files`
    (the follower, finding one gone, counts it: `live.loss.spool_overwritten_files`). The spool
    directory is private (0700); a spool file that is a symbolic link all the same stops the
    capture.
    """

    name = "tcpdump"
    slack_ns = 1_200_000_000
    poll_interval = 0.02       # tcpdump says nothing per write: the follower polls the file

    def __init__(self, cfg: CaptureConfig, path: str, split_mb: int = 0, count: int | None = None,
                 start_timeout: float = 10.0, keep_files: int = 0):
        self.cfg = cfg
        self.binary = shutil.which("tcpdump") or ""
        if not self.binary:
            raise BackendMissing("the tcpdump backend needs tcpdump: `sudo apt-get install tcpdump`")
        self.path = path
        self.split = split_mb > 0
        self.files: list[tuple[int, str]] = []
        self.errors: list[tuple[str, str]] = []
        self.flush = None          # tcpdump reports no flushes
        self.ended = False
        self.end_reason: str | None = None
        self._stderr = b""
        self._stats = {"captured": 0, "received": 0, "dropped": 0, "ifdropped": 0}
        self._stopping = False
        self._stop_at: float | None = None
        self._next_space_check = 0.0
        self._announced = 0
        self.keep_files = keep_files if split_mb else 0
        self._created = 0          # spool files known to exist (or to have existed): FILE .. FILE<k-1>
        self._trimmed = 0          # spool files below this number were deleted to keep the bound
        self.trimmed_files = 0     # ... of which this many were still there (not yet read)
        self._lock = threading.Lock()
        self._bound_stop = threading.Event()
        cmd = [self.binary, "-i", cfg.iface, "-U", "-w", path, "-s", str(cfg.snaplen),
               "-B", str(cfg.buffer_mb * 1024)]
        if split_mb:
            cmd += ["-C", str(split_mb)]
        if count:
            cmd += ["-c", str(count)]
        if not cfg.promisc:
            cmd.append("-p")
        if cfg.iface == "any":
            cmd += ["-y", "LINUX_SLL2"]
        cmd += ["-Z", cfg.run_as or "root"]   # -Z root: keep the spool/--write owner we chose
        if cfg.bpf:
            cmd.append(cfg.bpf)
        self.cmd = cmd
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", _GUARD, *cmd], stdin=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         preexec_fn=_pdeathsig, start_new_session=True)
        except OSError as e:
            raise BackendMissing(f"cannot run {self.binary}: {e}") from e
        assert self.proc.stderr
        self._err = self.proc.stderr.fileno()
        _set_nonblock(self._err)
        deadline = time.monotonic() + start_timeout
        while b"listening on" not in self._stderr:
            select.select([self._err], [], [], 0.05)
            self._read_err()
            if self.proc.poll() is not None:
                self._read_err()
                self._raise_start_error()
            if time.monotonic() > deadline:
                self.kill()
                raise CaptureError(f"tcpdump did not start within {start_timeout:.0f}s: "
                                   + self._stderr.decode("utf-8", "replace").strip())
        m = re.search(rb"link-type (\S+)", self._stderr)
        self.linktypes = [_LINKTYPES.get(m.group(1).decode() if m else "EN10MB", 1)]
        if self.split:
            # Not from poll() alone: poll runs between analysis bites, and a lagging analysis is
            # exactly when tcpdump gets ahead.
            threading.Thread(target=self._bound_loop, name="wscap-spool-bound", daemon=True).start()

    def _bound_loop(self) -> None:
        while not self._bound_stop.wait(0.05):
            self._bound_spool()
            if self.proc.poll() is not None:
                self._bound_spool()
                return

    def _bound_spool(self) -> None:
        """Learn which spool files tcpdump created; delete those older than the newest keep_files."""
        with self._lock:
            while os.path.lexists(self._name(self._created)):
                name = self._name(self._created)
                if os.path.islink(name) and not self._stopping:
                    self.errors.append(("write", f"{name}: is a symbolic link; refusing to follow it"))
                    self.end_reason = "write-error"
                    self._stopping = True
                    self._stop_at = time.monotonic()
                self._created += 1
            while self.keep_files and self._trimmed < self._created - self.keep_files:
                try:
                    os.unlink(self._name(self._trimmed))
                    self.trimmed_files += 1
                except FileNotFoundError:
                    pass                       # read (and deleted) by the follower in time
                except OSError:
                    pass
                self._trimmed += 1

    def _raise_start_error(self) -> None:
        err = self._stderr.decode("utf-8", "replace").strip()
        low = err.lower()
        self.kill()
        if "no such device" in low or "doesn't exist" in low or "no such interface" in low:
            raise _iface_error(self.cfg.iface)
        if "permitted" in low or "permission" in low or "you don't have" in low:
            raise _perm_error(err)
        if "syntax error" in low or "parse filter" in low or "filter" in low and "expression" in low:
            detail = err.splitlines()[-1] if err else "syntax error"
            raise _filter_error(self.cfg.bpf, detail.replace("tcpdump: ", ""))
        raise CaptureError(f"tcpdump failed to start (exit {self.proc.returncode}): {err}")

    def _read_err(self) -> None:
        while True:
            try:
                data = os.read(self._err, 65536)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            self._stderr += data
            key = {b"captured": "captured", b"received by filter": "received",
                   b"dropped by kernel": "dropped", b"dropped by interface": "ifdropped"}
            for m in _TCPDUMP_STAT.finditer(self._stderr):
                self._stats[key[m.group(2)]] = int(m.group(1))
            if len(self._stderr) > 65536:
                self._stderr = self._stderr[-32768:]

    def fileno(self) -> int:
        return self._err

    def _name(self, k: int) -> str:
        return self.path if k == 0 else f"{self.path}{k}"

    def _check_space(self) -> None:
        # tcpdump ignores failed writes (pcap_dump has no error path): watch the disk ourselves.
        now = time.monotonic()
        if self._stopping or now < self._next_space_check:
            return
        self._next_space_check = now + 0.5
        try:
            st = os.statvfs(os.path.dirname(self.path) or ".")
        except OSError:
            return
        if st.f_bavail * st.f_frsize < self.cfg.snaplen + 64:
            self.errors.append(("write", f"disk full: no space left on the filesystem of {self.path}"))
            self.end_reason = "write-error"
            self._stopping = True
            self._stop_at = time.monotonic()

    def poll(self) -> list[dict]:
        self._check_space()
        self._maybe_end()
        self._read_err()
        out: list[dict] = []
        # Files appear in order; FILE<k+1> exists only once FILE<k> is closed. A spool file
        # deleted by the bound before it was read is still announced: the follower counts it.
        if self.split:
            self._bound_spool()
            while self._announced < self._created:
                out.append({"kind": "file", "seq": self._announced, "path": self._name(self._announced)})
                self.files.append((self._announced, self._name(self._announced)))
                self._announced += 1
        elif self._announced == 0 and os.path.exists(self._name(0)):
            out.append({"kind": "file", "seq": 0, "path": self._name(0)})
            self.files.append((0, self._name(0)))
            self._announced = 1
        if not self.ended and self.proc.poll() is not None:
            self._read_err()
            self.ended = True
            if self.end_reason == "write-error":
                pass
            elif self._stopping:
                self.end_reason = "stopped"
            else:
                err = self._stderr.decode("utf-8", "replace")
                lines = [ln for ln in err.splitlines() if ln.strip() and not _TCPDUMP_STAT.search(ln.encode())
                         and "listening on" not in ln]
                why = lines[-1].strip() if lines else f"tcpdump exited with status {self.proc.returncode}"
                gone = [ln.strip() for ln in lines if "went down" in ln or "disappeared" in ln
                        or "no such device" in ln.lower()]
                if gone:                 # the cause may not be tcpdump's last words
                    why = f"interface {self.cfg.iface} went away ({gone[-1]})"
                    self.errors.append(("ifgone", why))
                elif "no space left" in why.lower() or "quota" in why.lower():
                    self.errors.append(("write", f"disk full: {why}"))
                elif self.proc.returncode == 0:
                    why = "count" if "-c" in self.cmd else "capture ended"
                self.end_reason = why
            out.append({"kind": "end", "reason": self.end_reason})
        return out

    @property
    def stats(self) -> dict:
        if self.proc.poll() is None and not self._stopping:
            self._tell(b"u")   # fresh numbers arrive on stderr shortly
        recv = self._stats["received"] or self._stats["captured"]
        return {"recv": recv, "drop": self._stats["dropped"], "ifdrop": self._stats["ifdropped"]}

    @property
    def packets(self) -> int:
        return self._stats["captured"]

    def _tell(self, cmd: bytes) -> None:
        try:
            assert self.proc.stdin
            self.proc.stdin.write(cmd)
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        # tcpdump ends without reading what the kernel ring still holds, and a TPACKET_V3
        # block reaches it up to its 1 s buffer timeout late: let those blocks retire and be
        # written first, then end it.
        self._stopping = True
        if self._stop_at is None:
            self._stop_at = time.monotonic() + 1.2

    def _maybe_end(self) -> None:
        if self._stop_at is not None and time.monotonic() >= self._stop_at and self.proc.poll() is None:
            self._tell(b"t")
            self._stop_at = float("inf")

    def wait(self, timeout: float) -> int | None:
        """Exit status once tcpdump has ended, None while it still runs."""
        self._maybe_end()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        self._bound_stop.set()
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()

"""Live capture where a C program writes the evidence and the analysis follows it.

`FollowBackend` is the live loop's default backend. A writer process captures
and writes the capture file itself — `wscap-capture` (our libpcap program,
wscap/capture/csrc) or, where it cannot be built, `tcpdump -w` — and the
backend reads that file behind it with `FileFollower`. What the kernel handed
over is on disk at C speed whatever the analysis does; the analysis only
decides how soon (and, when shedding, how much of it) it reads.

Both writers expose the same state to the backend (what
`wscap.capture.capturer.CaptureProcess` keeps from its status lines): `files`
(the sequence of files), `flush` (the latest "everything captured before ts is
in file K before byte B"), `stats` (kernel counters), `errors`, `ended`,
`end_reason`, `packets` (written).
"""
from __future__ import annotations

import errno
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any, Iterable

from wscap.capture.follow import FileFollower
from wscap.capture.live import (BackendMissing, CaptureConfig, CaptureError,
                                _filter_error, _iface_error, _pdeathsig, _perm_error, _set_nonblock)
from wscap.model import RawFrame


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


class FollowBackend:
    """The `Backend` the live loop drives: frames come from the file(s) a writer process writes."""

    def __init__(self, writer: Any, name: str, slack_ns: int, spool_dir: str | None = None,
                 delete_after_read: bool = False):
        self.writer = writer
        self.name = name
        self.slack_ns = slack_ns
        self.spool_dir = spool_dir
        self.follower = FileFollower(delete_after_read=delete_after_read)

        self.poll_interval = getattr(writer, "poll_interval", 0.1)
        lts = getattr(writer, "linktypes", None) or [1]
        self.linktype = lts[0]
        self.ended = False
        self.end_reason: str | None = None
        self.notices: list[str] = []
        self.errors: list[str] = []
        self._flushes: deque = deque()        # (ts_ns, seq, offset) not yet reached by the follower
        self.latest_flush_ns = 0
        self.reached_flush_ns = 0
        self.last_frame_ns = 0
        self.frames_read = 0
        self._writer_ended = False
        self._stopping = False
        self.written = 0                       # packets the writer reports written
        self._files_seen: set[int] = set()
        self._n_errors = 0
        self._pump()

    def use_fast_path(self, pipeline: Any) -> None:
        """Let the pipeline's record filter skip records of flows it has settled, as `analyze` does."""
        rf = (lambda lt: pipeline.record_filter(lt, 0)) if pipeline is not None else None
        self.follower.record_filter = rf
        r = self.follower.reader
        if r is not None:                 # the file being read changes filter too
            r.record_filter = rf
            if hasattr(r, "_wants"):
                r._wants = [rf(i[0]) if rf else None for i in r.ifaces]
            elif r.linktype is not None:
                r._want = rf(r.linktype) if rf else None

    # -- writer events ------------------------------------------------------------------------
    def _pump(self) -> None:
        """Take the writer's news: its files, its latest flush, errors, its end."""
        w = self.writer
        w.poll()
        for seq, path in list(w.files):
            if seq not in self._files_seen:
                self._files_seen.add(seq)
                self.follower.add(seq, path)
        fl = w.flush
        if fl and int(fl["ts"]) > self.latest_flush_ns:
            ts = int(fl["ts"])
            self._flushes.append((ts, int(fl.get("file", 0)), int(fl.get("offset", 0))))
            self.latest_flush_ns = ts
        while self._n_errors < len(w.errors):
            kind, msg = w.errors[self._n_errors]
            self._n_errors += 1
            if kind == "write" and "space" in msg.lower() and "disk full" not in msg:
                msg = f"disk full: {msg}"
            self.errors.append(f"{kind}: {msg}")
            self.notices.append(f"capture: {msg}" if kind != "write" else f"writing stopped: {msg}; "
                                "the file is complete up to there (cut at a whole record)")
        self.written = max(self.written, int(w.packets or 0))
        if w.ended:
            self._writer_ended = True
            if self.end_reason is None:
                why = w.end_reason or "capture ended"
                gone = [m for k, m in w.errors if k == "ifgone"]
                wrote = [m for k, m in w.errors if k == "write"]
                if why == "ifgone" or (gone and why not in ("stopped", "count")):
                    why = f"interface went away ({gone[-1] if gone else why})"
                elif why == "write-error":
                    why = f"writing stopped ({wrote[-1] if wrote else 'write error'})"
                self.end_reason = why

    def _advance_watermark(self) -> None:
        seq, off = self.follower.position()
        fl = self._flushes
        while fl and (fl[0][1] < seq or (fl[0][1] == seq and fl[0][2] <= off)):
            self.reached_flush_ns = max(self.reached_flush_ns, fl.popleft()[0])

    # -- Backend protocol -----------------------------------------------------------------------
    def fileno(self) -> int:
        return self.writer.fileno()

    @property
    def more_ready(self) -> bool:
        """Bytes are waiting in the file: the loop should read again without sleeping."""
        return not self.follower.at_end

    def read(self, max_frames: int = 4096) -> list[RawFrame]:
        return list(self.read_iter())

    def read_iter(self):
        """Frames written since the last call, one at a time (the live loop feeds each to the
        pipeline before the next record is judged by its fast path)."""
        self._pump()
        n = 0
        last = 0
        # Small bites: the loop ticks, reports lag and decides to shed between them.
        for f in self.follower.read_iter(max_bytes=256 << 10):
            n += 1
            last = f.ts_ns
            yield f
        if last > self.last_frame_ns:
            self.last_frame_ns = last
        self.frames_read = self.follower.frames
        self._advance_watermark()
        if self.follower.linktype is not None:
            self.linktype = self.follower.linktype
        for e in self.follower.errors:
            self.notices.append(f"reading the capture: {e}")
        self.follower.errors.clear()
        if self._writer_ended and not n and self.follower.at_end:
            self._pump()
            if self.follower.at_end:
                self._cut_partial_tail()
                self.ended = True
                if self._stopping:
                    self.end_reason = None

    def _cut_partial_tail(self) -> None:
        """A writer that died mid-record (a full disk under tcpdump) leaves a torn record:
        cut the file back to its last whole record so every reader opens it cleanly."""
        f = self.follower
        if f.fd is None or f.reader is None or not f.reader.pending or f.path is None:
            return
        seq, whole = f.position()
        try:
            os.truncate(f.path, whole)
            self.notices.append(f"{f.path}: cut back to its last whole record ({f.reader.pending} bytes of a "
                                "torn record removed)")
            f.reader._buf.clear()
            f.offset = whole
        except OSError as e:
            self.notices.append(f"{f.path}: ends inside a record and could not be cut ({e.strerror})")

    def watermark_ns(self, now_wall_ns: int) -> int:
        """Capture time up to which every packet has been read (decisions may use it)."""
        if self._flushes or self.reached_flush_ns:
            wm = self.reached_flush_ns - self.slack_ns
        elif self.follower.at_end:
            wm = now_wall_ns - self.slack_ns       # a writer without flush events (tcpdump)
        else:
            wm = self.last_frame_ns
        if self._writer_ended and self.follower.at_end:
            wm = max(wm, self.last_frame_ns)
        return max(wm, self.last_frame_ns)

    def lag_s(self, now_wall_ns: int) -> float:
        """How far (capture time) the analysis is behind what the writer has written."""
        if self.latest_flush_ns:
            return max(0.0, (self.latest_flush_ns - max(self.reached_flush_ns, self.last_frame_ns)) / 1e9)
        if self.follower.at_end or not self.last_frame_ns:
            return 0.0
        return max(0.0, (now_wall_ns - self.last_frame_ns - self.slack_ns) / 1e9)

    def stats(self) -> dict[str, int]:
        st = self.writer.stats
        return {"received": int(st.get("recv", 0)), "dropped": int(st.get("drop", 0)) + int(st.get("ifdrop", 0)),
                "written": self.written}

    def stop(self) -> None:
        self._stopping = True
        self.writer.stop()

    def drain(self, timeout_s: float = 10.0) -> Iterable[RawFrame]:
        """After stop(): every frame the writer wrote, until it ended and the file is read.

        Bounded by `timeout_s` of analysis; the caller counts what is left unread.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            frames = self.read()
            if frames:
                yield from frames
                continue
            if self._writer_ended and self.follower.at_end:
                break
            if not self._writer_ended and self.writer.wait(0.05) is not None:
                continue
            time.sleep(0.01)

    @property
    def files(self) -> list[str]:
        return [p for _, p in getattr(self.writer, "files", [])]

    def close(self) -> None:
        try:
            if not self._writer_ended:
                self.writer.stop()
                self.writer.wait(10)
        finally:
            self.writer.kill()
            self.follower.close()
            if self.spool_dir:
                shutil.rmtree(self.spool_dir, ignore_errors=True)


# ---- choosing and opening a writer --------------------------------------------------------------

WRITERS = ("wscap-capture", "tcpdump")
DEFAULT_SPOOL_MB = 512
SPOOL_FILES = 8


def helper_available() -> tuple[str | None, str]:
    """(path of wscap-capture, "") or (None, why it cannot be used)."""
    try:
        from wscap.capture import capturer
    except ImportError as e:
        return None, f"wscap-capture is not part of this install ({e})"
    try:
        path = capturer.helper_path(build=True)
    except Exception as e:  # noqa: BLE001 - a build failure must not stop a capture: fall back
        return None, f"wscap-capture could not be built ({e})"
    if path:
        return path, ""
    return None, capturer.unavailable_reason()


def _owner_dir(path: str, run_as: tuple[int, int] | None) -> None:
    if run_as is not None:
        try:
            os.chown(path, run_as[0], run_as[1])
        except OSError:
            pass


def _create_nofollow(path: str, run_as: tuple[int, int] | None) -> None:
    """Create (truncate) `path` without following a symlink, for a writer that opens it itself.
    In a sticky directory (/tmp) nobody else can then swap our file for a link."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        why = "is a symbolic link; refusing to follow it" if e.errno == errno.ELOOP else e.strerror
        raise CaptureError(f"--write {path}: {why}") from e
    os.close(fd)
    if run_as is not None:
        try:
            os.chown(path, run_as[0], run_as[1])
        except OSError:
            pass


def open_followed(name: str, cfg: CaptureConfig, *, write_path: str | None, ring_files: int = 0,
                  ring_bytes: int = 0, count: int | None = None, run_as: tuple[int, int] | None = None,
                  nrb: bytes = b"", spool_mb: int = DEFAULT_SPOOL_MB,
                  notices: list[str] | None = None) -> FollowBackend:
    """Start the evidence writer `name` ("wscap-capture" or "tcpdump") and follow its file.

    Without `write_path` the writer fills a spool of SPOOL_FILES files totalling
    `spool_mb` in a private temporary directory, removed when the capture ends.
    """
    import tempfile
    notices = notices if notices is not None else []
    ifaces = [i for i in cfg.iface.split(",") if i] or ["any"]
    spool_dir = None
    delete_after_read = False
    if write_path is None:
        spool_dir = tempfile.mkdtemp(prefix="wscap-live-")
        _owner_dir(spool_dir, run_as)
        path = os.path.join(spool_dir, "spool.pcapng" if name == "wscap-capture" else "spool.pcap")
        ring_files, ring_bytes = SPOOL_FILES, max(1, spool_mb // SPOOL_FILES) << 20
        delete_after_read = True
    else:
        path = os.path.abspath(write_path)
    try:
        if name == "wscap-capture":
            from wscap.capture import capturer
            nrb_path = None
            if nrb and not path.lower().endswith((".pcap", ".cap")):   # classic pcap has no place for names
                fd, nrb_path = tempfile.mkstemp(prefix="wscap-nrb-", dir=spool_dir)
                with os.fdopen(fd, "wb") as f:
                    f.write(nrb)
                _owner_dir(nrb_path, run_as)
            proc = capturer.CaptureProcess(
                ifaces, path, bpf=cfg.bpf, snaplen=None if cfg.snaplen <= 0 else cfg.snaplen,
                buffer_mb=cfg.buffer_mb, timeout_ms=cfg.timeout_ms, promisc=cfg.promisc,
                ring_bytes=ring_bytes if ring_files else 0, ring_files=ring_files,
                nrb_path=nrb_path, run_as=run_as, count=count)
            try:
                proc.wait_ready(10)
            finally:
                if nrb_path and spool_dir is None:
                    try:
                        os.unlink(nrb_path)
                    except OSError:
                        pass
            # Flushes say "everything before T is written"; packets still in a kernel
            # block not yet retired (at most timeout_ms old) may be older than T.
            slack = 2 * cfg.timeout_ms * 1_000_000 + 20_000_000
            return FollowBackend(proc, "wscap-capture", slack, spool_dir, delete_after_read)
        if name == "tcpdump":
            if len(ifaces) > 1:
                notices.append(f"tcpdump captures one interface: capturing on {ifaces[0]} only "
                               f"(not {', '.join(ifaces[1:])}); wscap-capture captures several")
            if write_path is not None and ring_files:
                raise CaptureError("--ring-files with --backend tcpdump: a ring needs wscap-capture "
                                   "(apt install gcc libpcap-dev; `python3 -m wscap.capture.capturer --build`)")
            one = CaptureConfig(**{**cfg.__dict__, "iface": ifaces[0]})
            if run_as is not None and one.run_as is None:
                import pwd
                try:
                    one.run_as = pwd.getpwuid(run_as[0]).pw_name
                except KeyError:
                    pass
            split_mb = max(1, spool_mb // SPOOL_FILES) if spool_dir else 0
            if write_path is not None:
                _create_nofollow(path, run_as)   # tcpdump follows links: it gets our regular file
            tw = TcpdumpWriter(one, path, split_mb=split_mb, count=count,
                               keep_files=SPOOL_FILES if spool_dir else 0)
            return FollowBackend(tw, "tcpdump", tw.slack_ns, spool_dir, delete_after_read)
        raise CaptureError(f"unknown writer {name!r}")
    except BaseException:
        if spool_dir:
            shutil.rmtree(spool_dir, ignore_errors=True)
        raise

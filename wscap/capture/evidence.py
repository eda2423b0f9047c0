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
import shutil
import time
from collections import deque
from typing import Any, Iterable, Iterator

from wscap.capture.follow import FileFollower
from wscap.capture.live import CaptureConfig, CaptureError
from wscap.capture.tcpdump import TcpdumpWriter
from wscap.model.raw import RawFrame

__all__ = ["FollowBackend", "TcpdumpWriter", "WRITERS", "DEFAULT_SPOOL_MB", "helper_available", "open_followed"]


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
        self.caught_up_ns = 0            # wall time the follower was last seen at the file's end
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
            r.set_record_filter(rf)

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

    def read_iter(self) -> Iterator[RawFrame]:
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
            f.reader.drop_pending()
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
            self.caught_up_ns = now_wall_ns
            return 0.0
        # What is unread was written after the analysis last caught up with the file: an idle
        # stretch before it (a quiet bridge, a bridge bouncing) is not lag, and must not start
        # shedding when the first packets after it arrive.
        return max(0.0, (now_wall_ns - max(self.last_frame_ns, self.caught_up_ns) - self.slack_ns) / 1e9)

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
